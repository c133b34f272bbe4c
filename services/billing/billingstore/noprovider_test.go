package billingstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
)

// A store without a provider erases a copy of the database locally, keeps
// the provider reference for the store that has the client, and succeeds.
func TestPurgeWithoutProvider(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := WithClock(at(t, "2026-06-15T10:00:00Z"))
	dsn := migratedDatabase(t)
	seeder := openStore(t, dsn, clock)
	victim, other := account(t, 1), account(t, 2)
	seed(t, seeder, victim, SeedOptions{Invoices: 6, StartYear: 2014, Seed: 1})
	seed(t, seeder, other, SeedOptions{Invoices: 2, StartYear: 2025, Seed: 2})
	originals := personalValues(t, seeder, victim)
	var ref string
	if err := seeder.pool.QueryRow(ctx, `SELECT provider_customer_id FROM customers WHERE account_id = $1`, victim).Scan(&ref); err != nil {
		t.Fatal(err)
	}
	otherBefore := slices.Sorted(slices.Values(dump(t, seeder, other)))

	s := openStore(t, dsn, WithoutProvider(), clock)
	res, err := purge(ctx, s, victim)
	if err != nil {
		t.Fatalf("Purge = %v, want success without a provider client", err)
	}
	if res.ItemsPurged < 2 {
		t.Errorf("Purge changed %d rows, want the customer and the invoices", res.ItemsPurged)
	}
	fp := footprint(t, s, victim)
	if fp.Detail[KindCustomerFields] != 0 || fp.Detail[KindInvoicePersonalFields] != 0 {
		t.Errorf("footprint = %v, want no personal fields left", fp.Detail)
	}
	if fp.Detail[KindProviderCustomer] != 1 || fp.Items != 1 {
		t.Errorf("footprint = %d %v, want the provider reference kept and counted", fp.Items, fp.Detail)
	}
	assertNoneLeft(t, s, victim, slices.DeleteFunc(originals, func(v string) bool { return v == ref }))
	var kept string
	if err := s.pool.QueryRow(ctx, `SELECT provider_customer_id FROM customers WHERE account_id = $1 AND erased_at IS NOT NULL`, victim).Scan(&kept); err != nil || kept != ref {
		t.Errorf("provider reference after the purge: %v (changed: %v), want it kept", err, kept != ref)
	}
	if got := slices.Sorted(slices.Values(dump(t, s, other))); !slices.Equal(got, otherBefore) {
		t.Errorf("the other account changed")
	}

	// Idempotent: nothing left to change.
	if res, err := purge(ctx, s, victim); err != nil || res.ItemsPurged != 0 {
		t.Errorf("second Purge = %d, %v; want 0, nil", res.ItemsPurged, err)
	}
}

func TestWithoutProviderExcludesStripe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, testenv.Postgres(t), WithoutProvider(), WithStripe(stripeClient(t, "http://127.0.0.1:1")))
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Open = %v, want ErrInvalidOption", err)
	}
}
