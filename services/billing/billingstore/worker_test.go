package billingstore

import (
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/lib/worker/workertest"
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
	e := workertest.Start(t, erasurev1.CategoryBilling, workertest.Settings(5*time.Second))

	proxy := newFaultyStripe(t, stripemock.Start(t).URL, 1, 503)
	s := newStore(t, WithStripe(stripeClient(t, proxy.URL)), WithClock(at(t, "2026-06-15T10:00:00Z")))
	const acct = "acc-000042"
	seeded := seed(t, s, acct, SeedOptions{Invoices: 24, Seed: 42, StartYear: 2016})

	e.Run(t, e.NC, worker.Config{
		Category:     erasurev1.CategoryBilling,
		WorkerID:     "billing-test",
		DrainTimeout: 5 * time.Second,
		Retry:        worker.RetryPolicy{InProcessAttempts: 3, InProcessInterval: 20 * time.Millisecond},
	}, s, nil)
	e.Publish(t, "job-42", acct, ActionPseudonymise)

	r := e.NextReport(t)
	if r.GetOutcome() != erasurev1.TaskOutcome_TASK_OUTCOME_SUCCEEDED || r.GetJobId() != "job-42" || r.GetAccountId() != acct || r.GetAttempt() != 1 {
		t.Fatalf("report = %v, want success of job-42 on the first delivery", r)
	}
	if want := seeded.Invoices + 2; r.GetItemsPurged() != want {
		t.Errorf("items_purged = %d, want %d (invoices deleted or pseudonymised, the customer, the Stripe customer)", r.GetItemsPurged(), want)
	}
	if keys := proxy.deleteKeys(); len(keys) != 2 || keys[0] != keys[1] {
		t.Errorf("idempotency keys = %q, want one key sent twice", keys)
	}

	fp := e.Footprint(t, []string{acct})[0]
	if fp.GetItems() != 0 || fp.GetDetail()[KindInvoicesRetained] != seeded.Invoices-seeded.PastRetention {
		t.Errorf("footprint = %d %v, want nothing personal and %d retained invoices", fp.GetItems(), fp.GetDetail(), seeded.Invoices-seeded.PastRetention)
	}
}
