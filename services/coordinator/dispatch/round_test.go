package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/lethe-privacy/lethe/lib/testenv"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/lease"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// TestRoundsSendEveryTaskOnce: more jobs than one round takes, each with
// two tasks due at once, dispatched by a leader (so every publish is
// fenced), publishing one ack at a time and without waiting. Every task
// goes out exactly once, its stream sequence is noted on the job, nothing
// is left claimed, and every dispatch is in the audit trail.
func TestRoundsSendEveryTaskOnce(t *testing.T) {
	t.Parallel()
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			t.Parallel()
			js, store := setup(t)
			rdb, prefix := testenv.Redis(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const n = 300 // more than a round's 256 tasks
			now := time.Now()
			var ids []string
			for i := range n {
				j, err := jobs.New(fmt.Sprintf("job-%03d", i), jobs.Request{AccountID: fmt.Sprintf("acc-%03d", i), Origin: jobs.OriginAPI, RequestedBy: "privacy:t", Reason: "r"},
					[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}, {Category: "logs", Stage: "erase", Action: "delete"}}, now)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := store.Create(ctx, j); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, j.ID)
			}
			d := dispatch.New(store, js, lifecycle.NewRecorder(js), zaptest.NewLogger(t), nil, dispatch.Options{
				Lease: lease.New(rdb, prefix, "scheduler", "replica", 5*time.Second), MaxSleep: 100 * time.Millisecond, AsyncPublish: async,
			})
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			seqs := map[uint64]string{}
			waitFor(t, "every task to be sent and its sequence noted", func() bool {
				clear(seqs)
				for _, id := range ids {
					j, err := store.Get(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					for _, task := range j.Tasks {
						if task.Status != jobs.TaskDispatched || task.MsgSeq == 0 {
							return false
						}
						if other, dup := seqs[task.MsgSeq]; dup {
							t.Fatalf("tasks %s and %s/%s noted at the same sequence %d", other, id, task.Category, task.MsgSeq)
						}
						seqs[task.MsgSeq] = id + "/" + task.Category
					}
				}
				return true
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			bg := context.Background()
			tasks, err := js.Stream(bg, erasurev1.TasksStream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := tasks.Info(bg, jetstreamSubjects())
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []string{"contacts", "logs"} {
				if got := info.State.Subjects[erasurev1.TaskSubject(c)]; got != n {
					t.Errorf("%d %s task messages, want %d (one per job)", got, c, n)
				}
			}
			claimed, err := store.Claimed(bg, time.Now().Add(time.Hour), 1000)
			if err != nil || len(claimed) != 0 {
				t.Errorf("%d tasks left claimed (err %v), want none", len(claimed), err)
			}
			life, err := js.Stream(bg, erasurev1.LifecycleStream)
			if err != nil {
				t.Fatal(err)
			}
			li, err := life.Info(bg)
			if err != nil {
				t.Fatal(err)
			}
			if li.State.Msgs != 2*n {
				t.Errorf("%d lifecycle events, want %d (one TASK_DISPATCHED per task)", li.State.Msgs, 2*n)
			}
		})
	}
}
