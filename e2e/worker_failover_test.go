package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// waitReady waits until a service's /readyz answers 200.
func waitReady(t *testing.T, base string, within time.Duration) {
	t.Helper()
	eventually(t, within, base+" ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Two replicas of the contacts worker (real processes, real PostgreSQL)
// share the category's durable consumer; one is killed with SIGKILL while
// it purges. The other finishes its tasks once their ack wait runs out,
// and every job completes with its account's data gone, once.
func TestWorkerReplicaKilledMidTaskTheOtherFinishes(t *testing.T) {
	t.Parallel()
	start := time.Now()
	bin := buildWorker(t)
	p := startPipeline(t)
	var accounts []string
	for i := range 24 {
		accounts = append(accounts, fmt.Sprintf("acc-wr%02d", i))
	}
	p.seed(t, 400, accounts...)
	before := map[string]int64{}
	var total int64
	for _, a := range accounts {
		before[a] = p.footprint(t, a)
		total += before[a]
	}

	// Small batches make each purge take long enough to be killed inside.
	victimAddr, otherAddr := freeAddr(t), freeAddr(t)
	victim := p.startWorkerProcess(t, bin, "-batch-size", "20", "-concurrency", "2", "-http-addr", victimAddr)
	p.startWorkerProcess(t, bin, "-batch-size", "20", "-concurrency", "2", "-http-addr", otherAddr)
	waitReady(t, "http://"+victimAddr, 30*time.Second)
	waitReady(t, "http://"+otherAddr, 30*time.Second)
	t.Logf("%s: two contacts-worker replicas running; %d accounts seeded, %d items", since(start), len(accounts), total)

	for _, a := range accounts {
		code, body := p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: a, RequestedBy: "privacy:ops", Reason: "replica failover drill"})
		if code != http.StatusAccepted {
			t.Fatalf("POST %s = %d %s", a, code, body)
		}
	}
	// The victim has purged at least once and work is still queued: it
	// holds tasks (it fetches as many as it runs at once) whenever there
	// are some.
	var running int
	eventually(t, 60*time.Second, "the victim has finished a task and jobs are still running", func() bool {
		_, done := metric(t, "http://"+victimAddr, "lethe_worker_tasks_total")
		js, ok := listJobs(p.api, apiv1.JobRunning)
		running = len(js)
		return ok && done >= 1 && running >= 8
	})
	_, victimDone := metric(t, "http://"+victimAddr, "lethe_worker_tasks_total")
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = victim.Wait()
	t.Logf("%s: kill -9 one contacts-worker replica after it handled %.0f tasks, with %d of %d jobs running", since(start), victimDone, running, len(accounts))

	poll(t, 90*time.Second, "every job finished", func() bool {
		js, ok := listJobs(p.api, apiv1.JobRunning)
		return ok && len(js) == 0
	})
	all, ok := listJobs(p.api, "")
	if !ok {
		t.Fatal("list jobs: the API did not answer")
	}
	completed, redelivered, perAccount := 0, 0, map[string]int{}
	var purged int64
	for _, j := range all {
		perAccount[j.AccountID]++
		if j.Status == apiv1.JobCompleted {
			completed++
		} else {
			t.Errorf("job %s of %s: %s, want completed", j.ID, j.AccountID, j.Status)
		}
		task := j.Tasks[0]
		purged += task.ItemsPurged
		if task.Attempts > 1 {
			redelivered++
		}
		// A purge cut short and redone reports what was left; never more
		// than the account had.
		if task.ItemsPurged > before[j.AccountID] {
			t.Errorf("job %s reports %d items purged, the account had %d", j.ID, task.ItemsPurged, before[j.AccountID])
		}
	}
	duplicated := 0
	for _, a := range accounts {
		if n := p.footprint(t, a); n != 0 {
			t.Errorf("account %s has %d items left", a, n)
		}
		if perAccount[a] != 1 {
			duplicated++
			t.Errorf("account %s has %d jobs, want one", a, perAccount[a])
		}
	}
	if redelivered == 0 {
		t.Error("no task was delivered twice: the victim held no task when it was killed, so the test did not test a kill mid-task")
	}
	_, otherDone := metric(t, "http://"+otherAddr, "lethe_worker_tasks_total")
	t.Logf("%s: accepted %d, completed %d, duplicated erasures %d; %d tasks redelivered to the surviving replica after the kill, which handled %.0f tasks in all; items counted %d of %d seeded (what the killed replica removed is not counted)",
		since(start), len(accounts), completed, duplicated, redelivered, otherDone, purged, total)
}
