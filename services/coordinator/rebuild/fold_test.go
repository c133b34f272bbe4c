package rebuild

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)

// sim runs a job through the domain the way the coordinator does and
// records the lifecycle events it would record, with the same ids.
type sim struct {
	t      *testing.T
	j      *jobs.Job
	now    time.Time
	events []*erasurev1.LifecycleEvent
}

func newSim(t *testing.T, id string, req jobs.Request, plan []jobs.TaskSpec) *sim {
	t.Helper()
	j, err := jobs.New(id, req, plan, t0)
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{t: t, j: j, now: t0}
	s.record(lifecycle.Created(j))
	return s
}

func (s *sim) record(ev *erasurev1.LifecycleEvent) { s.events = append(s.events, ev) }

func (s *sim) tick() time.Time {
	s.now = s.now.Add(1500 * time.Millisecond)
	return s.now
}

func (s *sim) task(cat string) *jobs.Task {
	s.t.Helper()
	t, err := s.j.Task(key(cat))
	if err != nil {
		s.t.Fatal(err)
	}
	return t
}

func key(cat string) jobs.TaskKey { return jobs.TaskKey{Category: cat, Stage: "erase"} }

// dispatch is the dispatcher's mark-then-record.
func (s *sim) dispatch(cat string) *sim {
	s.t.Helper()
	t := s.task(cat)
	if _, err := s.j.MarkDispatched(key(cat), t.Generation, s.tick()); err != nil {
		s.t.Fatal(err)
	}
	if t.DispatchedAt != nil {
		s.record(lifecycle.Dispatched(s.j, t, *t.DispatchedAt))
	}
	return s
}

// report is Service.ApplyReport.
func (s *sim) report(cat string, ok bool, items int64, attempt uint32) *sim {
	s.t.Helper()
	r := jobs.Report{Task: key(cat), Generation: s.task(cat).Generation, Succeeded: ok, Items: items, Attempt: attempt, At: s.tick()}
	if !ok {
		r.ErrorCode, r.Error = "permanent", "permission denied for table contacts"
	}
	eff, err := s.j.ApplyReport(r)
	if err != nil {
		s.t.Fatal(err)
	}
	if eff.Result == jobs.ReportStale {
		return s
	}
	s.record(lifecycle.TaskFinished(s.j, s.task(cat), "w1"))
	if s.j.Status.Terminal() {
		s.record(lifecycle.Finished(s.j))
	}
	return s
}

// retry is Service.recordRetry.
func (s *sim) retry(cat string, attempt uint32) *sim {
	s.t.Helper()
	a, ok, err := s.j.RecordRetry(jobs.Report{Task: key(cat), Generation: s.task(cat).Generation, Attempt: attempt,
		ErrorCode: "unavailable", Error: "contacts database unreachable", At: s.tick()})
	if err != nil || !ok {
		s.t.Fatalf("retry: %v %v", ok, err)
	}
	s.record(lifecycle.Retrying(s.j, s.task(cat), a, "w1"))
	return s
}

// redispatch is reconciliation's re-publish of a lost task message. The
// message's stream sequence is not in the event, so the sim leaves it 0.
func (s *sim) redispatch(cat string) *sim {
	s.t.Helper()
	t := s.task(cat)
	changed, err := s.j.MarkRedispatched(key(cat), t.Generation, 0, s.tick())
	if err != nil || !changed {
		s.t.Fatalf("redispatch: %v %v", changed, err)
	}
	s.record(lifecycle.Redispatched(s.j, t, *t.DispatchedAt))
	return s
}

// replay is Service.Replay.
func (s *sim) replay(sel jobs.ReplaySelector) *sim {
	s.t.Helper()
	at := s.tick()
	keys, err := s.j.Replay(sel, "sre:kim", "grants restored", at)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, k := range keys {
		t, _ := s.j.Task(k)
		s.record(lifecycle.Replayed(s.j, t, "sre:kim", "grants restored", at))
	}
	return s
}

func apiReq() jobs.Request {
	return jobs.Request{AccountID: "acc-1", Origin: jobs.OriginAPI, RequestedBy: "privacy:ops", Reason: "DSR 4711"}
}

func flat(cats ...string) []jobs.TaskSpec {
	var p []jobs.TaskSpec
	for _, c := range cats {
		p = append(p, jobs.TaskSpec{Category: c, Stage: "erase", Action: "delete"})
	}
	return p
}

// withBackups is the coordinator's plan: the backup ledger entry first,
// every other category after it.
func withBackups(cats ...string) []jobs.TaskSpec {
	p := []jobs.TaskSpec{{Category: "backups", Stage: "erase", Action: "suppress"}}
	for _, c := range cats {
		p = append(p, jobs.TaskSpec{Category: c, Stage: "erase", Action: "delete", DependsOn: []jobs.TaskKey{key("backups")}})
	}
	return p
}

func fold(events []*erasurev1.LifecycleEvent) (*Fold, Summary) {
	f := NewFold()
	for i, ev := range events {
		f.Add(uint64(i+1), ev)
	}
	f.Settle()
	return f, f.Finish()
}

// asJSON is how the store sees a job.
func asJSON(t *testing.T, j *jobs.Job) string {
	t.Helper()
	b, err := json.MarshalIndent(j, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func onlyJob(t *testing.T, f *Fold) *jobs.Job {
	t.Helper()
	js := f.Jobs()
	if len(js) != 1 {
		t.Fatalf("fold made %d jobs, want 1", len(js))
	}
	return js[0]
}

func TestFoldRebuildsWhatTheDomainDid(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T) *sim
	}{
		{"created only", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts", "logs"))
		}},
		{"dispatched", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts", "logs")).dispatch("contacts")
		}},
		{"completed", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts", "logs")).
				dispatch("contacts").dispatch("logs").report("logs", true, 7, 1).report("contacts", true, 1500, 1)
		}},
		{"dashboard event, delayed stage", func(t *testing.T) *sim {
			req := jobs.Request{AccountID: "acc-9", Origin: jobs.OriginDashboard, RequestedBy: "dashboard", Reason: "account deleted in the dashboard", EventID: "evt-1"}
			plan := []jobs.TaskSpec{{Category: "billing", Stage: "pseudonymise", Action: "pseudonymise"}, {Category: "billing", Stage: "delete", Action: "delete", After: 10 * 365 * 24 * time.Hour}}
			return newSim(t, "job-1", req, plan)
		}},
		{"retries then success", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts")).
				dispatch("contacts").retry("contacts", 1).retry("contacts", 2).report("contacts", true, 40, 3)
		}},
		{"lost message published again, twice", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts")).
				dispatch("contacts").redispatch("contacts").redispatch("contacts").report("contacts", true, 6, 1)
		}},
		{"failed", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts", "logs")).
				dispatch("contacts").dispatch("logs").report("contacts", false, 0, 8).report("logs", true, 3, 1)
		}},
		{"failed, replayed, completed", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts", "logs")).
				dispatch("contacts").dispatch("logs").report("contacts", false, 12, 2).report("logs", true, 3, 1).
				replay(jobs.ReplaySelector{}).dispatch("contacts").report("contacts", true, 88, 1)
		}},
		{"succeeded task replayed finds nothing", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts")).
				dispatch("contacts").report("contacts", true, 300, 1).
				replay(jobs.ReplaySelector{Category: "contacts"}).dispatch("contacts").report("contacts", true, 0, 1)
		}},
		{"replayed twice", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), flat("contacts")).
				dispatch("contacts").report("contacts", false, 5, 1).
				replay(jobs.ReplaySelector{}).dispatch("contacts").retry("contacts", 1).report("contacts", false, 2, 2).
				replay(jobs.ReplaySelector{Category: "contacts", Stage: "erase"}).dispatch("contacts").report("contacts", true, 9, 1)
		}},
		{"dependencies waiting", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), withBackups("contacts", "logs")).dispatch("backups")
		}},
		{"dependencies released", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), withBackups("contacts", "logs")).
				dispatch("backups").report("backups", true, 1, 1).dispatch("contacts")
		}},
		{"dependency failed", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), withBackups("contacts", "logs")).
				dispatch("backups").report("backups", false, 0, 8)
		}},
		{"dependency failed, all failed replayed, completed", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), withBackups("contacts", "logs")).
				dispatch("backups").report("backups", false, 0, 8).
				replay(jobs.ReplaySelector{}).dispatch("backups").report("backups", true, 1, 1).
				dispatch("contacts").dispatch("logs").report("contacts", true, 10, 1).report("logs", true, 20, 1)
		}},
		{"dependency failed, the dependency replayed alone", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), withBackups("contacts")).
				dispatch("backups").report("backups", false, 0, 8).
				replay(jobs.ReplaySelector{Category: "backups"}).dispatch("backups").report("backups", true, 1, 1).
				dispatch("contacts").report("contacts", true, 10, 1)
		}},
		{"task and its dependent both failed, replayed", func(t *testing.T) *sim {
			return newSim(t, "job-1", apiReq(), withBackups("contacts")).
				dispatch("backups").report("backups", true, 1, 1).dispatch("contacts").report("contacts", false, 0, 8).
				replay(jobs.ReplaySelector{Category: "backups"}).
				dispatch("backups").report("backups", true, 0, 1).
				replay(jobs.ReplaySelector{}).dispatch("contacts").report("contacts", true, 10, 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.run(t)
			want := asJSON(t, s.j)

			f, sum := fold(s.events)
			if got := asJSON(t, onlyJob(t, f)); got != want {
				t.Errorf("rebuilt job:\n%s\nwant:\n%s", got, want)
			}
			if sum.Unapplied != 0 || sum.Mismatches != 0 || sum.Duplicates != 0 || len(sum.Problems) != 0 {
				t.Errorf("summary = %+v, want every event applied", sum)
			}
			if sum.Events != uint64(len(s.events)) || sum.Applied+sum.Checked+sum.Ignored != sum.Events {
				t.Errorf("summary counts %+v do not add up to %d events", sum, len(s.events))
			}

			// Every event twice at once, then the whole trail again, as
			// re-recorded after the stream's duplicate window.
			var dup []*erasurev1.LifecycleEvent
			for _, ev := range s.events {
				dup = append(dup, ev, proto.Clone(ev).(*erasurev1.LifecycleEvent))
			}
			dup = append(dup, s.events...)
			f, sum = fold(dup)
			if got := asJSON(t, onlyJob(t, f)); got != want {
				t.Errorf("with duplicates, rebuilt job:\n%s\nwant:\n%s", got, want)
			}
			if sum.Duplicates != 2*uint64(len(s.events)) || sum.Unapplied != 0 || sum.Mismatches != 0 {
				t.Errorf("with duplicates: summary = %+v", sum)
			}
		})
	}
}

// move returns events with the first event matching from moved to just
// before the first event matching before.
func move(t *testing.T, events []*erasurev1.LifecycleEvent, from, before func(*erasurev1.LifecycleEvent) bool) []*erasurev1.LifecycleEvent {
	t.Helper()
	out := slices.Clone(events)
	i := slices.IndexFunc(out, from)
	if i < 0 {
		t.Fatal("no event to move")
	}
	ev := out[i]
	out = slices.Delete(out, i, i+1)
	j := slices.IndexFunc(out, before)
	if j < 0 {
		t.Fatal("no event to move before")
	}
	return slices.Insert(out, j, ev)
}

func is(typ erasurev1.EventType, cat string, gen uint32) func(*erasurev1.LifecycleEvent) bool {
	return func(ev *erasurev1.LifecycleEvent) bool {
		return ev.GetType() == typ && ev.GetCategory() == cat && ev.GetGeneration() == gen
	}
}

const (
	dispatched = erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED
	succeeded  = erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED
	failedEv   = erasurev1.EventType_EVENT_TYPE_TASK_FAILED
	replayed   = erasurev1.EventType_EVENT_TYPE_TASK_REPLAYED
)

// TestFoldToleratesEventsRecordedOutOfOrder covers the races between the
// goroutines that record a job's events after their Redis updates.
func TestFoldToleratesEventsRecordedOutOfOrder(t *testing.T) {
	tests := []struct {
		name    string
		run     func(t *testing.T) *sim
		reorder func(t *testing.T, evs []*erasurev1.LifecycleEvent) []*erasurev1.LifecycleEvent
	}{
		{
			"dispatch recorded after the report",
			func(t *testing.T) *sim {
				return newSim(t, "job-1", apiReq(), flat("contacts", "logs")).dispatch("contacts").report("contacts", true, 5, 1)
			},
			func(t *testing.T, evs []*erasurev1.LifecycleEvent) []*erasurev1.LifecycleEvent {
				return move(t, evs, is(succeeded, "contacts", 1), is(dispatched, "contacts", 1))
			},
		},
		{
			"dependent dispatched before its dependency's success was recorded",
			func(t *testing.T) *sim {
				return newSim(t, "job-1", apiReq(), withBackups("contacts", "logs")).
					dispatch("backups").report("backups", true, 1, 1).dispatch("contacts")
			},
			func(t *testing.T, evs []*erasurev1.LifecycleEvent) []*erasurev1.LifecycleEvent {
				return move(t, evs, is(dispatched, "contacts", 1), is(succeeded, "backups", 1))
			},
		},
		{
			"dependent dispatched and done before its dependency's success was recorded",
			func(t *testing.T) *sim {
				return newSim(t, "job-1", apiReq(), withBackups("contacts", "logs")).
					dispatch("backups").report("backups", true, 1, 1).dispatch("contacts").report("contacts", true, 70, 1)
			},
			func(t *testing.T, evs []*erasurev1.LifecycleEvent) []*erasurev1.LifecycleEvent {
				evs = move(t, evs, is(dispatched, "contacts", 1), is(succeeded, "backups", 1))
				return move(t, evs, is(succeeded, "contacts", 1), is(succeeded, "backups", 1))
			},
		},
		{
			"new generation dispatched before its replay was recorded",
			func(t *testing.T) *sim {
				return newSim(t, "job-1", apiReq(), flat("contacts")).
					dispatch("contacts").report("contacts", false, 0, 1).
					replay(jobs.ReplaySelector{}).dispatch("contacts")
			},
			func(t *testing.T, evs []*erasurev1.LifecycleEvent) []*erasurev1.LifecycleEvent {
				return move(t, evs, is(dispatched, "contacts", 2), is(replayed, "contacts", 2))
			},
		},
		{
			"replay recorded before the failure it replays",
			func(t *testing.T) *sim {
				return newSim(t, "job-1", apiReq(), flat("contacts")).
					dispatch("contacts").report("contacts", false, 0, 1).
					replay(jobs.ReplaySelector{}).dispatch("contacts").report("contacts", true, 4, 1)
			},
			func(t *testing.T, evs []*erasurev1.LifecycleEvent) []*erasurev1.LifecycleEvent {
				return move(t, evs, is(replayed, "contacts", 2), is(failedEv, "contacts", 1))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.run(t)
			f, sum := fold(tt.reorder(t, s.events))
			if got, want := asJSON(t, onlyJob(t, f)), asJSON(t, s.j); got != want {
				t.Errorf("rebuilt job:\n%s\nwant:\n%s", got, want)
			}
			if sum.Unapplied != 0 || sum.Mismatches != 0 {
				t.Errorf("summary = %+v", sum)
			}
		})
	}
}

// Two reports applied concurrently can have their events recorded in the
// other order: the job reaches the same status and counts; only when it
// finished differs (the time of the report whose event came last).
func TestFoldConcurrentReportsReachTheSameEnd(t *testing.T) {
	s := newSim(t, "job-1", apiReq(), flat("contacts", "logs")).
		dispatch("contacts").dispatch("logs").report("contacts", true, 10, 1).report("logs", true, 20, 1)
	evs := slices.Clone(s.events)
	i := slices.IndexFunc(evs, is(succeeded, "contacts", 1))
	ev := evs[i]
	evs = append(slices.Delete(evs, i, i+1), ev)

	f, sum := fold(evs)
	j := onlyJob(t, f)
	if j.Status != jobs.StatusCompleted || j.ItemsPurged() != 30 || sum.Mismatches != 0 || sum.Unapplied != 0 {
		t.Fatalf("job %s with %d items, summary %+v; want completed with 30 and no mismatch", j.Status, j.ItemsPurged(), sum)
	}
	if !j.FinishedAt.Before(*s.j.FinishedAt) {
		t.Errorf("finished at %v, want the earlier report's time (before %v)", j.FinishedAt, s.j.FinishedAt)
	}
}

func TestFoldCountsWhatItCannotUse(t *testing.T) {
	s := newSim(t, "job-1", apiReq(), flat("contacts")).dispatch("contacts").report("contacts", true, 10, 1)
	created := s.events[0]
	at := timestamppb.New(t0)
	bogusCompleted := &erasurev1.LifecycleEvent{EventId: "job-2:completed:1", Type: erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED, JobId: "job-2", At: at, ItemsPurged: 5}
	job2 := proto.Clone(created).(*erasurev1.LifecycleEvent)
	job2.JobId, job2.EventId, job2.AccountId = "job-2", "job-2:created", "acc-2"
	badAccount := proto.Clone(created).(*erasurev1.LifecycleEvent)
	badAccount.JobId, badAccount.EventId, badAccount.AccountId = "job-3", "job-3:created", "someone@example.com"
	badDeps := proto.Clone(created).(*erasurev1.LifecycleEvent)
	badDeps.JobId, badDeps.EventId = "job-5", "job-5:created"
	badDeps.Tasks[0].DependsOn = []string{"nothing"}

	events := []*erasurev1.LifecycleEvent{
		// A newer coordinator's event types, and audit-only ones.
		{EventId: "x1", Type: erasurev1.EventType(99), JobId: "job-1", At: at},
		{EventId: "x2", Type: erasurev1.EventType_EVENT_TYPE_TASK_DEAD_LETTERED, JobId: "job-1", Category: "contacts", Stage: "erase", Generation: 1, At: at},
		// Events of a job whose creation is not in the stream.
		{EventId: "job-4:contacts:erase:1:dispatched", Type: dispatched, JobId: "job-4", Category: "contacts", Stage: "erase", Generation: 1, At: at},
		// A job that never got anywhere, with a recorded end it did not reach.
		job2, bogusCompleted,
		// Creations that do not make a valid job.
		badAccount, badDeps,
		// A task the job does not have.
		{EventId: "job-1:billing:erase:1:dispatched", Type: dispatched, JobId: "job-1", Category: "billing", Stage: "erase", Generation: 1, At: at},
		// No job id.
		{EventId: "x3", Type: dispatched, At: at},
	}
	f := NewFold()
	seq := uint64(0)
	for _, ev := range append(slices.Clone(s.events), events...) {
		seq++
		f.Add(seq, ev)
	}
	seq++
	f.AddMessage(seq, []byte("\x0a\xff\xff garbage"))
	f.Settle()
	sum := f.Finish()

	want := Summary{Events: seq, FirstSeq: 1, LastSeq: seq, Applied: 4, Checked: 2, Skipped: map[string]uint64{"99": 1, "EVENT_TYPE_TASK_DEAD_LETTERED": 1},
		Undecodable: 2, Unapplied: 4, Mismatches: 1, Jobs: 2, ByStatus: map[jobs.Status]int{jobs.StatusCompleted: 1, jobs.StatusRunning: 1}}
	got := sum
	got.Problems = nil
	if gj, wj := mustJSON(t, got), mustJSON(t, want); gj != wj {
		t.Errorf("summary:\n%s\nwant:\n%s", gj, wj)
	}
	var kinds []string
	for _, p := range sum.Problems {
		kinds = append(kinds, p.JobID+":"+p.Kind)
		if strings.Contains(p.Detail, "someone@example.com") {
			t.Errorf("problem detail quotes an account value: %q", p.Detail)
		}
	}
	slices.Sort(kinds)
	wantKinds := []string{":undecodable", ":undecodable", "job-1:invalid_event", "job-2:status_mismatch", "job-3:invalid_event", "job-4:no_job_created", "job-5:invalid_event"}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("problems = %v, want %v", kinds, wantKinds)
	}
	if js := f.Jobs(); len(js) != 2 || js[0].ID != "job-1" || js[1].ID != "job-2" {
		t.Errorf("jobs = %v, want job-1 and job-2 in creation order", js)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFoldKeepsTheRecordedDeadline(t *testing.T) {
	s := newSim(t, "job-1", apiReq(), flat("contacts"))
	ev := proto.Clone(s.events[0]).(*erasurev1.LifecycleEvent)
	// A deadline rule changed since: the job keeps the one it was given.
	recorded := t0.AddDate(0, 0, 20)
	ev.Deadline = timestamppb.New(recorded)
	f, _ := fold([]*erasurev1.LifecycleEvent{ev})
	if got := onlyJob(t, f).Deadline; !got.Equal(recorded) {
		t.Errorf("deadline %v, want the recorded %v", got, recorded)
	}
}

// A report is never dropped for want of the event it waited for: at the
// end it is applied as the coordinator applied it.
func TestFoldSettleAppliesReportsWhoseDependencyEventIsMissing(t *testing.T) {
	s := newSim(t, "job-1", apiReq(), withBackups("contacts")).
		dispatch("backups").report("backups", true, 1, 1).dispatch("contacts").report("contacts", true, 70, 1)
	evs := slices.DeleteFunc(slices.Clone(s.events), is(succeeded, "backups", 1))
	f, sum := fold(evs)
	j := onlyJob(t, f)
	c, _ := j.Task(key("contacts"))
	if c.Status != jobs.TaskSucceeded || c.ItemsPurged != 70 || sum.Unapplied != 0 {
		t.Errorf("contacts %s with %d items, summary %+v; want the report applied", c.Status, c.ItemsPurged, sum)
	}
}
