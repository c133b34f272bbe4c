package jobs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func plan(cats ...string) []TaskSpec {
	var p []TaskSpec
	for _, c := range cats {
		p = append(p, TaskSpec{Category: c, Stage: "erase", Action: "delete"})
	}
	return p
}

func newJob(t *testing.T, cats ...string) *Job {
	t.Helper()
	j, err := New("job-1", Request{AccountID: "acc-1", Origin: OriginAPI, RequestedBy: "privacy:test", Reason: "test"}, plan(cats...), t0)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func ok(cat string, gen uint32, items int64) Report {
	return Report{Task: TaskKey{cat, "erase"}, Generation: gen, Succeeded: true, Items: items, Attempt: 1, At: t0.Add(time.Second)}
}

func fail(cat string, gen uint32, msg string) Report {
	return Report{Task: TaskKey{cat, "erase"}, Generation: gen, ErrorCode: "permanent", Error: msg, Attempt: 2, At: t0.Add(time.Second)}
}

func TestRequestValidation(t *testing.T) {
	valid := Request{AccountID: "acc-000123", Origin: OriginDashboard, RequestedBy: "dashboard", Reason: "account deleted"}
	tests := []struct {
		name    string
		give    func(r *Request)
		wantErr string
	}{
		{"valid", func(*Request) {}, ""},
		{"empty account", func(r *Request) { r.AccountID = "" }, "account_id"},
		{"e-mail as account", func(r *Request) { r.AccountID = "alice@example.com" }, "account_id"},
		{"account too long", func(r *Request) { r.AccountID = strings.Repeat("a", 129) }, "account_id"},
		{"account with space", func(r *Request) { r.AccountID = "acc 1" }, "account_id"},
		{"no principal", func(r *Request) { r.RequestedBy = "" }, "requested_by"},
		{"e-mail as principal", func(r *Request) { r.RequestedBy = "bob@example.com" }, "requested_by"},
		{"unknown origin", func(r *Request) { r.Origin = "fax" }, "origin"},
		{"reason too long", func(r *Request) { r.Reason = strings.Repeat("x", MaxReasonLen+1) }, "reason"},
		{"control chars in reason", func(r *Request) { r.Reason = "a\x00b" }, "reason"},
		{"event id too long", func(r *Request) { r.EventID = strings.Repeat("e", 129) }, "event_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid
			tt.give(&r)
			err := r.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want ErrInvalid mentioning %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "@example.com") {
				t.Errorf("error echoes the personal value: %v", err)
			}
		})
	}
}

func TestDeadlineIsOneCalendarMonth(t *testing.T) {
	tests := []struct{ give, want string }{
		{"2026-11-29T10:00:00Z", "2026-12-29T10:00:00Z"},
		{"2026-01-31T08:00:00Z", "2026-02-28T08:00:00Z"},
		{"2028-01-31T08:00:00Z", "2028-02-29T08:00:00Z"},
		{"2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"},
		{"2026-12-15T23:59:59Z", "2027-01-15T23:59:59Z"},
	}
	for _, tt := range tests {
		give, _ := time.Parse(time.RFC3339, tt.give)
		if got := DeadlineFor(give).Format(time.RFC3339); got != tt.want {
			t.Errorf("DeadlineFor(%s) = %s, want %s", tt.give, got, tt.want)
		}
	}
}

func TestNew(t *testing.T) {
	j := newJob(t, "contacts", "logs")
	if j.Status != StatusRunning || len(j.Tasks) != 2 || j.Tasks[0].Status != TaskScheduled || j.Tasks[0].Generation != 1 || !j.Tasks[0].DueAt.Equal(t0) {
		t.Fatalf("new job = %+v", j)
	}
	if _, err := New("j", Request{AccountID: "a", Origin: OriginAPI, RequestedBy: "p"}, nil, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty plan: %v, want ErrInvalid", err)
	}
	dup := append(plan("contacts"), plan("contacts")...)
	if _, err := New("j", Request{AccountID: "a", Origin: OriginAPI, RequestedBy: "p"}, dup, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate task: %v, want ErrInvalid", err)
	}
}

func TestApplyReport(t *testing.T) {
	tests := []struct {
		name       string
		cats       []string
		reports    []Report
		wantStatus Status
		wantLast   ReportResult
		wantItems  int64
		wantErr    error
		wantError  string
	}{
		{
			name: "all succeed: completed", cats: []string{"contacts", "logs"},
			reports:    []Report{ok("contacts", 1, 10), ok("logs", 1, 5)},
			wantStatus: StatusCompleted, wantLast: ReportApplied, wantItems: 15,
		},
		{
			name: "one of two reported: still running", cats: []string{"contacts", "logs"},
			reports:    []Report{ok("contacts", 1, 10)},
			wantStatus: StatusRunning, wantLast: ReportApplied, wantItems: 10,
		},
		{
			name: "duplicate success counts once", cats: []string{"contacts", "logs"},
			reports:    []Report{ok("contacts", 1, 10), ok("contacts", 1, 10)},
			wantStatus: StatusRunning, wantLast: ReportDuplicate, wantItems: 10,
		},
		{
			name: "a failure makes the job failed, never completed", cats: []string{"contacts", "logs"},
			reports:    []Report{ok("contacts", 1, 10), fail("logs", 1, "disk full")},
			wantStatus: StatusFailed, wantLast: ReportApplied, wantItems: 10, wantError: "logs/erase failed: disk full",
		},
		{
			name: "success after failure of same generation is a duplicate", cats: []string{"contacts"},
			reports:    []Report{fail("contacts", 1, "x"), ok("contacts", 1, 3)},
			wantStatus: StatusFailed, wantLast: ReportDuplicate, wantError: "contacts/erase failed: x",
		},
		{
			name: "stale generation is ignored", cats: []string{"contacts"},
			reports:    []Report{ok("contacts", 0, 3)},
			wantStatus: StatusRunning, wantLast: ReportStale,
		},
		{
			name: "future generation is rejected", cats: []string{"contacts"},
			reports:    []Report{ok("contacts", 2, 3)},
			wantStatus: StatusRunning, wantErr: ErrUnknownTask,
		},
		{
			name: "unknown category is rejected", cats: []string{"contacts"},
			reports:    []Report{ok("billing", 1, 3)},
			wantStatus: StatusRunning, wantErr: ErrUnknownTask,
		},
		{
			name: "zero items is success", cats: []string{"contacts"},
			reports:    []Report{ok("contacts", 1, 0)},
			wantStatus: StatusCompleted, wantLast: ReportApplied,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(t, tt.cats...)
			var eff Effect
			var err error
			for _, r := range tt.reports {
				eff, err = j.ApplyReport(r)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("last ApplyReport error = %v, want %v", err, tt.wantErr)
			}
			if j.Status != tt.wantStatus || eff.Result != tt.wantLast || j.ItemsPurged() != tt.wantItems || j.Error != tt.wantError {
				t.Errorf("status %s result %s items %d error %q; want %s %s %d %q",
					j.Status, eff.Result, j.ItemsPurged(), j.Error, tt.wantStatus, tt.wantLast, tt.wantItems, tt.wantError)
			}
			if j.Status.Terminal() != (j.FinishedAt != nil) {
				t.Errorf("finished_at set = %v for status %s", j.FinishedAt != nil, j.Status)
			}
		})
	}
}

func TestMarkDispatched(t *testing.T) {
	j := newJob(t, "contacts")
	k := TaskKey{"contacts", "erase"}
	if changed, err := j.MarkDispatched(k, 1, t0); err != nil || !changed {
		t.Fatalf("first mark: %v %v", changed, err)
	}
	if changed, _ := j.MarkDispatched(k, 1, t0); changed {
		t.Error("second mark changed the job")
	}
	if _, err := j.ApplyReport(ok("contacts", 1, 1)); err != nil {
		t.Fatal(err)
	}
	if changed, _ := j.MarkDispatched(k, 1, t0); changed || j.Tasks[0].Status != TaskSucceeded {
		t.Error("a late dispatch mark moved a finished task back")
	}
	if _, err := j.MarkDispatched(TaskKey{"nope", "erase"}, 1, t0); !errors.Is(err, ErrUnknownTask) {
		t.Errorf("unknown task: %v", err)
	}
}

// TestInvariantsUnderRandomReports applies random sequences of reports,
// duplicates and dispatch marks and checks what must always hold.
func TestInvariantsUnderRandomReports(t *testing.T) {
	cats := []string{"contacts", "logs", "billing", "backups"}
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		j := newJob(t, cats...)
		firstOutcome := map[string]TaskStatus{}
		for range rng.IntN(20) {
			c := cats[rng.IntN(len(cats))]
			if rng.IntN(4) == 0 {
				_, _ = j.MarkDispatched(TaskKey{c, "erase"}, 1, t0)
				continue
			}
			var r Report
			if rng.IntN(3) == 0 {
				r = fail(c, 1, "boom")
			} else {
				r = ok(c, 1, int64(rng.IntN(100)))
			}
			eff, err := j.ApplyReport(r)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if _, seen := firstOutcome[c]; !seen {
				if eff.Result != ReportApplied {
					t.Fatalf("seed %d: first report of %s was %s", seed, c, eff.Result)
				}
				firstOutcome[c] = j.Tasks[indexOf(cats, c)].Status
			} else if eff.Result != ReportDuplicate {
				t.Fatalf("seed %d: repeated report of %s was %s", seed, c, eff.Result)
			}
		}
		anyFailed, allDone := false, true
		for i, tk := range j.Tasks {
			if want, seen := firstOutcome[cats[i]]; seen && tk.Status != want {
				t.Fatalf("seed %d: %s changed outcome from %s to %s", seed, cats[i], want, tk.Status)
			}
			anyFailed = anyFailed || tk.Status == TaskFailed
			allDone = allDone && tk.Status.Terminal()
		}
		switch {
		case !allDone && j.Status != StatusRunning:
			t.Fatalf("seed %d: job %s with unfinished tasks", seed, j.Status)
		case allDone && anyFailed && j.Status != StatusFailed:
			t.Fatalf("seed %d: job %s with a failed task", seed, j.Status)
		case allDone && !anyFailed && j.Status != StatusCompleted:
			t.Fatalf("seed %d: job %s with every task succeeded", seed, j.Status)
		}
	}
}

func indexOf(s []string, v string) int {
	for i := range s {
		if s[i] == v {
			return i
		}
	}
	return -1
}

func TestDependenciesOrderTasks(t *testing.T) {
	ledger := TaskKey{"backups", "erase"}
	plan := []TaskSpec{
		{Category: "backups", Stage: "erase", Action: "suppress"},
		{Category: "contacts", Stage: "erase", Action: "delete", DependsOn: []TaskKey{ledger}},
		{Category: "logs", Stage: "erase", Action: "delete", DependsOn: []TaskKey{ledger}},
	}
	req := Request{AccountID: "acc-1", Origin: OriginAPI, RequestedBy: "privacy:t", Reason: "r"}

	t.Run("dependents wait, then run after success", func(t *testing.T) {
		j, err := New("j", req, plan, t0)
		if err != nil {
			t.Fatal(err)
		}
		if j.Tasks[0].Status != TaskScheduled || j.Tasks[1].Status != TaskWaiting || j.Tasks[2].Status != TaskWaiting {
			t.Fatalf("statuses %s %s %s, want scheduled waiting waiting", j.Tasks[0].Status, j.Tasks[1].Status, j.Tasks[2].Status)
		}
		if changed, _ := j.MarkDispatched(TaskKey{"contacts", "erase"}, 1, t0); changed {
			t.Error("a waiting task was dispatched")
		}
		at := t0.Add(time.Minute)
		r := ok("backups", 1, 1)
		r.At = at
		if _, err := j.ApplyReport(r); err != nil {
			t.Fatal(err)
		}
		for _, tk := range j.Tasks[1:] {
			if tk.Status != TaskScheduled || !tk.DueAt.Equal(at) {
				t.Errorf("%s: %s due %s, want scheduled due at the ledger's success", tk.Key(), tk.Status, tk.DueAt)
			}
		}
	})

	t.Run("dependents of a failed task fail without running", func(t *testing.T) {
		j, _ := New("j", req, plan, t0)
		eff, err := j.ApplyReport(fail("backups", 1, "ledger unreachable"))
		if err != nil {
			t.Fatal(err)
		}
		if !eff.Finished || j.Status != StatusFailed {
			t.Fatalf("job %s finished=%v, want failed at once", j.Status, eff.Finished)
		}
		for _, tk := range j.Tasks[1:] {
			if tk.Status != TaskFailed || tk.ErrorCode != "dependency_failed" || tk.ItemsPurged != 0 {
				t.Errorf("%s: %s %q, want failed with dependency_failed", tk.Key(), tk.Status, tk.ErrorCode)
			}
		}
	})

	t.Run("a dependency must come first in the plan", func(t *testing.T) {
		bad := []TaskSpec{plan[1], plan[0]}
		if _, err := New("j", req, bad, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("New with a forward dependency = %v, want ErrInvalid", err)
		}
	})
}

func TestReplay(t *testing.T) {
	at := t0.Add(time.Hour)
	t.Run("failed tasks run again as a new generation and the job reopens", func(t *testing.T) {
		j := newJob(t, "contacts", "logs")
		mustApply(t, j, ok("contacts", 1, 10))
		mustApply(t, j, fail("logs", 1, "disk full"))
		if j.Status != StatusFailed {
			t.Fatalf("status %s", j.Status)
		}
		keys, err := j.Replay(ReplaySelector{}, "sre:kim", "disk repaired", at)
		if err != nil || len(keys) != 1 || keys[0] != (TaskKey{"logs", "erase"}) {
			t.Fatalf("Replay = %v, %v; want logs/erase", keys, err)
		}
		logs := &j.Tasks[1]
		if j.Status != StatusRunning || j.FinishedAt != nil || logs.Status != TaskScheduled || logs.Generation != 2 || !logs.DueAt.Equal(at) {
			t.Fatalf("after replay: job %s, logs %s gen %d", j.Status, logs.Status, logs.Generation)
		}
		// A late report of the old generation changes nothing.
		if eff, _ := j.ApplyReport(ok("logs", 1, 99)); eff.Result != ReportStale {
			t.Errorf("old generation report: %s, want stale", eff.Result)
		}
		r := ok("logs", 2, 5)
		r.Attempt = 1
		eff := mustApply(t, j, r)
		if !eff.Finished || j.Status != StatusCompleted || logs.Attempts != 3 || logs.ItemsPurged != 5 {
			t.Errorf("after the replay succeeded: job %s, attempts %d, items %d; want completed, 3 attempts (2 + 1), 5 items", j.Status, logs.Attempts, logs.ItemsPurged)
		}
		var outcomes []string
		for _, a := range logs.History {
			outcomes = append(outcomes, a.Outcome)
		}
		if fmt.Sprint(outcomes) != "[failed replayed succeeded]" || logs.History[1].Actor != "sre:kim" {
			t.Errorf("history = %+v", logs.History)
		}
	})
	t.Run("replaying a succeeded task counts nothing twice", func(t *testing.T) {
		j := newJob(t, "contacts")
		mustApply(t, j, ok("contacts", 1, 10))
		if _, err := j.Replay(ReplaySelector{Category: "contacts"}, "sre:kim", "verify", at); err != nil {
			t.Fatal(err)
		}
		mustApply(t, j, ok("contacts", 2, 0))
		if j.Status != StatusCompleted || j.ItemsPurged() != 10 || j.Tasks[0].Attempts != 2 {
			t.Errorf("job %s items %d attempts %d; want completed, 10, 2", j.Status, j.ItemsPurged(), j.Tasks[0].Attempts)
		}
	})
	t.Run("a task under way cannot be replayed", func(t *testing.T) {
		j := newJob(t, "contacts")
		if _, err := j.Replay(ReplaySelector{Category: "contacts"}, "a", "r", at); !errors.Is(err, ErrConflict) {
			t.Errorf("replay of a scheduled task = %v, want ErrConflict", err)
		}
		if _, err := j.Replay(ReplaySelector{}, "a", "r", at); !errors.Is(err, ErrConflict) {
			t.Errorf("replay without failed tasks = %v, want ErrConflict", err)
		}
	})
	t.Run("dependents that never ran run after the replayed dependency", func(t *testing.T) {
		ledger := TaskKey{"backups", "erase"}
		j, _ := New("j", Request{AccountID: "a", Origin: OriginAPI, RequestedBy: "p", Reason: "r"}, []TaskSpec{
			{Category: "backups", Stage: "erase", Action: "suppress"},
			{Category: "contacts", Stage: "erase", Action: "delete", DependsOn: []TaskKey{ledger}},
		}, t0)
		mustApply(t, j, fail("backups", 1, "ledger down"))
		if _, err := j.Replay(ReplaySelector{}, "sre", "ledger back", at); err != nil {
			t.Fatal(err)
		}
		if j.Tasks[0].Status != TaskScheduled || j.Tasks[1].Status != TaskWaiting {
			t.Fatalf("after replay: %s %s, want scheduled waiting", j.Tasks[0].Status, j.Tasks[1].Status)
		}
		mustApply(t, j, ok("backups", 2, 1))
		if j.Tasks[1].Status != TaskScheduled || j.Tasks[1].Generation != 2 {
			t.Errorf("contacts %s gen %d, want scheduled gen 2", j.Tasks[1].Status, j.Tasks[1].Generation)
		}
	})
}

func mustApply(t *testing.T, j *Job, r Report) Effect {
	t.Helper()
	eff, err := j.ApplyReport(r)
	if err != nil {
		t.Fatal(err)
	}
	return eff
}

func TestRecordRetry(t *testing.T) {
	j := newJob(t, "contacts")
	r := fail("contacts", 1, "timeout")
	r.Attempt = 1
	if _, ok, err := j.RecordRetry(r); err != nil || !ok {
		t.Fatalf("first retry: %v %v", ok, err)
	}
	if _, ok, _ := j.RecordRetry(r); ok {
		t.Error("the same delivery was recorded twice")
	}
	r.Attempt = 2
	_, _, _ = j.RecordRetry(r)
	tk := j.Tasks[0]
	if tk.Status != TaskScheduled || tk.Attempts != 2 || len(tk.History) != 2 || tk.Error != "timeout" {
		t.Errorf("task after two retries = %s attempts %d history %d error %q", tk.Status, tk.Attempts, len(tk.History), tk.Error)
	}
	final := ok("contacts", 1, 4)
	final.Attempt = 3
	mustApply(t, j, final)
	if j.Tasks[0].Attempts != 3 || j.Tasks[0].Error != "" || len(j.Tasks[0].History) != 3 || j.Status != StatusCompleted {
		t.Errorf("after success on attempt 3: %+v", j.Tasks[0])
	}
	if _, ok, _ := j.RecordRetry(r); ok {
		t.Error("a retry was recorded on a finished task")
	}
}
