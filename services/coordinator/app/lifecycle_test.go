package app

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
	"github.com/lethe-privacy/lethe/services/coordinator/policy"
	"github.com/lethe-privacy/lethe/services/coordinator/rebuild"
)

// fakeClock is the injectable clock: tests move it, nothing sleeps.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// lifecycleRig is the coordinator's scheduling core on the real broker and
// Redis, under a fake clock, with the test acting as the workers: it takes
// task messages off the real work queues and answers with reports.
type lifecycleRig struct {
	js    jetstream.JetStream
	store *jobstore.Store
	svc   *Service
	disp  *dispatch.Dispatcher
	clock *fakeClock
	cons  map[string]jetstream.Consumer
	// invoiceIssued is the anchor the billing "worker" reports.
	invoiceIssued time.Time
}

func newLifecycleRig(t *testing.T, start time.Time) *lifecycleRig {
	t.Helper()
	ctx := context.Background()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	settings := topology.DefaultSettings()
	if err := topology.Ensure(ctx, js, settings); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	store := jobstore.New(rdb, prefix)
	rec := lifecycle.NewRecorder(js)
	clock := &fakeClock{t: start}
	disp := dispatch.New(store, js, rec, zaptest.NewLogger(t), nil, dispatch.Options{Now: clock.Now})
	svc := NewService(store, rec, nil, nil, WithClock(clock.Now), WithPolicy(policy.Default()), WithWake(disp.Wake))
	r := &lifecycleRig{js: js, store: store, svc: svc, disp: disp, clock: clock, cons: map[string]jetstream.Consumer{},
		invoiceIssued: time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)}
	for _, cat := range settings.Categories {
		c, err := js.Consumer(ctx, erasurev1.TasksStream, erasurev1.WorkerConsumer(cat))
		if err != nil {
			t.Fatal(err)
		}
		r.cons[cat] = c
	}
	return r
}

// step dispatches what is due at the clock's time and answers every task
// sent, until nothing more is due; it returns the tasks run
// ("category/stage").
func (r *lifecycleRig) step(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var ran []string
	for {
		n, err := r.disp.DispatchDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := r.work(t)
		ran = append(ran, got...)
		if n == 0 && len(got) == 0 {
			return ran
		}
	}
}

// work answers every task message waiting in the work queues.
func (r *lifecycleRig) work(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var ran []string
	for cat, c := range r.cons {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			var task erasurev1.ErasureTask
			if err := proto.Unmarshal(m.Data(), &task); err != nil {
				t.Fatal(err)
			}
			rep := &erasurev1.TaskReport{
				JobId: task.GetJobId(), AccountId: task.GetAccountId(), Category: cat, Stage: task.GetStage(),
				Generation: task.GetGeneration(), Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED, ItemsPurged: 1, Attempt: 1,
			}
			if cat == erasurev1.CategoryBilling && task.GetAction() == "pseudonymise" {
				rep.Anchors = map[string]*timestamppb.Timestamp{policy.AnchorInvoiceIssued: timestamppb.New(r.invoiceIssued)}
			}
			if _, err := r.svc.ApplyReport(ctx, rep); err != nil {
				t.Fatal(err)
			}
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
			ran = append(ran, cat+"/"+task.GetStage())
		}
	}
	return ran
}

func (r *lifecycleRig) job(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := r.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestDefaultPolicyAcrossEightYears runs a dashboard deletion through the
// shipped retention policy under a fake clock: nothing during the 14-day
// grace period, then every erasing stage (job erased), the backups check
// 35 days on, and the retained invoices deleted on 1 January after eight
// full years from the end of their year of issue (job completed).
func TestDefaultPolicyAcrossEightYears(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	r := newLifecycleRig(t, start)
	ctx := context.Background()
	j, _, err := r.svc.RequestErasure(ctx, jobs.Request{AccountID: "acc-8y", Origin: jobs.OriginDashboard, RequestedBy: "dashboard:acc-8y", Reason: "account deleted"})
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	if j.Status != jobs.StatusPending || j.PolicyVersion != pol.Version || j.PolicyFingerprint != pol.Fingerprint() {
		t.Fatalf("new dashboard job: %s, policy %s %s; want pending under %s", j.Status, j.PolicyVersion, j.PolicyFingerprint, pol.Version)
	}

	steps := []struct {
		at         time.Time
		wantRan    int
		wantStatus jobs.Status
	}{
		{start.Add(13 * 24 * time.Hour), 0, jobs.StatusPending},              // still in grace
		{start.Add(14 * 24 * time.Hour), 4, jobs.StatusErased},               // backups, then contacts, logs, billing
		{start.Add(14*24*time.Hour + 34*24*time.Hour), 0, jobs.StatusErased}, // backup window not over
		{start.Add(14*24*time.Hour + 35*24*time.Hour), 1, jobs.StatusErased}, // verify_rotated
		{time.Date(2034, 12, 31, 22, 59, 0, 0, time.UTC), 0, jobs.StatusErased},
		{time.Date(2034, 12, 31, 23, 0, 0, 0, time.UTC), 1, jobs.StatusCompleted}, // 1 Jan 2035 00:00 Berlin
	}
	for _, s := range steps {
		r.clock.Set(s.at)
		ran := r.step(t)
		got := r.job(t, j.ID)
		t.Logf("%s: ran %v, job %s", s.at.Format(time.RFC3339), ran, got.Status)
		if len(ran) != s.wantRan || got.Status != s.wantStatus {
			t.Fatalf("at %s ran %v and job is %s; want %d tasks and %s", s.at, ran, got.Status, s.wantRan, s.wantStatus)
		}
	}
	final := r.job(t, j.ID)
	del, _ := final.Task(jobs.TaskKey{Category: "billing", Stage: "delete_retained"})
	if want := time.Date(2034, 12, 31, 23, 0, 0, 0, time.UTC); del.DispatchedAt == nil || !del.DispatchedAt.Equal(want) {
		t.Fatalf("delete_retained dispatched at %v, want %s", del.DispatchedAt, want)
	}
	if final.ErasedAt == nil || !final.ErasedAt.Equal(start.Add(14*24*time.Hour)) {
		t.Fatalf("erased at %v, want the end of the grace period", final.ErasedAt)
	}

	// The trail says so, and a rebuild from it gives the same job.
	types := lifecycleTypes(t, r.js, j.ID)
	for _, want := range []erasurev1.EventType{erasurev1.EventType_EVENT_TYPE_JOB_ERASED, erasurev1.EventType_EVENT_TYPE_TASK_SCHEDULED, erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED} {
		if types[want] != 1 {
			t.Errorf("%d %s events, want 1", types[want], want)
		}
	}
	rebuilt := foldJob(t, r.js, j.ID)
	if rebuilt.Status != final.Status || !rebuilt.ErasedAt.Equal(*final.ErasedAt) || rebuilt.PolicyFingerprint != final.PolicyFingerprint {
		t.Fatalf("rebuilt job %s (erased %v, policy %s), want %s", rebuilt.Status, rebuilt.ErasedAt, rebuilt.PolicyFingerprint, final.Status)
	}
	rdel, _ := rebuilt.Task(jobs.TaskKey{Category: "billing", Stage: "delete_retained"})
	if rdel.Status != jobs.TaskSucceeded || !rdel.DueAt.Equal(del.DueAt) {
		t.Fatalf("rebuilt delete_retained %s due %s, want succeeded due %s", rdel.Status, rdel.DueAt, del.DueAt)
	}
}

// TestCancelDuringGraceErasesNothing: a cancelled job sends no task, ever.
func TestCancelDuringGraceErasesNothing(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	r := newLifecycleRig(t, start)
	ctx := context.Background()
	j, _, err := r.svc.RequestErasure(ctx, jobs.Request{AccountID: "acc-undo", Origin: jobs.OriginDashboard, RequestedBy: "dashboard:acc-undo"})
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Set(start.Add(3 * 24 * time.Hour))
	if _, err := r.svc.Act(ctx, j.ID, jobs.ActionRequest{Kind: jobs.ActionCancel, Actor: "dashboard:acc-undo", Reason: "customer restored the account"}); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{start.Add(15 * 24 * time.Hour), start.Add(400 * 24 * time.Hour), start.AddDate(9, 0, 0)} {
		r.clock.Set(at)
		if ran := r.step(t); len(ran) != 0 {
			t.Fatalf("a cancelled job ran %v at %s", ran, at)
		}
	}
	if got := r.job(t, j.ID); got.Status != jobs.StatusCancelled {
		t.Fatalf("job is %s, want cancelled", got.Status)
	}
	if n := taskMessagesSent(t, r.js); n != 0 {
		t.Fatalf("%d task messages were published for a cancelled job", n)
	}
	// A cancelled job cannot be forced back.
	if _, err := r.svc.Act(ctx, j.ID, jobs.ActionRequest{Kind: jobs.ActionForce, Actor: "privacy:t", Reason: "r", Ticket: "PRIV-1"}); err == nil {
		t.Fatal("force of a cancelled job was accepted")
	}
}

// TestHoldStopsADueStageAndReleaseResumesIt: force a pending job, hold it
// before its stages run, let their time pass, release: they run then.
func TestHoldStopsADueStageAndReleaseResumesIt(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	r := newLifecycleRig(t, start)
	ctx := context.Background()
	j, _, err := r.svc.RequestErasure(ctx, jobs.Request{AccountID: "acc-hold", Origin: jobs.OriginDashboard, RequestedBy: "dashboard:acc-hold"})
	if err != nil {
		t.Fatal(err)
	}
	act := func(k jobs.ActionKind) {
		t.Helper()
		if _, err := r.svc.Act(ctx, j.ID, jobs.ActionRequest{Kind: k, Actor: "privacy:jdoe", Reason: "legal", Ticket: "LEGAL-1"}); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	act(jobs.ActionForce)
	act(jobs.ActionHold)
	r.clock.Set(start.Add(30 * 24 * time.Hour))
	if ran := r.step(t); len(ran) != 0 {
		t.Fatalf("a held job ran %v", ran)
	}
	act(jobs.ActionRelease)
	if ran := r.step(t); len(ran) != 4 {
		t.Fatalf("after release ran %v, want the 4 erasing stages", ran)
	}
	if got := r.job(t, j.ID); got.Status != jobs.StatusErased || len(got.Actions) != 3 {
		t.Fatalf("job %s with %d actions, want erased with force, hold, release", got.Status, len(got.Actions))
	}
	types := lifecycleTypes(t, r.js, j.ID)
	for _, want := range []erasurev1.EventType{erasurev1.EventType_EVENT_TYPE_JOB_FORCED, erasurev1.EventType_EVENT_TYPE_JOB_HELD, erasurev1.EventType_EVENT_TYPE_JOB_RELEASED} {
		if types[want] != 1 {
			t.Errorf("%d %s events, want 1", types[want], want)
		}
	}
	if rebuilt := foldJob(t, r.js, j.ID); rebuilt.Status != jobs.StatusErased || len(rebuilt.Actions) != 3 {
		t.Fatalf("rebuilt job %s with %d actions", rebuilt.Status, len(rebuilt.Actions))
	}
}

func lifecycleTypes(t *testing.T, js jetstream.JetStream, jobID string) map[erasurev1.EventType]int {
	t.Helper()
	out := map[erasurev1.EventType]int{}
	for _, ev := range lifecycleEvents(t, js, jobID) {
		out[ev.GetType()]++
	}
	return out
}

func lifecycleEvents(t *testing.T, js jetstream.JetStream, jobID string) []*erasurev1.LifecycleEvent {
	t.Helper()
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, erasurev1.LifecycleStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{erasurev1.LifecycleSubject(jobID)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []*erasurev1.LifecycleEvent
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev erasurev1.LifecycleEvent
			if err := proto.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			out = append(out, &ev)
		}
		if n == 0 {
			return out
		}
	}
}

func foldJob(t *testing.T, js jetstream.JetStream, jobID string) *jobs.Job {
	t.Helper()
	f := rebuild.NewFold()
	for i, ev := range lifecycleEvents(t, js, jobID) {
		f.Add(uint64(i+1), ev)
	}
	f.Settle()
	if s := f.Finish(); len(s.Problems) > 0 {
		t.Fatalf("rebuild problems: %+v", s.Problems)
	}
	js2 := f.Jobs()
	if len(js2) != 1 {
		t.Fatalf("rebuilt %d jobs", len(js2))
	}
	return js2[0]
}

func taskMessagesSent(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), erasurev1.TasksStream)
	if err != nil {
		t.Fatal(err)
	}
	// Acked work-queue messages are gone: the last sequence counts every
	// message ever stored (no fence here: this dispatcher has no lease).
	return st.CachedInfo().State.LastSeq
}
