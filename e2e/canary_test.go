package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/brokerauth/authtest"
	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/worker"
	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/backups/backupstore"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
	"github.com/lethe-privacy/lethe/services/billing/stripemock"
	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// canaryObserver is the test's own broker identity: it may subscribe to
// everything (and publish nothing), so that every message any process
// sends, and every message JetStream delivers, passes in front of the
// canary. The deployed identities are unchanged.
var canaryObserver = brokerauth.User{
	Identity:  "canary-observer",
	Why:       "the canary test's observer: reads every message, publishes none",
	Subscribe: []string{">"},
}

// lockedBuffer collects the log lines of every process.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Sync() error { return nil }

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// scan counts what the canary looked at and where it found the marker.
type scan struct {
	marker string
	counts map[string]int
	found  []string
}

func (s *scan) check(what, where string, text string) {
	s.counts[what]++
	if strings.Contains(text, s.marker) {
		i := strings.Index(text, s.marker)
		s.found = append(s.found, fmt.Sprintf("%s %s: …%s…", what, where, text[max(0, i-80):min(len(text), i+len(s.marker)+40)]))
	}
}

func headerText(h nats.Header) string {
	var b strings.Builder
	for k, vs := range h {
		b.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	return b.String()
}

// TestCanaryPersonalDataStaysOut seeds two accounts whose contacts,
// invoices and event-log records carry a random marker, runs the whole
// pipeline (coordinator and all four workers, each with its own broker
// credentials), erases one account through the API and the other through
// the dashboard's event, makes the second one's billing purge fail with a
// database error that quotes the marker, sends a malformed event that
// carries it, and asks for an e-mail address as an account id. Then it
// looks for the marker in every log line of every process, every /metrics
// output, every message that crossed the broker, every message kept in the
// streams, every key under the coordinator's Redis prefix, and every HTTP
// response it fetched: it must be in none, except in the test's own
// malformed event, which the broker carries and the rejected stream keeps
// as it came.
func TestCanaryPersonalDataStaysOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	marker := randomHex(t, 8)
	categories := []string{erasurev1.CategoryContacts, erasurev1.CategoryLogs, erasurev1.CategoryBilling, erasurev1.CategoryBackups}
	const erased, failing = "acct-canary", "acct-canary-fail"

	// Every line every process logs, at debug level, as JSON.
	var logBuf lockedBuffer
	obsCore, obsLogs := observer.New(zap.InfoLevel)
	jsonCore := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), &logBuf, zap.DebugLevel)
	log := zap.New(zapcore.NewTee(jsonCore, obsCore))

	broker := authtest.Start(t, categories, canaryObserver)
	connect := func(identity string) (*nats.Conn, jetstream.JetStream) {
		opts, err := broker.Auth(identity).Options(identity)
		if err != nil {
			t.Fatal(err)
		}
		nc, js, err := natsconn.Connect(broker.URL, "canary-"+identity, zap.NewNop(), opts...)
		if err != nil {
			t.Fatalf("connect as %s: %v", identity, err)
		}
		t.Cleanup(nc.Close)
		return nc, js
	}

	// The observer starts first, so that it sees everything.
	var (
		wireMu sync.Mutex
		wire   []*nats.Msg
	)
	onc, _ := connect(canaryObserver.Identity)
	if _, err := onc.Subscribe(">", func(m *nats.Msg) {
		wireMu.Lock()
		wire = append(wire, m)
		wireMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := onc.Flush(); err != nil {
		t.Fatal(err)
	}

	// The stores, with the marker in names, e-mail addresses, subjects.
	contactsDSN, billingDSN := testenv.Postgres(t), testenv.Postgres(t)
	contacts, err := contactstore.Open(ctx, contactsDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(contacts.Close)
	if err := contacts.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	logsReg := prometheus.NewRegistry()
	logs, err := logstore.Open(ctx, t.TempDir(), logstore.WithLogger(log.Named("logstore")), logstore.WithRegisterer(logsReg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logs.Close() })
	mock := stripemock.Start(t)
	stripe, err := stripeapi.New(stripeapi.Config{BaseURL: mock.URL, APIKey: redact.New(stripemock.APIKey)})
	if err != nil {
		t.Fatal(err)
	}
	billing, err := billingstore.Open(ctx, billingDSN, billingstore.WithStripe(stripe))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(billing.Close)
	if err := billing.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	backups, err := backupstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := backupstore.OpenLedger(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ledger.Close)
	if err := ledger.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	for i, acct := range []string{erased, failing} {
		if _, err := contacts.Seed(ctx, acct, contactstore.SeedOptions{Contacts: 20, Lists: 2, PropertiesPerContact: 2, Seed: int64(i)}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := billing.Seed(ctx, acct, billingstore.SeedOptions{Invoices: 4, Seed: int64(i)}, nil); err != nil {
			t.Fatal(err)
		}
		// A sealed hour and the open current hour.
		for _, h := range []time.Time{hour, time.Now().UTC()} {
			if err := logs.Append(ctx, h, []logstore.Record{{
				Time: h, AccountID: acct, Event: logstore.EventSent, MessageID: "<" + marker + "@mail.example>",
				Recipient: "rcpt." + marker + "@example.org", Subject: "Hello " + marker,
			}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := logs.Seal(ctx, hour); err != nil {
		t.Fatal(err)
	}
	mark := func(dsn string, stmts ...string) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, s := range stmts {
			var args []any
			if strings.Contains(s, "$1") {
				args = append(args, marker)
			}
			if _, err := conn.Exec(ctx, s, args...); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	mark(contactsDSN,
		`UPDATE contacts SET email = 'canary.' || $1 || '.' || id || '@example.org', name = 'Canary ' || $1`,
		`UPDATE contact_properties SET value = value || ' ' || $1`,
		`UPDATE contact_lists SET name = 'List ' || $1`)
	mark(billingDSN,
		`UPDATE customers SET name = 'Canary ' || $1, email = 'billing.' || $1 || '@example.org', address_line1 = $1 || ' Street 1'`,
		`UPDATE invoices SET customer_name = 'Canary ' || $1, address_line1 = $1 || ' Street 1'`,
		// A store that quotes a row in its error: the failing account's
		// customer cannot be changed, and the database says whose.
		`CREATE FUNCTION canary_refuse() RETURNS trigger LANGUAGE plpgsql AS $f$
		 BEGIN
		   IF OLD.account_id = '`+failing+`' THEN
		     RAISE EXCEPTION 'refusing to change customer % (%)', OLD.name, OLD.email;
		   END IF;
		   RETURN NEW;
		 END $f$`,
		`CREATE TRIGGER canary_refuse BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION canary_refuse()`)
	if _, err := backups.TakeSnapshot(ctx, backupstore.Source{Databases: []backupstore.Database{
		{Name: "contacts", DSN: contactsDSN, Tables: backupstore.Tables("contact_lists", "contacts", "contact_list_members", "contact_properties")},
		{Name: "billing", DSN: billingDSN, Tables: backupstore.Tables("customers", "invoices")},
	}}); err != nil {
		t.Fatal(err)
	}
	// Not vacuous: the stores hold the marker before the run.
	if n := countMarked(ctx, t, contactsDSN, marker, `SELECT count(*) FROM contacts WHERE email LIKE '%' || $1 || '%'`); n != 40 {
		t.Fatalf("%d marked contacts, want 40", n)
	}

	// The coordinator and the four workers, each as itself.
	rdb, prefix := testenv.Redis(t)
	cfg := app.Config{
		NATSURL: broker.URL, NATS: broker.Auth(brokerauth.Coordinator),
		RedisURL: "redis://" + rdb.Options().Addr + "/" + fmt.Sprint(rdb.Options().DB), RedisPrefix: prefix,
		HTTPAddr: "127.0.0.1:0", Categories: categories, Topology: testTopology(), ShutdownTimeout: 10 * time.Second,
		MonitorInterval: 200 * time.Millisecond, CertificateKey: filepath.Join(t.TempDir(), "certificate.pem"), CertificateKeyCreate: true,
	}
	cfg.Topology.Categories = categories
	cfg.Policy = immediatePolicy(categories)
	withAPITokens(t, &cfg)
	p := &pipeline{}
	runCtx, stop := context.WithCancel(ctx)
	listening := make(chan string, 1)
	coordDone := make(chan error, 1)
	go func() { coordDone <- app.Run(runCtx, cfg, log.Named("coordinator"), listening) }()
	select {
	case addr := <-listening:
		p.api = "http://" + addr
	case err := <-coordDone:
		t.Fatalf("coordinator did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("coordinator did not start within 20s")
	}
	var workers sync.WaitGroup
	// shutdown stops every process once: at the end of the test, so that
	// every log line is written before the logs are read, or at cleanup.
	shutdown := sync.OnceValue(func() error {
		stop()
		workers.Wait()
		return <-coordDone
	})
	t.Cleanup(func() { _ = shutdown() })
	purgers := map[string]worker.Purger{
		erasurev1.CategoryContacts: contacts, erasurev1.CategoryLogs: logs,
		erasurev1.CategoryBilling: billing, erasurev1.CategoryBackups: backupstore.NewPurger(backups, ledger),
	}
	for _, cat := range categories {
		var wc worker.ServiceConfig
		wc.NATSURL, wc.NATS, wc.HTTPAddr, wc.AwaitTopology = broker.URL, broker.Auth(brokerauth.Worker(cat)), "127.0.0.1:0", true
		wc.Runtime = worker.Config{Category: cat, Concurrency: 4, DrainTimeout: 10 * time.Second,
			Retry: worker.RetryPolicy{InProcessAttempts: 1, RedeliveryInitial: 100 * time.Millisecond, RedeliveryMultiplier: 2, RedeliveryMax: time.Second}}
		wc.Topology = testTopology()
		wc.Topology.Categories = []string{cat}
		if cat == erasurev1.CategoryLogs {
			wc.Registry = logsReg
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			if err := worker.Serve(runCtx, wc, purgers[cat], nil, log.Named(cat)); err != nil {
				t.Errorf("%s worker: %v", cat, err)
			}
		}()
	}

	s := &scan{marker: marker, counts: map[string]int{}}
	fetch := func(method, path string, body any) (int, []byte) {
		code, out := p.callAs(t, principalOf(roleFor(path)), method, path, body)
		s.check("http response", method+" "+path, string(out))
		return code, out
	}

	// The ways in: the API, the dashboard's event, and two that must fail.
	if code, out := fetch("POST", "/v1/erasures", map[string]any{"account_id": erased, "reason": "canary"}); code != http.StatusAccepted {
		t.Fatalf("request erasure: %d %s", code, out)
	}
	if code, out := fetch("POST", "/v1/erasures", map[string]any{"account_id": "canary." + marker + "@example.org"}); code != http.StatusBadRequest {
		t.Errorf("an e-mail address as account id: %d %s, want 400", code, out)
	}
	_, djs := connect(brokerauth.Dashboard)
	event, err := proto.Marshal(&accountsv1.AccountDeleted{EventId: "evt-canary", AccountId: failing, RequestedBy: "customer:" + failing})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := djs.Publish(ctx, erasurev1.AccountDeletedSubject, event, jetstream.WithMsgID("account-deleted:evt-canary")); err != nil {
		t.Fatal(err)
	}
	malformed := []byte(`{"eventId":"evt-bad","accountId":"acct-canary-bad","deletedAt":"canary.` + marker + `@example.org"}`)
	bad := nats.NewMsg(erasurev1.AccountDeletedSubject)
	bad.Data = malformed
	bad.Header.Set(erasurev1.HeaderContentType, erasurev1.ContentTypeJSON)
	if _, err := djs.PublishMsg(ctx, bad); err != nil {
		t.Fatal(err)
	}

	if j := p.waitJob(t, erased, 60*time.Second); j.Status != apiv1.JobCompleted {
		t.Fatalf("job of %s: %s %+v", erased, j.Status, j.Tasks)
	}
	jf := p.waitJob(t, failing, 60*time.Second)
	if jf.Status != apiv1.JobFailed {
		t.Fatalf("job of %s: %s, want failed (its billing purge is refused)", failing, jf.Status)
	}
	// The failure is visible, with the database's SQLSTATE and without
	// what it quoted.
	for _, tk := range jf.Tasks {
		if tk.Category == erasurev1.CategoryBilling && (!strings.Contains(tk.Error, "SQLSTATE P0001") || !strings.Contains(tk.Error, redact.Withheld)) {
			t.Errorf("billing task error %q, want the SQLSTATE and the message withheld", tk.Error)
		}
	}
	ja := p.jobsOf(t, erased)[0]

	// Every HTTP answer a privacy engineer or an SRE would fetch.
	for _, path := range []string{
		"/v1/erasures", "/v1/erasures?status=failed", "/v1/erasures?account_id=" + erased, "/v1/erasures?account_id=" + failing,
		"/v1/erasures/" + ja.ID, "/v1/erasures/" + jf.ID, "/v1/erasures/" + ja.ID + "/certificate",
		"/v1/certificate-key", "/v1/dead-letters", "/v1/reconciliation", "/readyz", "/metrics",
	} {
		if code, out := fetch("GET", path, nil); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, code, out)
		}
	}
	var letters apiv1.DeadLetterList
	_, out := fetch("GET", "/v1/dead-letters", nil)
	if err := json.Unmarshal(out, &letters); err != nil || len(letters.DeadLetters) == 0 {
		t.Fatalf("dead letters: %v %s", err, out)
	}
	for _, l := range letters.DeadLetters {
		fetch("GET", fmt.Sprintf("/v1/dead-letters/%d", l.Seq), nil)
	}
	// The workers' /metrics, at the addresses they logged.
	for _, e := range obsLogs.FilterMessage("worker service serving").All() {
		addr, _ := e.ContextMap()["http_addr"].(string)
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s.check("metrics", addr, string(body))
	}
	if s.counts["metrics"] != len(categories) {
		t.Errorf("read the /metrics of %d workers, want %d", s.counts["metrics"], len(categories))
	}
	// A footprint, as erasectl asks it.
	enc, _ := proto.Marshal(&erasurev1.FootprintRequest{AccountIds: []string{erased, failing}})
	ecn, _ := connect(brokerauth.Erasectl)
	for _, cat := range categories {
		if _, err := ecn.Request(erasurev1.FootprintSubject(cat), enc, 10*time.Second); err != nil {
			t.Errorf("footprint of %s: %v", cat, err)
		}
	}

	// Every message kept in the streams, read back.
	_, cjs := connect(brokerauth.Coordinator)
	for _, name := range []string{erasurev1.LifecycleStream, erasurev1.ReportsStream, erasurev1.TasksStream, erasurev1.RejectedStream,
		erasurev1.DeadLetterStream, erasurev1.AccountsStream, erasurev1.AdvisoryStream} {
		st, err := cjs.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted (acked work-queue tasks)
			}
			where := fmt.Sprintf("%s #%d", name, seq)
			s.check("stream message header", where, headerText(m.Header))
			if bytes.Equal(m.Data, malformed) {
				s.counts["own malformed event, as sent"]++
				continue
			}
			s.check("stream message", where, string(m.Data))
		}
	}
	if s.counts["own malformed event, as sent"] != 2 {
		t.Errorf("the malformed event is kept %d times, want twice (the accounts stream, the rejected stream)", s.counts["own malformed event, as sent"])
	}

	// Every key under the coordinator's prefix in Redis.
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var val string
		switch rdb.Type(ctx, k).Val() {
		case "string":
			val = rdb.Get(ctx, k).Val()
		case "zset":
			val = strings.Join(rdb.ZRange(ctx, k, 0, -1).Val(), "\n")
		}
		s.check("redis key", k, k+"\n"+val)
	}

	// Stop everything, so that every log line is written, then read the
	// logs and what crossed the broker.
	if err := shutdown(); err != nil {
		t.Errorf("coordinator: %v", err)
	}
	for i, line := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
		s.check("log line", fmt.Sprint(i+1), line)
	}
	wireMu.Lock()
	for _, m := range wire {
		data := string(m.Data)
		if bytes.Equal(m.Data, malformed) {
			s.counts["own malformed event, as sent"]++
			data = "" // its headers and subject are scanned all the same
		}
		s.check("broker message", m.Subject, m.Subject+"\n"+headerText(m.Header)+data)
	}
	wireMu.Unlock()

	// Every process ran with its own credentials, and the broker refused
	// none of them anything.
	for _, e := range obsLogs.FilterMessage("nats error").All() {
		t.Errorf("the broker refused %s: %v", e.LoggerName, e.ContextMap())
	}

	var counts []string
	for _, k := range []string{"log line", "metrics", "http response", "broker message", "stream message", "stream message header", "redis key", "own malformed event, as sent"} {
		counts = append(counts, fmt.Sprintf("%s: %d", k, s.counts[k]))
	}
	t.Logf("canary %s scanned: %s", marker, strings.Join(counts, ", "))
	for _, f := range s.found {
		t.Errorf("personal data leaked: %s", f)
	}
	// The erasures happened where they could, and not where the store
	// refused: the marker is gone from the contacts, and left in the
	// failing account's billing customer.
	if n := countMarked(ctx, t, contactsDSN, marker, `SELECT count(*) FROM contacts WHERE email LIKE '%' || $1 || '%'`); n != 0 {
		t.Errorf("%d marked contacts left, want none", n)
	}
	if n := countMarked(ctx, t, billingDSN, marker, `SELECT count(*) FROM customers WHERE name LIKE '%' || $1 || '%'`); n != 1 {
		t.Errorf("%d marked billing customers left, want the refused one", n)
	}
}

func countMarked(ctx context.Context, t *testing.T, dsn, marker, query string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query, marker).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
