package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/cli"
	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// brokenStore fails every purge for good while broken is set, as a store
// with revoked permissions would, and purges for real otherwise.
type brokenStore struct {
	worker.Purger
	broken atomic.Bool
}

func (b *brokenStore) Purge(ctx context.Context, t worker.Task) (worker.Result, error) {
	if b.broken.Load() {
		return worker.Result{}, worker.Permanentf("refused", "permission denied for table contacts")
	}
	return b.Purger.Purge(ctx, t)
}

func TestFailedJobReplayedAfterTheFixCompletes(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	store := &brokenStore{Purger: p.contacts}
	store.broken.Store(true)
	p.startWorker(t, store)
	p.seed(t, 300, "acc-fix")
	want := p.footprint(t, "acc-fix")

	code, body := p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-fix", RequestedBy: "privacy:ops", Reason: "PRIV-9"})
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, body)
	}
	j := p.waitJob(t, "acc-fix", 30*time.Second)
	if j.Status != apiv1.JobFailed {
		t.Fatalf("job %s, want failed while the store is broken", j.Status)
	}
	// Replaying before the fix is allowed; a replay of a running job is not.
	store.broken.Store(false)
	// The SRE's way: erasectl replay --wait against the real coordinator.
	var stdout, stderr bytes.Buffer
	env := map[string]string{"LETHE_API_URL": p.api, "LETHE_API_TOKEN": tokenOf(srePrincipal)}
	rc := cli.Main(context.Background(), []string{"replay", j.ID, "--requested-by", "sre:kim", "--reason", "grants restored", "--wait", "-o", "json"},
		func(k string) string { return env[k] }, &stdout, &stderr)
	var replayed apiv1.Job
	if err := json.Unmarshal(stdout.Bytes(), &replayed); rc != 0 || err != nil || replayed.Status != apiv1.JobCompleted {
		t.Fatalf("erasectl replay --wait: exit %d, %s\n%s", rc, stdout.String(), stderr.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	var done apiv1.Job
	for {
		_, body = p.call(t, "GET", "/v1/erasures/"+j.ID, nil)
		_ = json.Unmarshal(body, &done)
		if done.Status == apiv1.JobCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayed job still %s", done.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	task := done.Tasks[0]
	if task.Generation != 2 || task.ItemsPurged != want || task.Attempts != 2 || len(task.History) != 3 {
		t.Errorf("task after replay = gen %d items %d attempts %d history %+v; want gen 2, %d items, 2 attempts, failed+replayed+succeeded",
			task.Generation, task.ItemsPurged, task.Attempts, task.History, want)
	}
	if p.footprint(t, "acc-fix") != 0 {
		t.Error("data left after the replay completed")
	}

	// Replaying the completed job's task again erases nothing twice.
	code, _ = p.callAs(t, srePrincipal, "POST", "/v1/erasures/"+j.ID+"/replay", apiv1.ReplayRequest{Category: "contacts", RequestedBy: "sre:kim", Reason: "verify"})
	if code != http.StatusOK {
		t.Fatalf("replay of a completed task = %d", code)
	}
	again := p.waitJob(t, "acc-fix", 30*time.Second)
	for deadline := time.Now().Add(30 * time.Second); again.Tasks[0].Generation != 3 || again.Status != apiv1.JobCompleted; {
		if time.Now().After(deadline) {
			t.Fatalf("second replay: job %s gen %d", again.Status, again.Tasks[0].Generation)
		}
		time.Sleep(50 * time.Millisecond)
		again = p.waitJob(t, "acc-fix", 30*time.Second)
	}
	if again.Tasks[0].ItemsPurged != want {
		t.Errorf("items after replaying a completed task = %d, want still %d", again.Tasks[0].ItemsPurged, want)
	}
	// Conflicts answer 409 with the state.
	code, body = p.callAs(t, srePrincipal, "POST", "/v1/erasures/"+j.ID+"/replay", apiv1.ReplayRequest{RequestedBy: "sre:kim", Reason: "nothing failed"})
	if code != http.StatusConflict {
		t.Errorf("replay without failed tasks = %d %s, want 409", code, body)
	}
	var types []string
	for _, ev := range p.lifecycleOf(t, j.ID) {
		types = append(types, ev.GetType().String())
	}
	t.Logf("lifecycle: %v", types)
	if n := count(types, "EVENT_TYPE_TASK_REPLAYED"); n != 2 {
		t.Errorf("%d replay events in the trail, want 2", n)
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
