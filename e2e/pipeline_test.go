package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/lib/worker"
	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/coordinator/policy"
)

// pipeline is a running coordinator over real NATS, Redis and PostgreSQL.
type pipeline struct {
	nats     *testenv.NATSServer
	nc       *nats.Conn
	js       jetstream.JetStream
	api      string
	contacts *contactstore.Store
	dsn      string
	log      *zap.Logger
}

// testTopology shortens the ack wait so that a lost worker's task comes
// back within seconds.
func testTopology() topology.Settings {
	s := topology.DefaultSettings()
	s.TaskAckWait = 2 * time.Second
	s.TaskBackOff = []time.Duration{}
	s.TaskMaxDeliver = 5
	return s
}

func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	return startPipelineWith(t, nil)
}

// startPipelineWith lets a test adjust the coordinator's configuration.
func startPipelineWith(t *testing.T, adjust func(*app.Config)) *pipeline {
	t.Helper()
	p := &pipeline{nats: testenv.StartNATS(t), log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
	p.nc, p.js = p.nats.Connect(t)
	rdb, prefix := testenv.Redis(t)
	redisURL := "redis://" + rdb.Options().Addr + "/" + fmt.Sprint(rdb.Options().DB)

	cfg := app.Config{
		NATSURL: p.nats.URL, RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		Categories: []string{erasurev1.CategoryContacts}, Topology: testTopology(), ShutdownTimeout: 10 * time.Second,
	}
	cfg.Topology.Categories = cfg.Categories
	if adjust != nil {
		adjust(&cfg)
	}
	withAPITokens(t, &cfg)
	if cfg.Policy == nil {
		cfg.Policy = immediatePolicy(cfg.Categories)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, p.log.Named("coordinator"), listening) }()
	select {
	case addr := <-listening:
		p.api = "http://" + addr
	case err := <-done:
		t.Fatalf("coordinator did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("coordinator did not start within 20s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})

	p.dsn = testenv.Postgres(t)
	store, err := contactstore.Open(context.Background(), p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.contacts = store
	return p
}

// startWorker runs the contacts worker service in-process until the test
// ends.
func (p *pipeline) startWorker(t *testing.T, purger worker.Purger) {
	t.Helper()
	var cfg worker.ServiceConfig
	cfg.NATSURL = p.nats.URL
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Runtime = worker.Config{Category: erasurev1.CategoryContacts, Concurrency: 4, DrainTimeout: 10 * time.Second,
		Retry: worker.RetryPolicy{InProcessAttempts: 1, RedeliveryInitial: 100 * time.Millisecond, RedeliveryMultiplier: 2, RedeliveryMax: time.Second}}
	cfg.Topology = testTopology()
	cfg.Topology.Categories = []string{erasurev1.CategoryContacts}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Serve(ctx, cfg, purger, nil, p.log.Named("worker")) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

func (p *pipeline) seed(t *testing.T, contacts int, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := p.contacts.Seed(context.Background(), id, contactstore.SeedOptions{Contacts: contacts, Lists: 3, PropertiesPerContact: 2}, nil); err != nil {
			t.Fatalf("seed %s: %v", id, err)
		}
	}
}

func (p *pipeline) footprint(t *testing.T, id string) int64 {
	t.Helper()
	fps, err := p.contacts.Footprint(context.Background(), []string{id})
	if err != nil {
		t.Fatal(err)
	}
	return fps[0].Items
}

func (p *pipeline) publishEvent(t *testing.T, ev *accountsv1.AccountDeleted) {
	t.Helper()
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.js.Publish(context.Background(), erasurev1.AccountDeletedSubject, data); err != nil {
		t.Fatalf("publish event: %v", err)
	}
}

// call calls the API as the privacy team (privacy:ops), or as an SRE
// (sre:kim) on the operations routes and the metrics scraper on /metrics
// (roleFor).
func (p *pipeline) call(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	u, _ := url.Parse(path)
	return p.callAs(t, principalOf(roleFor(u.Path)), method, path, body)
}

// callAs calls the API with the token of a test principal ("" for none).
func (p *pipeline) callAs(t *testing.T, principal, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.api+path, r)
	req.Header.Set("Content-Type", "application/json")
	if principal != "" {
		req.Header.Set("Authorization", "Bearer "+tokenOf(principal))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (p *pipeline) jobsOf(t *testing.T, account string) []apiv1.Job {
	t.Helper()
	code, body := p.call(t, "GET", "/v1/erasures?account_id="+account, nil)
	if code != http.StatusOK {
		t.Fatalf("list: %d %s", code, body)
	}
	var l apiv1.JobList
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatal(err)
	}
	return l.Jobs
}

// waitJob polls until the account has a job in a terminal state.
func (p *pipeline) waitJob(t *testing.T, account string, within time.Duration) apiv1.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		js := p.jobsOf(t, account)
		if len(js) > 0 && (js[0].Status == apiv1.JobCompleted || js[0].Status == apiv1.JobFailed) {
			return js[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("account %s has no finished job after %s: %+v", account, within, js)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lifecycleOf reads the job's lifecycle events in order.
func (p *pipeline) lifecycleOf(t *testing.T, jobID string) []*erasurev1.LifecycleEvent {
	t.Helper()
	ctx := context.Background()
	cons, err := p.js.OrderedConsumer(ctx, erasurev1.LifecycleStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{erasurev1.LifecycleSubject(jobID)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []*erasurev1.LifecycleEvent
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev erasurev1.LifecycleEvent
			if err := proto.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			out = append(out, &ev)
		}
		if n == 0 {
			return out
		}
	}
}

func TestAccountDeletedEventErasesTheAccountAndOnlyIt(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	p.startWorker(t, p.contacts)
	p.seed(t, 1500, "acc-1", "acc-2", "acc-3")
	before := map[string]int64{}
	for _, a := range []string{"acc-1", "acc-2", "acc-3"} {
		before[a] = p.footprint(t, a)
	}
	p.publishEvent(t, &accountsv1.AccountDeleted{EventId: "evt-1", AccountId: "acc-2", DeletedAt: timestamppb.Now(), RequestedBy: "customer:acc-2", Reason: "closed account"})

	j := p.waitJob(t, "acc-2", 30*time.Second)
	if j.Status != apiv1.JobCompleted || j.Origin != "dashboard" || j.RequestedBy != "customer:acc-2" {
		t.Fatalf("job = %+v, want completed from the dashboard", j)
	}
	if len(j.Tasks) != 1 || j.Tasks[0].Status != apiv1.TaskSucceeded || j.Tasks[0].ItemsPurged != before["acc-2"] || j.Tasks[0].Attempts != 1 {
		t.Errorf("tasks = %+v, want one succeeded task that purged %d items", j.Tasks, before["acc-2"])
	}
	if n := p.footprint(t, "acc-2"); n != 0 {
		t.Errorf("%d items of the erased account left", n)
	}
	for _, a := range []string{"acc-1", "acc-3"} {
		if n := p.footprint(t, a); n != before[a] {
			t.Errorf("account %s has %d items, want its %d untouched", a, n, before[a])
		}
	}
	var types []erasurev1.EventType
	for _, ev := range p.lifecycleOf(t, j.ID) {
		types = append(types, ev.GetType())
		if ev.GetAccountId() != "acc-2" || ev.GetJobId() != j.ID || ev.GetActor() == "" || !ev.GetAt().IsValid() {
			t.Errorf("lifecycle event without who/what/when: %v", ev)
		}
	}
	want := []erasurev1.EventType{
		erasurev1.EventType_EVENT_TYPE_JOB_CREATED, erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED,
		erasurev1.EventType_EVENT_TYPE_TASK_SUCCEEDED, erasurev1.EventType_EVENT_TYPE_JOB_COMPLETED,
	}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("lifecycle = %v, want %v", types, want)
	}
}

func TestRepeatedEventsAndRequestsMakeOneJob(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	// No worker: the job stays running, as while a purge is under way.
	ev := &accountsv1.AccountDeleted{EventId: "evt-dup", AccountId: "acc-dup"}
	p.publishEvent(t, ev)
	p.publishEvent(t, ev)
	// The same deletion as JSON with another event id, and through the API.
	m := nats.NewMsg(erasurev1.AccountDeletedSubject)
	m.Header.Set(erasurev1.HeaderContentType, erasurev1.ContentTypeJSON)
	m.Data = []byte(`{"eventId":"evt-dup-2","accountId":"acc-dup","requestedBy":"dashboard"}`)
	if _, err := p.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(p.jobsOf(t, "acc-dup")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no job for the event")
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-dup", RequestedBy: "privacy:ops", Reason: "duplicate check"})
	var j apiv1.Job
	_ = json.Unmarshal(body, &j)
	if code != http.StatusOK || j.Created == nil || *j.Created {
		t.Errorf("POST for an account with an active job = %d %s, want 200 with created=false", code, body)
	}
	waitConsumed(t, p.js, erasurev1.AccountsStream, erasurev1.IngressConsumer)
	if jobs := p.jobsOf(t, "acc-dup"); len(jobs) != 1 || jobs[0].ID != j.ID {
		t.Errorf("jobs for the account = %+v, want exactly the one job %s", jobs, j.ID)
	}
}

// waitConsumed waits until a consumer has acked everything in its stream.
func waitConsumed(t *testing.T, js jetstream.JetStream, stream, consumer string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := js.Consumer(context.Background(), stream, consumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s still has %d pending, %d unacked", consumer, info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMalformedEventIsRejectedVisiblyAndDoesNotBlock(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	p.startWorker(t, p.contacts)
	p.seed(t, 100, "acc-ok")
	ctx := context.Background()
	if _, err := p.js.Publish(ctx, erasurev1.AccountDeletedSubject, []byte("\x0a\xff\xff garbage")); err != nil {
		t.Fatal(err)
	}
	bad := nats.NewMsg(erasurev1.AccountDeletedSubject)
	bad.Header.Set(erasurev1.HeaderContentType, erasurev1.ContentTypeJSON)
	bad.Data = []byte(`{"accountId":"someone@example.com"}`)
	if _, err := p.js.PublishMsg(ctx, bad); err != nil {
		t.Fatal(err)
	}
	p.publishEvent(t, &accountsv1.AccountDeleted{EventId: "evt-ok", AccountId: "acc-ok"})

	if j := p.waitJob(t, "acc-ok", 30*time.Second); j.Status != apiv1.JobCompleted {
		t.Fatalf("the valid event behind the bad ones: job %s", j.Status)
	}
	s, err := p.js.Stream(ctx, erasurev1.RejectedStream)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("rejected event %d not kept: %v", seq, err)
		}
		reason := m.Header.Get(erasurev1.HeaderRejectReason)
		src := m.Header.Get(erasurev1.HeaderRejectSource)
		if reason == "" || src == "" || len(m.Data) == 0 {
			t.Errorf("rejected event %d lacks reason, source or payload: %v %q", seq, m.Header, m.Data)
		}
		reasons[reason[:min(len(reason), 7)]] = true
	}
	if !reasons["undecod"] || !reasons["invalid"] {
		t.Errorf("rejection reasons = %v, want one undecodable and one invalid", reasons)
	}
	_, code := metric(t, p.api, "lethe_ingress_rejected_total")
	if code < 2 {
		t.Errorf("lethe_ingress_rejected_total = %v, want 2", code)
	}
}

// metric sums the samples of a metric family on the coordinator's /metrics.
func metric(t *testing.T, api, name string) (string, float64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, api+"/metrics", nil)
	addAuth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range bytes.Split(body, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(name+"{")) || bytes.HasPrefix(line, []byte(name+" ")) {
			var v float64
			fields := bytes.Fields(line)
			if _, err := fmt.Sscan(string(fields[len(fields)-1]), &v); err == nil {
				sum += v
			}
		}
	}
	return string(body), sum
}

func TestDuplicateReportIsNotCountedTwice(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	p.startWorker(t, p.contacts)
	p.seed(t, 200, "acc-rep")
	want := p.footprint(t, "acc-rep")
	p.publishEvent(t, &accountsv1.AccountDeleted{EventId: "evt-rep", AccountId: "acc-rep"})
	j := p.waitJob(t, "acc-rep", 30*time.Second)
	if j.Tasks[0].ItemsPurged != want {
		t.Fatalf("items purged %d, want %d", j.Tasks[0].ItemsPurged, want)
	}
	// Replay the success report under a new message id, past the stream's
	// deduplication, as a worker would after a very late redelivery.
	rep := &erasurev1.TaskReport{JobId: j.ID, AccountId: "acc-rep", Category: "contacts", Stage: "erase", Generation: 1,
		Outcome: erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED, ItemsPurged: 999, Attempt: 2}
	data, _ := proto.Marshal(rep)
	for i := range 3 {
		if _, err := p.js.Publish(context.Background(), erasurev1.ReportSubject("contacts"), data, jetstream.WithMsgID(fmt.Sprintf("replay-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitConsumed(t, p.js, erasurev1.ReportsStream, erasurev1.ReportsConsumer)
	code, body := p.call(t, "GET", "/v1/erasures/"+j.ID, nil)
	var after apiv1.Job
	_ = json.Unmarshal(body, &after)
	if code != 200 || after.Status != apiv1.JobCompleted || after.Tasks[0].ItemsPurged != want || after.Tasks[0].Attempts != 1 {
		t.Errorf("after duplicate reports: %d %+v, want unchanged (%d items, 1 attempt)", code, after, want)
	}
	metrics, _ := metric(t, p.api, "lethe_reports_total")
	if !bytes.Contains([]byte(metrics), []byte(`lethe_reports_total{category="contacts",result="duplicate"} 3`)) {
		t.Errorf("duplicate reports not counted as such:\n%s", grep(metrics, "lethe_reports_total"))
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range bytes.Split([]byte(s), []byte("\n")) {
		if bytes.Contains(l, []byte(substr)) {
			out = append(out, string(l))
		}
	}
	return fmt.Sprint(out)
}

// failingPurger fails every purge for good.
type failingPurger struct{ worker.Purger }

func (failingPurger) Purge(context.Context, worker.Task) (worker.Result, error) {
	return worker.Result{}, worker.Permanentf("refused", "contacts database refused the delete: permission denied")
}

func TestFailedTaskFailsTheJobWithTheReason(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	p.startWorker(t, failingPurger{p.contacts})
	p.seed(t, 50, "acc-fail")
	code, body := p.call(t, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-fail", RequestedBy: "privacy:ops", Reason: "ticket PRIV-1"})
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, body)
	}
	j := p.waitJob(t, "acc-fail", 30*time.Second)
	if j.Status != apiv1.JobFailed || j.Tasks[0].Status != apiv1.TaskFailed || j.Tasks[0].ErrorCode != "refused" || j.Error == "" {
		t.Errorf("job = %+v, want failed with the worker's reason", j)
	}
	if p.footprint(t, "acc-fail") == 0 {
		t.Error("the data is gone although the purge failed")
	}
}

func TestAPI(t *testing.T) {
	t.Parallel()
	p := startPipeline(t)
	tests := []struct {
		name, method, path string
		body               any
		wantCode           int
		wantErrCode        string
	}{
		{"create", "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-api", RequestedBy: "privacy:ops", Reason: "DSR by mail"}, 202, ""},
		{"create again", "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-api", RequestedBy: "privacy:ops", Reason: "DSR by mail"}, 200, ""},
		{"e-mail as account", "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "a@b.example", RequestedBy: "privacy:ops", Reason: "x"}, 400, "invalid_argument"},
		{"missing reason", "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-x", RequestedBy: "privacy:ops"}, 400, "invalid_argument"},
		{"unknown field", "POST", "/v1/erasures", map[string]string{"account_id": "acc-x", "requested_by": "p", "reason": "r", "email": "x"}, 400, "invalid_argument"},
		{"wrong type", "POST", "/v1/erasures", map[string]any{"account_id": 7, "requested_by": "p", "reason": "r"}, 400, "invalid_argument"},
		{"unknown job", "GET", "/v1/erasures/01890000-0000-7000-8000-000000000000", nil, 404, "not_found"},
		{"malformed job id", "GET", "/v1/erasures/not-a-uuid", nil, 400, "invalid_argument"},
		{"bad status filter", "GET", "/v1/erasures?status=done", nil, 400, "invalid_argument"},
		{"bad page size", "GET", "/v1/erasures?page_size=100000", nil, 400, "invalid_argument"},
		{"unknown parameter", "GET", "/v1/erasures?acount_id=x", nil, 400, "invalid_argument"},
		{"list", "GET", "/v1/erasures?status=running&page_size=10", nil, 200, ""},
		{"health", "GET", "/healthz", nil, 200, ""},
		{"ready", "GET", "/readyz", nil, 200, ""},
		{"no such endpoint", "GET", "/v2/things", nil, 404, "not_found"},
	}
	for _, tt := range tests {
		code, body := p.call(t, tt.method, tt.path, tt.body)
		if code != tt.wantCode {
			t.Errorf("%s: %s %s = %d %s, want %d", tt.name, tt.method, tt.path, code, body, tt.wantCode)
			continue
		}
		if tt.wantErrCode != "" {
			var e apiv1.ErrorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tt.wantErrCode || e.Error.Message == "" {
				t.Errorf("%s: error body %s, want code %q with a message", tt.name, body, tt.wantErrCode)
			}
		}
	}
	jobs := p.jobsOf(t, "acc-api")
	if len(jobs) != 1 {
		t.Fatalf("jobs of acc-api: %+v", jobs)
	}
	code, body := p.call(t, "GET", "/v1/erasures/"+jobs[0].ID, nil)
	var j apiv1.Job
	if err := json.Unmarshal(body, &j); err != nil || code != 200 || j.AccountID != "acc-api" || len(j.Tasks) != 1 || j.Deadline.Sub(j.CreatedAt) < 28*24*time.Hour {
		t.Errorf("GET job = %d %s", code, body)
	}
}

func zapNop() *zap.Logger { return zap.NewNop() }

func jsonDecode(b []byte, v any) error { return json.Unmarshal(b, v) }

// immediatePolicy is the shipped policy cut down to the categories under
// test, with no grace period and only the stages due at once, so that a
// job completes as soon as its workers are done. The retention stages and
// the grace period are tested with a fake clock (lifecycle_test.go).
func immediatePolicy(categories []string) *policy.Policy {
	p := policy.Default().Restrict(categories)
	for o := range p.Grace {
		p.Grace[o] = 0
	}
	for i := range p.Categories {
		c := &p.Categories[i]
		var keep []policy.Stage
		for _, s := range c.Stages {
			if !s.When.Delayed() {
				keep = append(keep, s)
			}
		}
		c.Stages = keep
	}
	return p
}

// taskMessages counts the task messages in the tasks stream — the
// scheduler's fence messages share the stream but are not tasks — and
// returns the sequence of the last one.
func taskMessages(t *testing.T, tasks jetstream.Stream) (uint64, uint64) {
	t.Helper()
	ctx := context.Background()
	info, err := tasks.Info(ctx, jetstream.WithSubjectFilter(erasurev1.TaskSubjectPrefix+">"))
	if err != nil {
		t.Fatalf("tasks stream info: %v", err)
	}
	var n uint64
	for subj, c := range info.State.Subjects {
		if subj != erasurev1.SchedulerFenceSubject {
			n += c
		}
	}
	var last uint64
	for seq := info.State.LastSeq; n > 0 && seq >= info.State.FirstSeq && seq > 0; seq-- {
		m, err := tasks.GetMsg(ctx, seq)
		if err == nil && m.Subject != erasurev1.SchedulerFenceSubject {
			last = seq
			break
		}
	}
	return n, last
}
