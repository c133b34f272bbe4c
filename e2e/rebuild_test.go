package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/erasectl/cli"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

// heldPurger holds every purge at a gate while hold is set, so that tasks
// are in flight at a moment the test chooses.
type heldPurger struct {
	worker.Purger
	hold     atomic.Bool
	gate     chan struct{}
	started  atomic.Int32
	finished atomic.Int32
}

func (h *heldPurger) Purge(ctx context.Context, t worker.Task) (worker.Result, error) {
	if h.hold.Load() {
		h.started.Add(1)
		select {
		case <-h.gate:
		case <-ctx.Done():
			return worker.Result{}, ctx.Err()
		}
	}
	res, err := h.Purger.Purge(ctx, t)
	if h.hold.Load() {
		h.finished.Add(1)
	}
	return res, err
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// The acceptance test: Redis is flushed while tasks are in flight,
// the SRE rebuilds it from the lifecycle stream with erasectl, and every
// job still completes with the right counts — including those whose
// reports arrived while Redis was empty.
func TestRedisFlushedMidRunEveryJobStillCompletes(t *testing.T) {
	t.Parallel()
	var cfg app.Config
	p := startPipelineWith(t, func(c *app.Config) {
		c.UnknownJobRetryDelay = 500 * time.Millisecond
		cfg = *c
	})
	ropts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	t.Cleanup(func() { _ = rdb.Close() })
	purger := &heldPurger{Purger: p.contacts, gate: make(chan struct{})}
	p.startWorker(t, purger)

	var done, inFlight []string
	for i := range 4 {
		done = append(done, fmt.Sprintf("acc-rb-done-%d", i))
	}
	for i := range 8 {
		inFlight = append(inFlight, fmt.Sprintf("acc-rb-flight-%d", i))
	}
	all := append(append([]string{}, done...), inFlight...)
	p.seed(t, 300, all...)
	want := map[string]int64{}
	for _, a := range all {
		want[a] = p.footprint(t, a)
	}
	request := func(acct string) string {
		code, body := p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: acct, RequestedBy: "privacy:ops", Reason: "rebuild drill"})
		var j apiv1.Job
		if err := json.Unmarshal(body, &j); err != nil || code != http.StatusAccepted {
			t.Fatalf("POST for %s = %d %s", acct, code, body)
		}
		return j.ID
	}

	// Some jobs finish before the loss.
	for _, a := range done {
		request(a)
	}
	for _, a := range done {
		if j := p.waitJob(t, a, 30*time.Second); j.Status != apiv1.JobCompleted {
			t.Fatalf("%s: job %s before the loss", a, j.Status)
		}
	}

	// The others are dispatched, four of them in the worker's hands.
	purger.hold.Store(true)
	ids := map[string]string{}
	for _, a := range inFlight {
		ids[a] = request(a)
	}
	eventually(t, 30*time.Second, "four purges under way and every task dispatched", func() bool {
		if purger.started.Load() < 4 {
			return false
		}
		for _, id := range ids {
			_, body := p.call(t, "GET", "/v1/erasures/"+id, nil)
			var j apiv1.Job
			if json.Unmarshal(body, &j) != nil || len(j.Tasks) == 0 || j.Tasks[0].Status != apiv1.TaskDispatched {
				return false
			}
		}
		return true
	})

	// Redis loses everything under the coordinator's prefix.
	flushPrefix(t, rdb, cfg.RedisPrefix)
	if code, _ := p.call(t, "GET", "/v1/erasures/"+ids[inFlight[0]], nil); code != http.StatusNotFound {
		t.Fatalf("GET after the flush = %d, want 404", code)
	}

	// The purges finish; their reports find no job and are retried later.
	close(purger.gate)
	eventually(t, 30*time.Second, "every held purge reported", func() bool { return purger.finished.Load() == int32(len(inFlight)) })
	eventually(t, 30*time.Second, "reports delivered and put back while Redis is empty", func() bool {
		c, err := p.js.Consumer(context.Background(), erasurev1.ReportsStream, erasurev1.ReportsConsumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.NumPending == 0 && info.NumRedelivered > 0
	})
	if code, _ := p.call(t, "GET", "/v1/erasures/"+ids[inFlight[0]], nil); code != http.StatusNotFound {
		t.Fatalf("a report was applied to an empty Redis (GET = %d)", code)
	}

	// The SRE rebuilds.
	var stdout, stderr bytes.Buffer
	env := map[string]string{"LETHE_API_URL": p.api, "LETHE_API_TOKEN": tokenOf(srePrincipal)}
	rc := cli.Main(context.Background(), []string{"admin", "rebuild", "-o", "json"}, func(k string) string { return env[k] }, &stdout, &stderr)
	var sum apiv1.RebuildSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); rc != cli.ExitOK || err != nil {
		t.Fatalf("erasectl admin rebuild: exit %d, %v\n%s\n%s", rc, err, stdout.String(), stderr.String())
	}
	t.Logf("rebuild: %d events into %d jobs in %.3fs", sum.Events, sum.Jobs, sum.DurationSeconds)
	if sum.Jobs != len(all) || sum.Written+sum.KeptNewer != len(all) || sum.Unapplied != 0 || sum.Mismatches != 0 || sum.Undecodable != 0 {
		t.Errorf("summary = %+v, want %d jobs and nothing unapplied", sum, len(all))
	}

	// Every job completes with what was seeded, and the data is gone.
	for _, a := range all {
		j := p.waitJob(t, a, 30*time.Second)
		if j.Status != apiv1.JobCompleted || len(j.Tasks) != 1 || j.Tasks[0].ItemsPurged != want[a] {
			t.Errorf("%s: job %s, tasks %+v; want completed with %d items purged", a, j.Status, j.Tasks, want[a])
		}
		if n := p.footprint(t, a); n != 0 {
			t.Errorf("%s: %d items left", a, n)
		}
		if js := p.jobsOf(t, a); len(js) != 1 {
			t.Errorf("%s has %d jobs after the rebuild, want 1", a, len(js))
		}
	}
	_, rejected := metric(t, p.api, "lethe_reports_rejected_total")
	if rejected != 0 {
		t.Errorf("%v reports were given up", rejected)
	}
}

// flushPrefix deletes every key under prefix, as a Redis that lost its
// data (FLUSHALL would hit the other tests sharing the server).
func flushPrefix(t *testing.T, rdb *redis.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("nothing to flush under the prefix")
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
}
