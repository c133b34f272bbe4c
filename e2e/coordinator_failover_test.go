package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// TestTwoCoordinatorsOneKilledMidLoad runs two coordinator processes on
// one NATS and one Redis: both serve the API and the report intake, one
// schedules under the lease. Under a steady stream of erasures the leader
// is killed with SIGKILL; the other takes the lease over within its TTL
// and every accepted erasure completes, each purged exactly once.
func TestTwoCoordinatorsOneKilledMidLoad(t *testing.T) {
	t.Parallel()
	bin := buildCoordinator(t)
	srv := testenv.StartNATS(t)
	rdb, prefix := testenv.Redis(t)
	const leaseTTL = 2 * time.Second
	keyDir := t.TempDir()
	type coord struct {
		name, addr string
		cmd        *exec.Cmd
	}
	start := func(name string) *coord {
		c := &coord{name: name, addr: freeAddr(t)}
		c.cmd = exec.Command(bin, "-scheduler-lease-ttl", leaseTTL.String())
		c.cmd.Env = append(os.Environ(),
			"LETHE_NATS_URL="+srv.URL,
			fmt.Sprintf("LETHE_REDIS_URL=redis://%s/%d", rdb.Options().Addr, rdb.Options().DB),
			"LETHE_REDIS_PREFIX="+prefix,
			"LETHE_HTTP_ADDR="+c.addr,
			"LETHE_LOG_LEVEL=warn",
			"LETHE_CATEGORIES=contacts",
			// Both replicas sign with the same keys, as in production.
			"LETHE_CERTIFICATE_KEY="+filepath.Join(keyDir, "certificate.pem"),
			"LETHE_AUDIT_KEY="+filepath.Join(keyDir, "audit.key"),
		)
		c.cmd.Env = append(c.cmd.Env, coordinatorTestEnv(t)...)
		c.cmd.Stderr = os.Stderr
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
		coordinatorReady(t, c.addr)
		return c
	}
	a := start("a")
	b := start("b")

	purger := &countingPurger{calls: map[string]int{}}
	var cfg worker.ServiceConfig
	cfg.NATSURL, cfg.HTTPAddr = srv.URL, "127.0.0.1:0"
	cfg.Runtime = worker.Config{Category: erasurev1.CategoryContacts, Concurrency: 8}
	cfg.Topology.Categories = []string{erasurev1.CategoryContacts}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Serve(ctx, cfg, purger, nil, zapNop()) }()
	t.Cleanup(func() { cancel(); <-done })

	leader, follower := a, b
	eventually(t, 20*time.Second, "a scheduling leader", func() bool {
		switch {
		case schedulerLeader(a.addr):
			leader, follower = a, b
			return true
		case schedulerLeader(b.addr):
			leader, follower = b, a
			return true
		}
		return false
	})

	// A steady stream: one erasure every 10 ms, to both replicas in turn
	// (the dead one's requests fail and are not counted as accepted).
	var accepted atomic.Int32
	var acceptedMu sync.Mutex
	acceptedAccounts := map[string]bool{}
	var stopLoad atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stopLoad.Load() && i < 400; i++ {
			target := []*coord{a, b}[i%2]
			acct := fmt.Sprintf("acc-f%03d", i)
			if postErasure(t, target.addr, acct) {
				accepted.Add(1)
				acceptedMu.Lock()
				acceptedAccounts[acct] = true
				acceptedMu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	killedAt := time.Now()
	_ = leader.cmd.Process.Kill()
	_ = leader.cmd.Wait()
	t.Logf("killed the scheduling coordinator %s (SIGKILL) with %d erasures accepted", leader.name, accepted.Load())
	eventually(t, 30*time.Second, "the other coordinator to take the lease over", func() bool { return schedulerLeader(follower.addr) })
	took := time.Since(killedAt)
	t.Logf("coordinator %s schedules %.1fs after the kill (lease TTL %s)", follower.name, took.Seconds(), leaseTTL)
	time.Sleep(1500 * time.Millisecond)
	stopLoad.Store(true)
	wg.Wait()

	// A request the killed coordinator had stored but not yet answered
	// makes a job that was never "accepted": it must complete too, and is
	// counted apart.
	want := int(accepted.Load())
	var completed map[string]string
	for deadline := time.Now().Add(90 * time.Second); ; {
		completed = completedJobs(t, follower.addr)
		var missing []string
		for acct := range acceptedAccounts {
			if _, ok := completed[acct]; !ok {
				missing = append(missing, acct)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			// Say where each missing one stands, for the next reader.
			for _, acct := range missing[:min(len(missing), 5)] {
				req, _ := http.NewRequest(http.MethodGet, "http://"+follower.addr+"/v1/erasures?account_id="+acct, nil)
				addAuth(req)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					var l apiv1.JobList
					_ = json.NewDecoder(resp.Body).Decode(&l)
					resp.Body.Close()
					t.Logf("account %s: %+v", acct, l.Jobs)
				}
			}
			t.Fatalf("%d of %d accepted erasures not completed after 90 s: %v", len(missing), want, missing[:min(len(missing), 20)])
		}
		time.Sleep(100 * time.Millisecond)
	}
	purger.mu.Lock()
	defer purger.mu.Unlock()
	twice := 0
	for _, c := range purger.calls {
		if c > 1 {
			twice++
		}
	}
	unanswered := len(completed) - want
	t.Logf("accepted %d, completed %d (%d of them requests the killed coordinator stored but did not answer), purged %d jobs, %d of them more than once",
		want, len(completed), unanswered, len(purger.calls), twice)
	for acct := range acceptedAccounts {
		if purger.calls[completed[acct]] != 1 {
			t.Errorf("account %s's job %s purged %d times, want once", acct, completed[acct], purger.calls[completed[acct]])
		}
	}
	if twice != 0 {
		t.Fatalf("%d jobs purged more than once, want 0", twice)
	}
}

func coordinatorReady(t *testing.T, addr string) {
	t.Helper()
	eventually(t, 30*time.Second, "coordinator "+addr+" ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// schedulerLeader reads lethe_scheduler_leader off the coordinator's
// /metrics.
func schedulerLeader(addr string) bool {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	addAuth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "lethe_scheduler_leader ") {
			return strings.TrimSpace(strings.TrimPrefix(sc.Text(), "lethe_scheduler_leader ")) == "1"
		}
	}
	return false
}

// postErasure asks addr for an erasure; it reports whether it was
// accepted, and tolerates a coordinator that is gone.
func postErasure(t *testing.T, addr, account string) bool {
	t.Helper()
	body, _ := json.Marshal(apiv1.CreateErasureRequest{AccountID: account, RequestedBy: "privacy:ops", Reason: "failover load"})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/erasures", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	addAuth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted
}

// completedJobs maps the account of every completed job to its job id.
func completedJobs(t *testing.T, addr string) map[string]string {
	t.Helper()
	out, token := map[string]string{}, ""
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/erasures?status=completed&page_size=500&page_token="+token, nil)
		addAuth(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return out
		}
		var l apiv1.JobList
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			return out
		}
		for _, j := range l.Jobs {
			out[j.AccountID] = j.ID
		}
		if l.NextPageToken == "" {
			return out
		}
		token = l.NextPageToken
	}
}
