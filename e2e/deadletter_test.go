package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

// flakyStore fails transiently while down is set, as a store behind a
// broken network would.
type flakyStore struct {
	worker.Purger
	down  atomic.Bool
	calls atomic.Int32
}

func (f *flakyStore) Purge(ctx context.Context, t worker.Task) (worker.Result, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return worker.Result{}, worker.Transient("unavailable", errors.New("contacts database unreachable"))
	}
	return f.Purger.Purge(ctx, t)
}

func TestPoisonTaskIsDeadLetteredThenReplayedAfterTheFix(t *testing.T) {
	t.Parallel()
	p := startPipeline(t) // tasks: max deliver 5
	store := &flakyStore{Purger: p.contacts}
	store.down.Store(true)
	p.startWorker(t, store)
	p.seed(t, 200, "acc-poison")
	want := p.footprint(t, "acc-poison")
	p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-poison", RequestedBy: "privacy:ops", Reason: "PRIV-7"})

	j := p.waitJob(t, "acc-poison", 90*time.Second)
	task := j.Tasks[0]
	if j.Status != apiv1.JobFailed || task.ErrorCode != "max_deliveries" || task.Attempts != 5 {
		t.Fatalf("job %s, task %s %q after %d attempts; want failed with max_deliveries after 5", j.Status, task.Status, task.ErrorCode, task.Attempts)
	}
	var retrying int
	for _, a := range task.History {
		if a.Outcome == "retrying" {
			retrying++
			if a.At.IsZero() || a.Error == "" {
				t.Errorf("attempt without time or reason: %+v", a)
			}
		}
	}
	if retrying != 4 {
		t.Errorf("%d retrying attempts in the history, want 4 (then the failure): %+v", retrying, task.History)
	}

	code, body := p.call(t, "GET", "/v1/dead-letters?category=contacts", nil)
	var list apiv1.DeadLetterList
	if err := json.Unmarshal(body, &list); err != nil || code != 200 || list.Total != 1 || len(list.DeadLetters) != 1 {
		t.Fatalf("dead letters = %d %s", code, body)
	}
	dl := list.DeadLetters[0]
	if dl.JobID != j.ID || dl.Code != "max_deliveries" || dl.Attempts != 5 || dl.Reason == "" {
		t.Errorf("dead letter = %+v", dl)
	}

	store.down.Store(false)
	code, body = p.call(t, "POST", fmt.Sprintf("/v1/dead-letters/%d/replay", dl.Seq), apiv1.ReplayRequest{RequestedBy: "sre:kim", Reason: "network fixed"})
	var rr apiv1.DeadLetterReplay
	if err := json.Unmarshal(body, &rr); err != nil || code != 200 || rr.Result != "replayed" {
		t.Fatalf("replay dead letter = %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := p.waitJob(t, "acc-poison", 30*time.Second)
		if done.Status == apiv1.JobCompleted && done.Tasks[0].Generation == 2 {
			if done.Tasks[0].ItemsPurged != want {
				t.Errorf("items %d, want %d", done.Tasks[0].ItemsPurged, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayed job is %s", done.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.footprint(t, "acc-poison") != 0 {
		t.Error("data left after the replay")
	}
	if _, body := p.call(t, "GET", "/v1/dead-letters", nil); !json.Valid(body) || string(body) == "" {
		t.Fatal(string(body))
	} else if err := json.Unmarshal(body, &list); err != nil || list.Total != 0 {
		t.Errorf("dead letters after the replay: %s, want none", body)
	}
	code, _ = p.call(t, "POST", fmt.Sprintf("/v1/dead-letters/%d/replay", dl.Seq), apiv1.ReplayRequest{RequestedBy: "sre:kim", Reason: "again"})
	if code != http.StatusNotFound {
		t.Errorf("replaying a replayed dead letter = %d, want 404", code)
	}
}

func TestTaskWhoseWorkerCrashesOnEveryDeliveryIsDeadLettered(t *testing.T) {
	t.Parallel()
	p := startPipelineWith(t, func(c *app.Config) {
		c.Topology.TaskMaxDeliver = 2
		c.Topology.TaskAckWait = time.Second
	})
	p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-crash", RequestedBy: "privacy:ops", Reason: "PRIV-8"})
	// A "worker" that takes the task and dies before answering, every time.
	cons, err := p.js.Consumer(context.Background(), erasurev1.TasksStream, erasurev1.WorkerConsumer("contacts"))
	if err != nil {
		t.Fatal(err)
	}
	// It keeps pulling, as a restarted worker would: JetStream notices the
	// exhausted deliveries when it looks for the next message to hand out.
	deliveries := 0
	var j apiv1.Job
	for deadline := time.Now().Add(30 * time.Second); ; {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for range batch.Messages() {
			deliveries++ // never acked
		}
		if jobs := p.jobsOf(t, "acc-crash"); len(jobs) == 1 && jobs[0].Status == apiv1.JobFailed {
			j = jobs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not failed after %d deliveries: %+v", deliveries, p.jobsOf(t, "acc-crash"))
		}
	}
	if j.Tasks[0].ErrorCode != "max_deliveries" || deliveries != 2 {
		t.Fatalf("task %+v after %d deliveries; want max_deliveries after 2", j.Tasks[0], deliveries)
	}
	_, body := p.call(t, "GET", "/v1/dead-letters", nil)
	var list apiv1.DeadLetterList
	if err := json.Unmarshal(body, &list); err != nil || list.Total != 1 || list.DeadLetters[0].JobID != j.ID || list.DeadLetters[0].Attempts != 2 {
		t.Fatalf("dead letters = %s", body)
	}
	st, _ := p.js.Stream(context.Background(), erasurev1.TasksStream)
	if n, _ := taskMessages(t, st); n != 0 {
		t.Errorf("%d task messages left in the work queue, want 0", n)
	}
}
