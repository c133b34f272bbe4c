package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lethe-privacy/lethe/lib/testenv"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

// lostJobs lists the accounts whose accepted job the coordinator no
// longer lists: what the asynchronous replication lost when the primary
// changed.
func lostJobs(t *testing.T, api string, accepted map[string]string) []string {
	t.Helper()
	var all []apiv1.Job
	poll(t, 30*time.Second, "the API lists the jobs", func() bool {
		var ok bool
		all, ok = listJobs(api, "")
		return ok
	})
	known := make(map[string]bool, len(all))
	for _, j := range all {
		known[j.ID] = true
	}
	var lost []string
	for account, id := range accepted {
		if !known[id] {
			lost = append(lost, account)
		}
	}
	return lost
}

// The Redis acceptance test: the coordinator finds Redis through
// three sentinels (lib/redisconn, go-redis's failover client). Under a
// steady stream of erasures the primary is failed over twice — first by
// SENTINEL FAILOVER (the old primary takes writes until the coordinator
// stops using it, and those writes are lost), then by killing the new
// primary with SIGKILL. The pipeline carries on by itself each time.
// Afterwards the runbook's step, a rebuild from the lifecycle stream,
// restores every job the promoted replicas never received, and
// reconciliation (on its interval) publishes again any task whose
// dispatch or report was lost. Every accepted job completes, none twice.
func TestRedisSentinelFailoverUnderLoadEveryJobCompletes(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rs := startRedisSentinel(t)
	srv := testenv.StartNATS(t)
	log := quietLog(t)
	categories := []string{erasurev1.CategoryContacts, erasurev1.CategoryLogs}
	cfg := app.Config{
		NATSURL: srv.URL,
		// With sentinels the URL gives only the database (and credentials).
		RedisURL: "redis://" + rs.primary.addr + "/0", RedisSentinels: rs.sentinelAddrs(), RedisMasterName: sentinelMaster,
		RedisPrefix: "lethe-sentinel-test:", Categories: categories, Topology: testTopology(),
		ReconcileInterval: time.Second, RedispatchAfter: 5 * time.Second, UnknownJobRetryDelay: 500 * time.Millisecond,
	}
	cfg.Topology.Categories = categories
	// Production's timings scaled down, keeping their order: a task is
	// published again (15 min) only after the streams forgot its report's
	// id (10 min), or the report of the purge run again would be dropped
	// as a duplicate of the one Redis lost.
	cfg.Topology.DuplicateWindow = 2 * time.Second
	api := runCoordinator(t, cfg, log.Named("coordinator"))
	var stores []*ledgerStore
	for _, cat := range categories {
		s := newLedgerStore(cat, 5*time.Millisecond)
		stores = append(stores, s)
		runWorker(t, srv.URL, s, 1, log)
	}
	t.Logf("%s: Redis primary %s, replicas %s and %s, sentinels %s; coordinator and workers running", since(start),
		rs.primary.addr, rs.replicas[0].addr, rs.replicas[1].addr, strings.Join(rs.sentinelAddrs(), ","))

	load := startLoad(t, api, "acc-rs-", 20*time.Millisecond, 5000, stores...)
	poll(t, 60*time.Second, "the first erasures complete", func() bool { return completedCount(api) >= 30 })

	// keepsGoing waits until the coordinator writes to the new primary (a
	// job accepted now is there: the old primary may take writes for a
	// while after a SENTINEL FAILOVER, until the coordinator hears of the
	// new one), then until the pipeline accepted and completed more
	// erasures, with nobody's help.
	keepsGoing := func(what string, primary *redisProc, a0, c0 int) {
		t.Helper()
		rdb := redis.NewClient(&redis.Options{Addr: primary.addr})
		defer rdb.Close()
		promoted, _ := load.counts()
		poll(t, 60*time.Second, "the coordinator writes to the new primary "+primary.addr, func() bool {
			if n, _ := load.counts(); n <= promoted {
				return false
			}
			n, err := rdb.Exists(context.Background(), cfg.RedisPrefix+"job:"+load.lastJob()).Result()
			return err == nil && n == 1
		})
		t.Logf("%s: the coordinator writes to %s", since(start), primary.addr)
		a1, _ := load.counts()
		var a, c int
		poll(t, 60*time.Second, "erasures accepted and completed "+what, func() bool {
			a, _ = load.counts()
			c = completedCount(api)
			return a >= a1+30 && c >= c0+30
		})
		t.Logf("%s: %s, by itself: %d more accepted, %d more completed", since(start), what, a-a0, c-c0)
	}

	// 1. A failover the sentinels are told to make.
	accepted, _ := load.counts()
	completed := completedCount(api)
	sc := redis.NewSentinelClient(&redis.Options{Addr: rs.sentinels[0].addr})
	defer sc.Close()
	if err := sc.Failover(context.Background(), sentinelMaster).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	t.Logf("%s: SENTINEL FAILOVER from primary %s with %d erasures accepted and %d completed", since(start), rs.primary.addr, accepted, completed)
	var primary *redisProc
	poll(t, 60*time.Second, "the sentinels agree on a new primary", func() bool {
		addr := rs.masterAddr()
		return addr != "" && addr != rs.primary.addr
	})
	primary = rs.byAddr(t, rs.masterAddr())
	t.Logf("%s: %s (%s) is primary", since(start), primary.addr, primary.name)
	keepsGoing("after the first failover", primary, accepted, completed)
	// What the first failover lost so far. The old primary is still up
	// and may yet take writes (until Sentinel demotes it, 10 s or more
	// after the failover), so the count at the end can be larger.
	lostFirst := len(lostJobs(t, api, load.jobs()))

	// 2. The new primary dies. The other replica follows it already
	// (Sentinel pointed it there), so there is one to promote.
	for _, r := range rs.replicas {
		if r != primary {
			rs.waitReplicating(t, r, primary)
		}
	}
	accepted, _ = load.counts()
	completed = completedCount(api)
	primary.kill()
	t.Logf("%s: kill -9 primary %s with %d erasures accepted and %d completed", since(start), primary.addr, accepted, completed)
	// A sentinel waits twice its failover timeout (3 s) after a failover
	// it took part in before it starts another.
	poll(t, 60*time.Second, "the sentinels agree on another primary", func() bool {
		addr := rs.masterAddr()
		return addr != "" && addr != primary.addr
	})
	next := rs.byAddr(t, rs.masterAddr())
	t.Logf("%s: %s (%s) is primary", since(start), next.addr, next.name)
	keepsGoing("after the primary was killed", next, accepted, completed)
	load.halt()
	lost := lostJobs(t, api, load.jobs())

	// The runbook's step after a Redis failover: rebuild from the lifecycle
	// stream. It restores the jobs the promoted replica never received and
	// keeps every job the coordinator changed since.
	req, err := http.NewRequest(http.MethodPost, api+"/v1/admin/rebuild", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	addAuth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sum apiv1.RebuildSummary
	err = json.NewDecoder(resp.Body).Decode(&sum)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("rebuild: %s, %v", resp.Status, err)
	}
	t.Logf("%s: rebuilt from %d lifecycle events: %d jobs, %d written, %d kept (newer in Redis), problems %+v; accepted jobs Redis had lost: %d after the first failover, %d in all before the rebuild",
		since(start), sum.Events, sum.Jobs, sum.Written, sum.KeptNewer, sum.Problems, lostFirst, len(lost))
	if left := lostJobs(t, api, load.jobs()); len(left) != 0 {
		t.Errorf("%d accepted jobs still missing after the rebuild: %v", len(left), left)
	}

	o := waitAllCompleted(t, api, load, 90*time.Second, true, stores...)
	_, redispatched := metric(t, api, "lethe_reconcile_actions_total")
	_, retried := load.counts()
	t.Logf("%s: %s; reconciliation repaired %.0f tasks; %d requests answered with an error and sent again", since(start), o, redispatched, retried)
}
