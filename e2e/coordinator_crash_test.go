package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var (
	coordOnce sync.Once
	coordBin  string
	coordErr  error
	coordOut  []byte
)

func buildCoordinator(t *testing.T) string {
	t.Helper()
	coordOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lethe-e2e-coord-")
		if err != nil {
			coordErr = err
			return
		}
		coordBin = filepath.Join(dir, "coordinator")
		coordOut, coordErr = exec.Command("go", "build", "-o", coordBin, "github.com/lethe-privacy/lethe/services/coordinator/cmd/coordinator").CombinedOutput()
	})
	if coordErr != nil {
		t.Fatalf("build coordinator: %v\n%s", coordErr, coordOut)
	}
	return coordBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// countingPurger counts purges per job.
type countingPurger struct {
	worker.Purger
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingPurger) Purge(ctx context.Context, t worker.Task) (worker.Result, error) {
	c.mu.Lock()
	c.calls[t.JobID]++
	c.mu.Unlock()
	return worker.Result{ItemsPurged: 1}, nil
}

func TestCoordinatorKilledDuringFanOutDispatchesEveryTaskOnce(t *testing.T) {
	t.Parallel()
	bin := buildCoordinator(t)
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	rdb, prefix := testenv.Redis(t)
	addr := freeAddr(t)
	env := append(os.Environ(),
		"LETHE_NATS_URL="+srv.URL,
		fmt.Sprintf("LETHE_REDIS_URL=redis://%s/%d", rdb.Options().Addr, rdb.Options().DB),
		"LETHE_REDIS_PREFIX="+prefix,
		"LETHE_HTTP_ADDR="+addr,
		"LETHE_LOG_LEVEL=warn",
		"LETHE_CATEGORIES=contacts",
		"LETHE_CERTIFICATE_KEY="+filepath.Join(t.TempDir(), "certificate.pem"),
	)
	env = append(env, coordinatorTestEnv(t)...)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = env
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		deadline := time.Now().Add(20 * time.Second)
		for {
			if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("coordinator not ready")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	p := &pipeline{nats: srv, js: js, api: "http://" + addr}
	first := start()

	const n = 150
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: fmt.Sprintf("acc-k%03d", i), RequestedBy: "privacy:ops", Reason: "load"})
			if code == http.StatusAccepted {
				accepted.Add(1)
			} else {
				t.Errorf("POST %d: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
	_ = first.Process.Kill() // kill -9 while the dispatcher fans out
	_ = first.Wait()
	st, _ := js.Stream(context.Background(), erasurev1.TasksStream)
	info, _ := st.Info(context.Background())
	t.Logf("killed the coordinator with %d of %d tasks published", info.State.Msgs, accepted.Load())

	start()
	purger := &countingPurger{calls: map[string]int{}}
	var cfg worker.ServiceConfig
	cfg.NATSURL, cfg.HTTPAddr = srv.URL, "127.0.0.1:0"
	cfg.Runtime = worker.Config{Category: erasurev1.CategoryContacts, Concurrency: 8}
	cfg.Topology.Categories = []string{erasurev1.CategoryContacts}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Serve(ctx, cfg, purger, nil, zapNop()) }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := p.call(t, "GET", "/v1/erasures?status=completed&page_size=500", nil)
		var l apiv1.JobList
		if code == 200 && jsonDecode(body, &l) == nil && len(l.Jobs) == int(accepted.Load()) {
			for _, j := range l.Jobs {
				if j.Tasks[0].Attempts != 1 {
					t.Errorf("job %s took %d attempts", j.ID, j.Tasks[0].Attempts)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs completed after the restart", len(l.Jobs), accepted.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	purger.mu.Lock()
	defer purger.mu.Unlock()
	if len(purger.calls) != int(accepted.Load()) {
		t.Errorf("%d jobs purged, want %d", len(purger.calls), accepted.Load())
	}
	for id, c := range purger.calls {
		if c != 1 {
			t.Errorf("job %s purged %d times, want once", id, c)
		}
	}
}
