package e2e

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

// TestAuditTrailOfAnErasureVerifies walks the auditor's flow on a running
// coordinator with an audit key: two accounts are erased, then the trail
// is checked through the coordinator and, with the key file, over NATS.
func TestAuditTrailOfAnErasureVerifies(t *testing.T) {
	t.Parallel()
	keyPath := filepath.Join(t.TempDir(), "keys", "audit.key")
	p := startPipelineWith(t, func(c *app.Config) {
		c.AuditKey = keyPath
		c.AuditKeyCreate = true
	})
	p.startWorker(t, p.contacts)
	p.seed(t, 50, "acc-audit-1", "acc-audit-2")
	for _, acct := range []string{"acc-audit-1", "acc-audit-2"} {
		if rc, _, stderr := p.erasectl(t, "request", acct, "--reason", "DSR 9002"); rc != 0 {
			t.Fatalf("request: exit %d %s", rc, stderr)
		}
	}
	for _, acct := range []string{"acc-audit-1", "acc-audit-2"} {
		if job := p.waitJob(t, acct, 30*time.Second); job.Status != apiv1.JobCompleted {
			t.Fatalf("job of %s: %s", acct, job.Status)
		}
	}

	// Every event of the two jobs is in the trail (at least created,
	// dispatched, succeeded, completed each).
	okLine := regexp.MustCompile(`OK: (\d+) entries checked, (\d+) verified`)
	rc, out, stderr := p.erasectl(t, "audit", "verify")
	m := okLine.FindStringSubmatch(out)
	if rc != 0 || m == nil || m[1] != m[2] {
		t.Fatalf("through the coordinator: exit %d\n%s\n%s", rc, out, stderr)
	}
	if n, _ := strconv.Atoi(m[1]); n < 8 {
		t.Errorf("%d entries checked, want at least 8", n)
	}
	// Events of the jobs' ends may land between the two checks.
	rc, out, stderr = p.erasectl(t, "audit", "verify", "--key", keyPath, "--api-url", "http://127.0.0.1:1")
	if m2 := okLine.FindStringSubmatch(out); rc != 0 || m2 == nil || m2[1] != m2[2] || !strings.Contains(out, "(held)") {
		t.Fatalf("over NATS with the key file: exit %d\n%s\n%s", rc, out, stderr)
	}
}
