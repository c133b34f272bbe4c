package backupstore

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// The purger on the real worker runtime: a suppress task from the work
// queue ends in the ledger and in a succeeded report; an action the
// backups do not know ends in a failed one.
func TestWorkerRuntimeRunsBackupTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testenv.StartNATS(t)
	nc, js := srv.Connect(t)
	cat := erasurev1.CategoryBackups
	if err := topology.Ensure(ctx, js, topology.Settings{Categories: []string{cat}, TaskAckWait: 5 * time.Second, TaskMaxDeliver: 3, TaskBackOff: []time.Duration{}}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	reports := make(chan *erasurev1.TaskReport, 10)
	cons, err := js.CreateOrUpdateConsumer(ctx, erasurev1.ReportsStream, jetstream.ConsumerConfig{Durable: "test-reports", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r erasurev1.TaskReport
		if err := proto.Unmarshal(m.Data(), &r); err != nil {
			t.Errorf("undecodable report: %v", err)
		}
		_ = m.Ack()
		reports <- &r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)

	ledger := newTestLedger(t)
	rt, err := worker.New(worker.Config{Category: cat, WorkerID: "backups-test", DrainTimeout: 5 * time.Second,
		Retry: worker.RetryPolicy{InProcessAttempts: 1, RedeliveryInitial: 50 * time.Millisecond, RedeliveryMax: 200 * time.Millisecond}},
		nc, js, NewPurger(newTestStore(t), ledger), zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	publish := func(job, action string) {
		t.Helper()
		data, err := proto.Marshal(&erasurev1.ErasureTask{JobId: job, AccountId: "acc-" + job, Category: cat, Stage: "erase", Action: action, Generation: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, erasurev1.TaskSubject(cat), data, jetstream.WithMsgID(erasurev1.TaskMsgID(job, cat, "erase", 1))); err != nil {
			t.Fatalf("publish task: %v", err)
		}
	}
	next := func() *erasurev1.TaskReport {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(15 * time.Second):
			t.Fatal("no report within 15s")
			return nil
		}
	}

	publish("job1", ActionSuppress)
	r := next()
	if r.GetJobId() != "job1" || r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetItemsPurged() != 1 {
		t.Errorf("suppress report = %v, want job1 succeeded with 1 item", r)
	}
	entries, err := ledger.Entries(ctx, []string{"acc-job1"})
	if err != nil || len(entries) != 1 || entries[0].JobID != "job1" {
		t.Errorf("ledger after the task = %+v, %v; want the entry of job1", entries, err)
	}

	publish("job2", "shred")
	r = next()
	if r.GetJobId() != "job2" || r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_FAILED || r.GetErrorCode() != "unsupported_action" {
		t.Errorf("unknown action report = %v, want job2 failed with unsupported_action", r)
	}
}
