package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var (
	buildOnce sync.Once
	workerBin string
	buildErr  error
	buildOut  []byte
)

// buildWorker builds the contacts-worker command once per test binary.
func buildWorker(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lethe-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		workerBin = filepath.Join(dir, "contacts-worker")
		cmd := exec.Command("go", "build", "-o", workerBin, "github.com/lethe-privacy/lethe/services/contacts/cmd/contacts-worker")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build contacts-worker: %v\n%s", buildErr, buildOut)
	}
	return workerBin
}

func (p *pipeline) startWorkerProcess(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"LETHE_NATS_URL="+p.nats.URL,
		"LETHE_CONTACTS_DSN="+p.dsn,
		"LETHE_HTTP_ADDR=127.0.0.1:0",
		"LETHE_LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start contacts-worker: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestWorkerProcessKilledMidPurgeIsRedeliveredAndCompletes(t *testing.T) {
	t.Parallel()
	bin := buildWorker(t)
	p := startPipeline(t)
	p.seed(t, 20000, "acc-big")
	p.seed(t, 500, "acc-other")
	before, other := p.footprint(t, "acc-big"), p.footprint(t, "acc-other")

	// Tiny batches make the purge take long enough to be killed half-way.
	first := p.startWorkerProcess(t, bin, "-batch-size", "20")
	code, body := p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-big", RequestedBy: "privacy:ops", Reason: "crash test"})
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.footprint(t, "acc-big") == before {
		if time.Now().After(deadline) {
			t.Fatal("the first worker never started purging")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := p.footprint(t, "acc-big")
	if atKill == 0 {
		t.Fatal("the purge finished before the kill; the test did not kill it mid-task")
	}
	t.Logf("killed the worker with %d of %d items left", atKill, before)

	p.startWorkerProcess(t, bin)
	j := p.waitJob(t, "acc-big", 60*time.Second)
	if j.Status != apiv1.JobCompleted || j.Tasks[0].Attempts != 2 {
		t.Fatalf("job = %s after %d attempts, want completed on the second delivery", j.Status, j.Tasks[0].Attempts)
	}
	if left := p.footprint(t, "acc-big"); left != 0 {
		t.Errorf("%d items left after the redelivered purge", left)
	}
	// The batch running at the kill may still commit on the server after
	// the client died (PostgreSQL notices the lost client only when it
	// answers), so the second run finds up to one batch less than was
	// counted right after the kill: 20 contacts with their properties (2
	// each) and memberships (at most one per list, 3), 120 rows at most.
	const oneBatch = 20 * (1 + 2 + 3)
	if got := j.Tasks[0].ItemsPurged; got > atKill || atKill-got > oneBatch {
		t.Errorf("second run reports %d items, want the %d left at the kill (less at most one batch, %d rows)", got, atKill, oneBatch)
	}
	if n := p.footprint(t, "acc-other"); n != other {
		t.Errorf("the other account has %d items, want %d", n, other)
	}
}
