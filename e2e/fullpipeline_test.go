package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/worker"
	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/backups/backupstore"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
	"github.com/lethe-privacy/lethe/services/billing/stripemock"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// stores are the four real stores a full pipeline erases from.
type stores struct {
	logs    *logstore.Store
	billing *billingstore.Store
	backups *backupstore.Store
	ledger  *backupstore.Ledger
	purger  *backupstore.Purger
}

func openStores(t *testing.T, p *pipeline) *stores {
	t.Helper()
	ctx := context.Background()
	s := &stores{}
	var err error
	if s.logs, err = logstore.Open(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.logs.Close() })

	mock := stripemock.Start(t)
	client, err := stripeapi.New(stripeapi.Config{BaseURL: mock.URL, APIKey: redact.New(stripemock.APIKey)})
	if err != nil {
		t.Fatal(err)
	}
	if s.billing, err = billingstore.Open(ctx, testenv.Postgres(t), billingstore.WithStripe(client)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.billing.Close)
	if err := s.billing.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	if s.backups, err = backupstore.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if s.ledger, err = backupstore.OpenLedger(ctx, testenv.Postgres(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.ledger.Close)
	if err := s.ledger.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s.purger = backupstore.NewPurger(s.backups, s.ledger)
	return s
}

// startCategoryWorker runs one category's worker service in-process.
func (p *pipeline) startCategoryWorker(t *testing.T, category string, purger worker.Purger) {
	t.Helper()
	var cfg worker.ServiceConfig
	cfg.NATSURL, cfg.HTTPAddr = p.nats.URL, "127.0.0.1:0"
	cfg.Runtime = worker.Config{Category: category, Concurrency: 8, DrainTimeout: 10 * time.Second,
		Retry: worker.RetryPolicy{InProcessAttempts: 1, RedeliveryInitial: 100 * time.Millisecond, RedeliveryMultiplier: 2, RedeliveryMax: time.Second}}
	cfg.Topology = testTopology()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Serve(ctx, cfg, purger, nil, p.log.Named(category)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s worker: %v", category, err)
		}
	})
}

func footprintOf(t *testing.T, pg worker.Purger, id string) worker.Footprint {
	t.Helper()
	fps, err := pg.Footprint(context.Background(), []string{id})
	if err != nil {
		t.Fatal(err)
	}
	return fps[0]
}

// TestAccountErasedFromAllFourStores seeds several accounts in contacts,
// logs, billing and backups, erases one through the dashboard's event, and
// checks every store: nothing personal left of it, everything left of the
// others; the backup snapshot holding it is recorded in the ledger.
func TestAccountErasedFromAllFourStores(t *testing.T) {
	t.Parallel()
	p := startPipelineWith(t, func(c *app.Config) {
		c.Categories = []string{erasurev1.CategoryContacts, erasurev1.CategoryLogs, erasurev1.CategoryBilling, erasurev1.CategoryBackups}
		c.Topology.Categories = c.Categories
	})
	s := openStores(t, p)
	ctx := context.Background()
	accounts := []string{"acc-f1", "acc-f2", "acc-f3"}
	p.seed(t, 200, accounts...)
	start := time.Now().UTC().Truncate(time.Hour).Add(-6 * time.Hour)
	for _, a := range accounts {
		if _, err := s.logs.Seed(ctx, a, logstore.SeedOptions{Hours: 6, RecordsPerHour: 40, Start: start, Seed: 1}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.billing.Seed(ctx, a, billingstore.SeedOptions{Invoices: 12, Seed: 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := s.backups.TakeSnapshot(ctx, backupstore.Source{Databases: []backupstore.Database{
		{Name: "contacts", DSN: p.dsn, Tables: backupstore.Tables("contact_lists", "contacts", "contact_list_members", "contact_properties")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Holds("acc-f2") {
		t.Fatalf("snapshot does not hold the account: %v", snap.Accounts)
	}
	purgers := map[string]worker.Purger{"contacts": p.contacts, "logs": s.logs, "billing": s.billing, "backups": s.purger}
	before := map[string]map[string]int64{}
	for _, a := range accounts {
		before[a] = map[string]int64{}
		for cat, pg := range purgers {
			before[a][cat] = footprintOf(t, pg, a).Items
		}
	}
	for cat, pg := range purgers {
		p.startCategoryWorker(t, cat, pg)
	}

	p.publishEvent(t, &accountsv1.AccountDeleted{EventId: "evt-full", AccountId: "acc-f2", RequestedBy: "customer:acc-f2"})
	j := p.waitJob(t, "acc-f2", 60*time.Second)
	if j.Status != apiv1.JobCompleted {
		t.Fatalf("job %s: %+v", j.Status, j.Tasks)
	}
	got := map[string]apiv1.Task{}
	for _, tk := range j.Tasks {
		got[tk.Category] = tk
	}
	// The ledger entry comes first: every other task was dispatched after it finished.
	ledgerDone := got["backups"].FinishedAt
	for _, cat := range []string{"contacts", "logs", "billing"} {
		if got[cat].DispatchedAt == nil || ledgerDone == nil || got[cat].DispatchedAt.Before(*ledgerDone) {
			t.Errorf("%s dispatched at %v, before the backup ledger entry (%v)", cat, got[cat].DispatchedAt, ledgerDone)
		}
		if got[cat].ItemsPurged == 0 {
			t.Errorf("%s purged nothing", cat)
		}
	}

	for cat, pg := range purgers {
		fp := footprintOf(t, pg, "acc-f2")
		switch cat {
		case "backups":
			// Backups cannot be edited: the snapshot still holds the
			// account, and the ledger puts it beyond use.
			if fp.Detail[backupstore.KindInLedger] != 1 || fp.Detail[backupstore.KindSnapshots] != 1 {
				t.Errorf("backups footprint = %v, want in ledger and held by the one snapshot", fp.Detail)
			}
		default:
			if fp.Items != 0 {
				t.Errorf("%s: %d items of the erased account left (%v)", cat, fp.Items, fp.Detail)
			}
		}
	}
	if fp := footprintOf(t, s.billing, "acc-f2"); fp.Detail[billingstore.KindInvoicesRetained] == 0 {
		t.Errorf("billing kept no invoice; pseudonymised invoices must be retained: %v", fp.Detail)
	}
	for _, a := range []string{"acc-f1", "acc-f3"} {
		for cat, pg := range purgers {
			if n := footprintOf(t, pg, a).Items; n != before[a][cat] {
				t.Errorf("%s of %s: %d items, want %d untouched", cat, a, n, before[a][cat])
			}
		}
	}
	t.Logf("erased: %s", fmt.Sprint(func() map[string]int64 {
		m := map[string]int64{}
		for c, tk := range got {
			m[c] = tk.ItemsPurged
		}
		return m
	}()))
}
