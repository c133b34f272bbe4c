package billingstore

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/billing/stripemock"
)

// One erasure task end to end on the real worker runtime: embedded
// JetStream, the store on PostgreSQL, stripe-mock behind a proxy that fails
// the first delete. The runtime retries in process, reports success with
// every item counted, acks, and answers the footprint query with nothing
// personal left.
func TestWorkerRuntime(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATS(t)
	nc, js := srv.Connect(t)
	ctx := context.Background()
	settings := topology.Settings{TaskAckWait: 5 * time.Second, TaskMaxDeliver: 3, TaskBackOff: []time.Duration{}}
	settings.Categories = []string{erasurev1.CategoryBilling}
	if err := topology.Ensure(ctx, js, settings); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	reports := make(chan *erasurev1.TaskReport, 10)
	cons, err := js.CreateOrUpdateConsumer(ctx, erasurev1.ReportsStream, jetstream.ConsumerConfig{Durable: "test-reports", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r erasurev1.TaskReport
		if err := proto.Unmarshal(m.Data(), &r); err != nil {
			t.Errorf("undecodable report: %v", err)
		}
		_ = m.Ack()
		reports <- &r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)

	proxy := newFaultyStripe(t, stripemock.Start(t).URL, 1, 503)
	s := newStore(t, WithStripe(stripeClient(t, proxy.URL)), WithClock(at(t, "2026-06-15T10:00:00Z")))
	const acct = "acc-000042"
	seeded := seed(t, s, acct, SeedOptions{Invoices: 24, Seed: 42, StartYear: 2016})

	rt, err := worker.New(worker.Config{
		Category:     erasurev1.CategoryBilling,
		WorkerID:     "billing-test",
		DrainTimeout: 5 * time.Second,
		Retry:        worker.RetryPolicy{InProcessAttempts: 3, InProcessInterval: 20 * time.Millisecond},
	}, nc, js, s, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	data, err := proto.Marshal(&erasurev1.ErasureTask{JobId: "job-42", AccountId: acct, Category: erasurev1.CategoryBilling,
		Stage: "erase", Action: ActionPseudonymise, Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, erasurev1.TaskSubject(erasurev1.CategoryBilling), data,
		jetstream.WithMsgID(erasurev1.TaskMsgID("job-42", erasurev1.CategoryBilling, "erase", 1))); err != nil {
		t.Fatalf("publish task: %v", err)
	}

	var r *erasurev1.TaskReport
	select {
	case r = <-reports:
	case <-time.After(20 * time.Second):
		t.Fatal("no report within 20s")
	}
	if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetJobId() != "job-42" || r.GetAccountId() != acct || r.GetAttempt() != 1 {
		t.Fatalf("report = %v, want success of job-42 on the first delivery", r)
	}
	if want := seeded.Invoices + 2; r.GetItemsPurged() != want {
		t.Errorf("items_purged = %d, want %d (invoices deleted or pseudonymised, the customer, the Stripe customer)", r.GetItemsPurged(), want)
	}
	if keys := proxy.deleteKeys(); len(keys) != 2 || keys[0] != keys[1] {
		t.Errorf("idempotency keys = %q, want one key sent twice", keys)
	}

	req, err := proto.Marshal(&erasurev1.FootprintRequest{AccountIds: []string{acct}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(erasurev1.FootprintSubject(erasurev1.CategoryBilling), req, 5*time.Second)
	if err != nil {
		t.Fatalf("footprint request: %v", err)
	}
	var reply erasurev1.FootprintReply
	if err := proto.Unmarshal(m.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.GetError() != "" || len(reply.GetAccounts()) != 1 {
		t.Fatalf("footprint reply = %v", &reply)
	}
	fp := reply.GetAccounts()[0]
	if fp.GetItems() != 0 || fp.GetDetail()[KindInvoicesRetained] != seeded.Invoices-seeded.PastRetention {
		t.Errorf("footprint = %d %v, want nothing personal and %d retained invoices", fp.GetItems(), fp.GetDetail(), seeded.Invoices-seeded.PastRetention)
	}
}
