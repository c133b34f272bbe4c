package backupstore

import (
	"context"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/lib/worker/workertest"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// The purger on the real worker runtime: a suppress task from the work
// queue ends in the ledger and in a succeeded report; an action the
// backups do not know ends in a failed one.
func TestWorkerRuntimeRunsBackupTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cat := erasurev1.CategoryBackups
	e := workertest.Start(t, cat, workertest.Settings(5*time.Second))

	ledger := newTestLedger(t)
	e.Run(t, e.NC, worker.Config{Category: cat, WorkerID: "backups-test", DrainTimeout: 5 * time.Second,
		Retry: worker.RetryPolicy{InProcessAttempts: 1, RedeliveryInitial: 50 * time.Millisecond, RedeliveryMax: 200 * time.Millisecond}},
		NewPurger(newTestStore(t), ledger), nil)

	e.Publish(t, "job1", "acc-job1", ActionSuppress)
	r := e.NextReport(t)
	if r.GetJobId() != "job1" || r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetItemsPurged() != 1 {
		t.Errorf("suppress report = %v, want job1 succeeded with 1 item", r)
	}
	entries, err := ledger.Entries(ctx, []string{"acc-job1"})
	if err != nil || len(entries) != 1 || entries[0].JobID != "job1" {
		t.Errorf("ledger after the task = %+v, %v; want the entry of job1", entries, err)
	}

	e.Publish(t, "job2", "acc-job2", "shred")
	r = e.NextReport(t)
	if r.GetJobId() != "job2" || r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_FAILED || r.GetErrorCode() != "unsupported_action" {
		t.Errorf("unknown action report = %v, want job2 failed with unsupported_action", r)
	}
}
