package logstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/lib/worker/workertest"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// The store on the real worker runtime and an embedded JetStream: tasks
// for several accounts published at once are erased in one pass that
// rewrites each segment once, every task gets its own report with its own
// count, and footprint requests over NATS see the result.
func TestWorkerRuntimeEndToEnd(t *testing.T) {
	t.Parallel()
	e := workertest.Start(t, erasurev1.CategoryLogs, workertest.Settings(5*time.Second))

	s := newStore(t, WithLinger(300*time.Millisecond))
	var erase []string
	for i := range 8 {
		erase = append(erase, fmt.Sprintf("acc-%06d", i))
	}
	keep := []string{"keep-1", "keep-2"}
	seeded := seedAccounts(t, s, smallSeed(), append(erase[:len(erase):len(erase)], keep...)...)

	// Published before the worker starts, so that its first pull fetches
	// them all and their purges wait together.
	for _, id := range erase {
		e.Publish(t, "job-"+id, id, "delete")
	}
	e.Publish(t, "job-bad", "keep-1", "pseudonymise")

	e.Run(t, e.NC, worker.Config{
		Category:     erasurev1.CategoryLogs,
		WorkerID:     "test-logs-worker",
		Concurrency:  64,
		DrainTimeout: 5 * time.Second,
		Retry:        worker.RetryPolicy{InProcessAttempts: 1, RedeliveryInitial: 50 * time.Millisecond, RedeliveryMultiplier: 2, RedeliveryMax: 200 * time.Millisecond},
	}, s, nil)

	got := make(map[string]*erasurev1.TaskReport)
	for len(got) < len(erase)+1 {
		select {
		case r := <-e.Reports:
			if r.GetOutcome() == erasurev1.TaskOutcome_TASK_OUTCOME_RETRYING {
				t.Errorf("task %s retried: %s", r.GetJobId(), r.GetErrorMessage())
				continue
			}
			got[r.GetJobId()] = r
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d reports within 20s", len(got), len(erase)+1)
		}
	}
	for _, id := range erase {
		r := got["job-"+id]
		if r == nil {
			t.Errorf("no report for %s", id)
			continue
		}
		if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetItemsPurged() != seeded[id].Records || r.GetAccountId() != id {
			t.Errorf("report of %s = %v, %d items; want succeeded with %d", id, r.GetOutcome(), r.GetItemsPurged(), seeded[id].Records)
		}
	}
	if r := got["job-bad"]; r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_FAILED || r.GetErrorCode() != "unsupported_action" {
		t.Errorf("report of the pseudonymise task = %v %q, want failed with unsupported_action", r.GetOutcome(), r.GetErrorCode())
	}
	if st := s.Stats(); st.Passes != 1 || st.SegmentRewrites != 3 || st.Accounts != int64(len(erase)) {
		t.Errorf("stats = %+v; want one pass of %d accounts rewriting each of the 3 segments once", st, len(erase))
	}

	fps := e.Footprint(t, append([]string{erase[0], erase[7]}, keep...))
	want := []int64{0, 0, seeded["keep-1"].Records, seeded["keep-2"].Records}
	for i, fp := range fps {
		if fp.GetItems() != want[i] || fp.GetDetail()[DetailRecords] != want[i] {
			t.Errorf("footprint of %s = %d %v, want %d", fp.GetAccountId(), fp.GetItems(), fp.GetDetail(), want[i])
		}
	}
}
