package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

// This file holds what the failover tests share: an in-memory store that
// remembers every purge, a steady stream of erasure requests, and counts
// of what became of them. The tests are in cluster_failover_test.go,
// worker_failover_test.go and sentinel_failover_test.go.

// ledgerStore stands in for a category's store: every account starts with
// one item, a purge removes what is left (nothing the second time, as a
// real store's idempotent purge would) and every call is remembered, so
// that a test can tell a task purged twice from one purged once.
type ledgerStore struct {
	category string
	// work is how long a purge takes: long enough that tasks are in
	// flight when a node dies.
	work  time.Duration
	mu    sync.Mutex
	gone  map[string]bool          // accounts already purged
	calls map[string][]worker.Task // job id → every purge of its task
}

var _ worker.Purger = (*ledgerStore)(nil)

func newLedgerStore(category string, work time.Duration) *ledgerStore {
	return &ledgerStore{category: category, work: work, gone: map[string]bool{}, calls: map[string][]worker.Task{}}
}

func (s *ledgerStore) Purge(ctx context.Context, t worker.Task) (worker.Result, error) {
	select {
	case <-time.After(s.work):
	case <-ctx.Done():
		return worker.Result{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[t.JobID] = append(s.calls[t.JobID], t)
	if s.gone[t.AccountID] {
		return worker.Result{}, nil
	}
	s.gone[t.AccountID] = true
	return worker.Result{ItemsPurged: 1}, nil
}

func (s *ledgerStore) Footprint(_ context.Context, ids []string) ([]worker.Footprint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]worker.Footprint, len(ids))
	for i, id := range ids {
		out[i] = worker.Footprint{AccountID: id, Items: 1}
		if s.gone[id] {
			out[i].Items = 0
		}
	}
	return out, nil
}

// purgedMoreThanOnce lists the jobs whose task this store purged more
// than once.
func (s *ledgerStore) purgedMoreThanOnce() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, c := range s.calls {
		if len(c) > 1 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// purges counts the purge calls.
func (s *ledgerStore) purges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += len(c)
	}
	return n
}

// runCoordinator runs the coordinator in-process with cfg until the test
// ends and returns its API's base URL.
func runCoordinator(t *testing.T, cfg app.Config, log *zap.Logger) string {
	t.Helper()
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	withAPITokens(t, &cfg)
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, log, listening) }()
	var api string
	select {
	case addr := <-listening:
		api = "http://" + addr
	case err := <-done:
		cancel()
		t.Fatalf("coordinator did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("coordinator did not start within 60s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	return api
}

// runWorker runs one category's worker service in-process until the test
// ends.
func runWorker(t *testing.T, natsURL string, store *ledgerStore, replicas int, log *zap.Logger) {
	t.Helper()
	var cfg worker.ServiceConfig
	cfg.NATSURL, cfg.HTTPAddr = natsURL, "127.0.0.1:0"
	category := store.category
	cfg.Runtime = worker.Config{Category: category, Concurrency: 4, DrainTimeout: 10 * time.Second,
		Retry: worker.RetryPolicy{InProcessAttempts: 2, RedeliveryInitial: 200 * time.Millisecond, RedeliveryMultiplier: 2, RedeliveryMax: 2 * time.Second}}
	cfg.Topology = testTopology()
	cfg.Topology.Categories = []string{category}
	cfg.Topology.Replicas = replicas
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Serve(ctx, cfg, store, nil, log.Named(category)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s worker: %v", category, err)
		}
	})
}

// erasureLoad sends erasure requests for new accounts at a steady pace
// until it is stopped, as the privacy team's tooling would. It waits while
// more than maxBacklog accepted erasures are not purged yet, so that the
// work left at the end stays small however slow the machine is. A request
// that fails (the coordinator could not store or record the job while
// Redis or the broker failed over) is sent again for the same account, as
// any client does: a repeated request returns the account's job, never a
// second one. Accepted means answered 200 or 202.
type erasureLoad struct {
	api, prefix string
	every       time.Duration
	limit       int // requests at most: the loop ends by itself
	client      *http.Client
	stores      []*ledgerStore

	mu       sync.Mutex
	accepted map[string]string // account → job id
	last     string            // the job id last accepted
	retried  int               // answers other than 2xx, and transport errors
	lastErr  string

	stop chan struct{}
	done chan struct{}
}

// maxBacklog bounds the accepted erasures not purged yet (see erasureLoad).
const maxBacklog = 50

func startLoad(t *testing.T, api, prefix string, every time.Duration, limit int, stores ...*ledgerStore) *erasureLoad {
	t.Helper()
	l := &erasureLoad{api: api, prefix: prefix, every: every, limit: limit, client: &http.Client{Timeout: 15 * time.Second},
		stores: stores, accepted: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	t.Cleanup(l.halt)
	return l
}

func (l *erasureLoad) run() {
	defer close(l.done)
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for i := range l.limit {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		for l.backlog() > maxBacklog {
			select {
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		account := fmt.Sprintf("%s%05d", l.prefix, i)
		for !l.send(account) {
			select {
			case <-l.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func (l *erasureLoad) send(account string) bool {
	body, _ := json.Marshal(apiv1.CreateErasureRequest{AccountID: account, Reason: "failover drill"})
	req, err := http.NewRequest(http.MethodPost, l.api+"/v1/erasures", bytes.NewReader(body))
	if err != nil {
		l.failed(err.Error())
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	addAuth(req)
	resp, err := l.client.Do(req)
	if err != nil {
		l.failed(err.Error())
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var j apiv1.Job
	if (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted) || json.Unmarshal(b, &j) != nil {
		l.failed(fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)))
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted[account] = j.ID
	l.last = j.ID
	return true
}

func (l *erasureLoad) failed(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retried++
	l.lastErr = why
}

// backlog counts the accepted erasures some store has not purged yet.
func (l *erasureLoad) backlog() int {
	accepted, _ := l.counts()
	purged := accepted
	for _, s := range l.stores {
		s.mu.Lock()
		purged = min(purged, len(s.gone))
		s.mu.Unlock()
	}
	return accepted - purged
}

// halt stops sending and waits for the request under way.
func (l *erasureLoad) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// counts returns how many accounts were accepted and how many requests
// were retried.
func (l *erasureLoad) counts() (accepted, retried int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted), l.retried
}

// lastJob returns the id of the job last accepted.
func (l *erasureLoad) lastJob() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// jobs returns a copy of account → job id.
func (l *erasureLoad) jobs() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.accepted))
	for k, v := range l.accepted {
		out[k] = v
	}
	return out
}

// listJobs reads every job of a status ("" for all) through the API,
// page by page; ok is false when the API did not answer.
func listJobs(api, status string) (jobs []apiv1.Job, ok bool) {
	token := ""
	for {
		q := url.Values{"page_size": {"500"}}
		if status != "" {
			q.Set("status", status)
		}
		if token != "" {
			q.Set("page_token", token)
		}
		var l apiv1.JobList
		if err := getJSON(api+"/v1/erasures?"+q.Encode(), &l); err != nil {
			return jobs, false
		}
		jobs = append(jobs, l.Jobs...)
		if l.NextPageToken == "" {
			return jobs, true
		}
		token = l.NextPageToken
	}
}

// completedCount counts the completed jobs; -1 when the API did not answer.
func completedCount(api string) int {
	js, ok := listJobs(api, apiv1.JobCompleted)
	if !ok {
		return -1
	}
	return len(js)
}

// outcome is what became of the accepted erasures, as the tests log it.
type outcome struct {
	accepted, completed, jobs, duplicateJobs, doubleCounted, countLost int
	purges, tasksPurgedTwice, attemptsAboveOne                         int
}

func (o outcome) String() string {
	return fmt.Sprintf("accepted %d, completed %d, jobs %d, duplicated erasures %d (accounts with more than one job), items counted twice %d, task counts lost %d; purges %d, tasks purged more than once %d (a task delivered again: its purge is idempotent, its item counted once), tasks with more than one attempt %d",
		o.accepted, o.completed, o.jobs, o.duplicateJobs, o.doubleCounted, o.countLost, o.purges, o.tasksPurgedTwice, o.attemptsAboveOne)
}

// waitAllCompleted waits until every accepted erasure's job completed and
// checks that each completed once: one job per account, the job the API
// answered with, every task succeeded with the one item its account had
// (a purge run twice finds nothing the second time, and a duplicate
// report changes nothing, so a double count would show here), and every
// account purged from every store. With countsMayBeLost a task may show
// 0 items: Redis lost the application of its first report, and the item
// was counted by the purge that ran again (the lifecycle stream still has
// the first report's count). stores are the categories' ledgers.
func waitAllCompleted(t *testing.T, api string, load *erasureLoad, within time.Duration, countsMayBeLost bool, stores ...*ledgerStore) outcome {
	t.Helper()
	want := load.jobs()
	deadline := time.Now().Add(within)
	for completedCount(api) < len(want) {
		if time.Now().After(deadline) {
			all, _ := listJobs(api, "")
			var open []string
			for _, j := range all {
				if j.Status != apiv1.JobCompleted && len(open) < 10 {
					b, _ := json.Marshal(j)
					open = append(open, string(b))
				}
			}
			t.Fatalf("%d accepted erasures, %d jobs, not all completed within %s; some of the others:\n%s", len(want), len(all), within, strings.Join(open, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	all, ok := listJobs(api, "")
	if !ok {
		t.Fatal("list every job: the API did not answer")
	}
	o := outcome{accepted: len(want), jobs: len(all)}
	perAccount := map[string]int{}
	for _, j := range all {
		perAccount[j.AccountID]++
		if j.Status == apiv1.JobCompleted {
			o.completed++
		}
		if id, ok := want[j.AccountID]; !ok || id != j.ID {
			t.Errorf("job %s of account %s was not the one the API answered with (%q)", j.ID, j.AccountID, id)
		}
		for _, task := range j.Tasks {
			switch {
			case task.Status != apiv1.TaskSucceeded:
				t.Errorf("job %s task %s: %s, want succeeded", j.ID, task.Category, task.Status)
			case task.ItemsPurged > 1:
				o.doubleCounted += int(task.ItemsPurged) - 1
				t.Errorf("job %s task %s: %d items purged, want 1", j.ID, task.Category, task.ItemsPurged)
			case task.ItemsPurged == 0:
				o.countLost++
				if !countsMayBeLost {
					t.Errorf("job %s task %s: 0 items purged, want 1", j.ID, task.Category)
				}
			}
			if task.Attempts > 1 {
				o.attemptsAboveOne++
			}
		}
	}
	for a, n := range perAccount {
		if n > 1 {
			o.duplicateJobs++
			t.Errorf("account %s has %d jobs, want one", a, n)
		}
	}
	for _, s := range stores {
		o.purges += s.purges()
		o.tasksPurgedTwice += len(s.purgedMoreThanOnce())
		s.mu.Lock()
		for a := range want {
			if !s.gone[a] {
				t.Errorf("account %s was never purged from %s", a, s.category)
			}
		}
		s.mu.Unlock()
	}
	if o.completed != o.accepted || o.jobs != o.accepted {
		t.Errorf("%d jobs, %d completed, want the %d accepted", o.jobs, o.completed, o.accepted)
	}
	return o
}

// poll is eventually for conditions that cost the services a request or
// more (a listing of every job, a stream's cluster state): it looks five
// times a second, not forty, so as not to load the machine it waits on.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// since formats the time from start, for the tests' timelines.
func since(start time.Time) string {
	return fmt.Sprintf("t+%.1fs", time.Since(start).Seconds())
}

// quietLog keeps the services' warnings (a failover makes many) out of
// the test output unless the test fails.
func quietLog(t *testing.T) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
}
