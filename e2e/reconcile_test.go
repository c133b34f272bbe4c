package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

func TestLostTaskIsRedispatchedByReconciliation(t *testing.T) {
	t.Parallel()
	p := startPipelineWith(t, func(c *app.Config) {
		c.RedispatchAfter = time.Millisecond // any dispatched task without a report is checked
		c.ReconcileInterval = time.Hour      // runs only when the test asks
	})
	p.seed(t, 100, "acc-lost")
	want := p.footprint(t, "acc-lost")
	p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-lost", RequestedBy: "privacy:ops", Reason: "PRIV-11"})

	// No worker yet: wait for the dispatch, then lose the message as a
	// broker that lost an acknowledged write would.
	ctx := context.Background()
	tasks, _ := p.js.Stream(ctx, erasurev1.TasksStream)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, last := taskMessages(t, tasks); n == 1 {
			if err := tasks.DeleteMsg(ctx, last); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("task never dispatched")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The proof before repair: the task counts as in flight, and a dry run
	// says it would be redispatched.
	code, body := p.call(t, "GET", "/v1/reconciliation", nil)
	var dry apiv1.ReconcileReport
	if err := json.Unmarshal(body, &dry); err != nil || code != 200 || dry.Tasks["in_flight"] != 1 || dry.Actions["redispatched"] != 1 || !dry.DryRun {
		t.Fatalf("dry reconciliation = %d %s", code, body)
	}
	code, body = p.call(t, "POST", "/v1/reconciliation", nil)
	var done apiv1.ReconcileReport
	if err := json.Unmarshal(body, &done); err != nil || code != http.StatusOK || done.Actions["redispatched"] != 1 {
		t.Fatalf("reconciliation = %d %s", code, body)
	}
	if n, _ := taskMessages(t, tasks); n != 1 {
		t.Fatalf("%d task messages after reconciliation, want the redispatched one", n)
	}
	// A second run does not publish it again: its message is present now.
	_, body = p.call(t, "POST", "/v1/reconciliation", nil)
	var again apiv1.ReconcileReport
	_ = json.Unmarshal(body, &again)
	if again.Actions["redispatched"] != 0 || len(again.Stuck) != 1 {
		t.Errorf("second run = %s; want no action and the task reported stuck (no worker yet)", body)
	}
	code, body = p.call(t, "GET", "/v1/erasures?stuck=true", nil)
	if code != 200 || !json.Valid(body) || !strings.Contains(string(body), "acc-lost") {
		t.Errorf("stuck list = %d %s", code, body)
	}

	if rc, out, _ := p.erasectl(t, "list", "--stuck"); rc != 0 || !strings.Contains(out, "acc-lost") || !strings.Contains(out, "contacts/erase") {
		t.Errorf("erasectl list --stuck: exit %d\n%s", rc, out)
	}
	if rc, out, _ := p.erasectl(t, "reconcile", "--dry-run"); rc != 0 || !strings.Contains(out, "in_flight  1") {
		t.Errorf("erasectl reconcile --dry-run: exit %d\n%s", rc, out)
	}

	p.startWorker(t, p.contacts)
	j := p.waitJob(t, "acc-lost", 30*time.Second)
	if j.Status != apiv1.JobCompleted || j.Tasks[0].ItemsPurged != want || p.footprint(t, "acc-lost") != 0 {
		t.Fatalf("job %s with %d items (want completed, %d)", j.Status, j.Tasks[0].ItemsPurged, want)
	}
	types := map[string]int{}
	for _, ev := range p.lifecycleOf(t, j.ID) {
		types[ev.GetType().String()]++
	}
	if types["EVENT_TYPE_TASK_REDISPATCHED"] != 1 {
		t.Errorf("lifecycle = %v, want one redispatch", types)
	}
}

func TestDeadlineQueriesThroughErasectl(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-due", RequestedBy: "privacy:ops", Reason: "PRIV-12"})
	// A job requested now is due in a month: at risk within 32 days, not 72 hours; overdue never.
	if rc, out, _ := p.erasectl(t, "list", "--at-risk", "--within", "768h"); rc != 0 || !strings.Contains(out, "acc-due") {
		t.Errorf("list --at-risk --within 768h: exit %d\n%s", rc, out)
	}
	if rc, out, _ := p.erasectl(t, "list", "--at-risk"); rc != 0 || strings.Contains(out, "acc-due") {
		t.Errorf("list --at-risk (72h): exit %d\n%s", rc, out)
	}
	if rc, out, _ := p.erasectl(t, "list", "--overdue", "-o", "json"); rc != 0 || strings.Contains(out, "acc-due") {
		t.Errorf("list --overdue: exit %d\n%s", rc, out)
	}
	if code, body := p.call(t, "GET", "/v1/erasures?due_within=soon", nil); code != http.StatusBadRequest {
		t.Errorf("due_within=soon: %d %s", code, body)
	}
}
