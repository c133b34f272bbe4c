package dispatch_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// TestClaimedButUnsentTasksAreResent: a coordinator that died between
// claiming tasks and publishing them (or between publishing and noting
// where the message sits) leaves them dispatched without a sequence; the
// scheduler sends them once they are older than ResendAfter, and a message
// that did reach the stream is not doubled (same Nats-Msg-Id).
func TestClaimedButUnsentTasksAreResent(t *testing.T) {
	t.Parallel()
	js, store := setup(t)
	ctx := context.Background()
	claimedAt := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	j, err := jobs.New("job-claimed", jobs.Request{AccountID: "acc-c", Origin: jobs.OriginAPI, RequestedBy: "privacy:t", Reason: "r"},
		[]jobs.TaskSpec{{Category: "contacts", Stage: "erase", Action: "delete"}, {Category: "logs", Stage: "erase", Action: "delete"}}, claimedAt)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	// The crash: both claimed; the logs message reached the stream, the
	// contacts one did not; neither sequence was noted.
	j, err = store.Update(ctx, j.ID, func(j *jobs.Job) error {
		for _, k := range []jobs.TaskKey{{Category: "contacts", Stage: "erase"}, {Category: "logs", Stage: "erase"}} {
			if ok, err := j.MarkDispatched(k, 1, claimedAt); err != nil || !ok {
				t.Fatalf("claim %s: %v %v", k, ok, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := j.Task(jobs.TaskKey{Category: "logs", Stage: "erase"})
	m, err := dispatch.TaskMessage(j, logs, claimedAt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}

	now := claimedAt.Add(5 * time.Second)
	d := dispatch.New(store, js, lifecycle.NewRecorder(js), zaptest.NewLogger(t), nil, dispatch.Options{
		Now: func() time.Time { return now }, ResendAfter: 15 * time.Second,
	})
	if _, err := d.DispatchDue(ctx); err != nil {
		t.Fatal(err)
	}
	tasks, _ := js.Stream(ctx, erasurev1.TasksStream)
	if info, _ := tasks.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("%d task messages before ResendAfter, want the 1 that got through", info.State.Msgs)
	}
	now = claimedAt.Add(20 * time.Second)
	if _, err := d.DispatchDue(ctx); err != nil {
		t.Fatal(err)
	}
	if info, _ := tasks.Info(ctx); info.State.Msgs != 2 {
		t.Fatalf("%d task messages after the resend, want 2 (one per task, none doubled)", info.State.Msgs)
	}
	got, err := store.Get(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range got.Tasks {
		if task.Status != jobs.TaskDispatched || task.MsgSeq == 0 {
			t.Errorf("task %s: %s seq %d, want dispatched with its sequence noted", task.Key(), task.Status, task.MsgSeq)
		}
	}
	left, err := store.Claimed(ctx, now, 10)
	if err != nil || len(left) != 0 {
		t.Fatalf("claimed index after the resend: %v %v, want empty", left, err)
	}
}
