package dispatch_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/jobstore"
	"github.com/lethe-privacy/lethe/services/coordinator/lease"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// pausable wraps a lease so that a test can freeze its renewals, as a
// stopped process (SIGSTOP, a long GC pause, a VM migration) would.
type pausable struct {
	*lease.Lease
	mu     sync.Mutex
	paused chan struct{} // non-nil while paused; closed on resume
}

func (p *pausable) Renew(ctx context.Context, token int64) error {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.Lease.Renew(ctx, token)
}

func (p *pausable) pause() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = make(chan struct{})
	return p.paused
}

func leaderGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lethe_scheduler_leader" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no lethe_scheduler_leader gauge")
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPausedLeaderCannotPublishAfterHandover: replica A claims a task and
// freezes (its lease renewals too) just before publishing; its lease runs
// out and replica B takes over. When A wakes, its publish is refused by the
// stream (B's fence message replaced A's), A gives the claim back, and B
// sends the task: exactly one task message, sent by the leader. Both
// ways of publishing: one ack at a time, and a round's tasks without
// waiting (what a coordinator on one server does).
func TestPausedLeaderCannotPublishAfterHandover(t *testing.T) {
	t.Parallel()
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			t.Parallel()
			testPausedLeader(t, async)
		})
	}
}

func testPausedLeader(t *testing.T, async bool) {
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	settings := topology.DefaultSettings()
	settings.Categories = []string{"contacts"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := topology.Ensure(ctx, js, settings); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	store := jobstore.New(rdb, prefix)
	rec := lifecycle.NewRecorder(js)
	const ttl = 600 * time.Millisecond

	leaseA := &pausable{Lease: lease.New(rdb, prefix, "scheduler", "replica-a", ttl)}
	var resumeRenew chan struct{}
	resumePublish := make(chan struct{})
	var blockOnce sync.Once
	claimed := make(chan struct{})
	regA := prometheus.NewRegistry()
	core, logsA := observer.New(zap.InfoLevel)
	a := dispatch.New(store, js, rec, zap.New(core).Named("a"), regA, dispatch.Options{
		Lease: leaseA, MaxSleep: 100 * time.Millisecond, AsyncPublish: async,
		BeforePublish: func(string, jobs.TaskKey) {
			blockOnce.Do(func() {
				resumeRenew = leaseA.pause()
				close(claimed)
				<-resumePublish
			})
		},
	})
	doneA := make(chan error, 1)
	go func() { doneA <- a.Run(ctx) }()
	waitFor(t, "replica A to lead", func() bool { return leaderGauge(t, regA) == 1 })

	regB := prometheus.NewRegistry()
	b := dispatch.New(store, js, rec, zaptest.NewLogger(t).Named("b"), regB, dispatch.Options{
		Lease: lease.New(rdb, prefix, "scheduler", "replica-b", ttl), MaxSleep: 100 * time.Millisecond, AsyncPublish: async,
	})
	doneB := make(chan error, 1)
	go func() { doneB <- b.Run(ctx) }()

	j, err := jobs.New("job-lease", jobs.Request{AccountID: "acc-lease", Origin: jobs.OriginAPI, RequestedBy: "privacy:t", Reason: "r"},
		[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	a.Wake()
	select {
	case <-claimed:
	case <-time.After(20 * time.Second):
		t.Fatal("replica A never claimed the task")
	}
	t.Log("replica A claimed the task and froze before publishing")
	waitFor(t, "replica B to take the lease over", func() bool { return leaderGauge(t, regB) == 1 })
	t.Log("replica B holds the lease")

	// A wakes with its lease long gone (its renewals still frozen): the
	// publish it was about to make is refused by the stream.
	close(resumePublish)
	waitFor(t, "replica A to step down", func() bool { return leaderGauge(t, regA) == 0 })
	close(resumeRenew)
	if n := logsA.FilterMessage("deposed: another replica schedules now").Len(); n != 1 {
		t.Fatalf("replica A logged %d deposed messages, want 1 (its publish refused by the fence)", n)
	}
	waitFor(t, "the task to be sent", func() bool {
		got, err := store.Get(ctx, j.ID)
		return err == nil && got.Tasks[0].Status == jobs.TaskDispatched && got.Tasks[0].MsgSeq > 0
	})

	tasks, err := js.Stream(ctx, erasurev1.TasksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := tasks.Info(ctx, jetstreamSubjects())
	if err != nil {
		t.Fatal(err)
	}
	sent := info.State.Subjects[erasurev1.TaskSubject("contacts")]
	fences := info.State.Subjects[erasurev1.SchedulerFenceSubject]
	t.Logf("task messages %d, fence messages %d", sent, fences)
	if sent != 1 {
		t.Fatalf("%d task messages, want exactly 1", sent)
	}
	if fences < 2 {
		t.Fatalf("%d fence messages, want one per leadership (at least 2)", fences)
	}
	cancel()
	for _, done := range []chan error{doneA, doneB} {
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
}
