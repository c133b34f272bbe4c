package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/cli"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// erasectl runs the real CLI against the pipeline and returns its exit
// code and output. It calls the API as sre:kim for the SRE's commands
// (replay, dead-letters, reconcile, admin), as privacy:ops for the rest.
func (p *pipeline) erasectl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	principal := privacyPrincipal
	if len(args) > 0 && (args[0] == "replay" || args[0] == "dead-letters" || args[0] == "reconcile" || args[0] == "admin") {
		principal = srePrincipal
	}
	env := map[string]string{"LETHE_API_URL": p.api, "LETHE_NATS_URL": p.nats.URL, "LETHE_API_TOKEN": tokenOf(principal)}
	rc := cli.Main(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return rc, stdout.String(), stderr.String()
}

// TestSRESessionBrokenStoreBulkReplay walks the SRE's flow: the contacts
// store breaks, jobs fail and are dead-lettered, the store is repaired,
// a bulk replay is dry-run and then run, and every job completes.
func TestSRESessionBrokenStoreBulkReplay(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	store := &brokenStore{Purger: p.contacts}
	store.broken.Store(true)
	p.startWorker(t, store)
	accounts := []string{"acc-s1", "acc-s2", "acc-s3", "acc-s4"}
	p.seed(t, 100, accounts...)
	want := map[string]int64{}
	for _, a := range accounts {
		want[a] = p.footprint(t, a)
		if rc, _, stderr := p.erasectl(t, "request", a, "--requested-by", "privacy:ops", "--reason", "PRIV-10"); rc != 0 {
			t.Fatalf("request %s: exit %d %s", a, rc, stderr)
		}
	}
	for _, a := range accounts {
		if j := p.waitJob(t, a, 30*time.Second); j.Status != apiv1.JobFailed {
			t.Fatalf("%s: job %s while the store is broken", a, j.Status)
		}
	}
	rc, out, _ := p.erasectl(t, "dead-letters", "list", "-o", "json")
	var dl apiv1.DeadLetterList
	if err := json.Unmarshal([]byte(out), &dl); rc != 0 || err != nil || dl.Total != len(accounts) {
		t.Fatalf("dead-letters list: exit %d, %s", rc, out)
	}

	store.broken.Store(false)
	rc, out, _ = p.erasectl(t, "replay", "--status", "failed", "--since", "1h", "--dry-run")
	if rc != 0 || !strings.Contains(out, "dry run: 4 jobs would be replayed") {
		t.Fatalf("dry run: exit %d\n%s", rc, out)
	}
	for _, a := range accounts {
		if j := p.jobsOf(t, a)[0]; j.Status != apiv1.JobFailed {
			t.Errorf("the dry run changed %s to %s", a, j.Status)
		}
	}
	rc, out, errOut := p.erasectl(t, "replay", "--status", "failed", "--since", "1h", "--requested-by", "sre:kim", "--reason", "grants restored")
	if rc != 0 || !strings.Contains(out, "4 matched, 4 replayed, 0 not replayed") || strings.Count(errOut, "replaying ") != 4 {
		t.Fatalf("bulk replay: exit %d\n%s\n%s", rc, out, errOut)
	}
	for _, a := range accounts {
		deadline := time.Now().Add(30 * time.Second)
		for {
			j := p.jobsOf(t, a)[0]
			if j.Status == apiv1.JobCompleted {
				if j.Tasks[0].ItemsPurged != want[a] {
					t.Errorf("%s: %d items, want %d", a, j.Tasks[0].ItemsPurged, want[a])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still %s after the bulk replay", a, j.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n := p.footprint(t, a); n != 0 {
			t.Errorf("%s: %d items left", a, n)
		}
	}
	// The letters of the replayed tasks are resolved when drained.
	rc, out, _ = p.erasectl(t, "dead-letters", "replay", "--all", "--requested-by", "sre:kim", "--reason", "drain")
	if rc != 0 || !strings.Contains(out, fmt.Sprintf("%d replayed or resolved, 0 failed", len(accounts))) || strings.Count(out, "resolved") < len(accounts) {
		t.Fatalf("drain: exit %d\n%s", rc, out)
	}
	if _, out, _ = p.erasectl(t, "dead-letters", "list", "-o", "json"); !strings.Contains(out, `"total": 0`) {
		t.Errorf("dead letters after the drain: %s", out)
	}
	// Nothing left to replay in bulk.
	if rc, out, _ = p.erasectl(t, "replay", "--status", "failed", "--dry-run"); rc != 0 || !strings.Contains(out, "0 jobs would be replayed") {
		t.Errorf("second dry run: exit %d %s", rc, out)
	}
}
