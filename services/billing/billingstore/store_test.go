package billingstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/pgstore"
	"github.com/lethe-privacy/lethe/lib/testenv"
)

// Connecting and migrating are pgstore's (tested there); these tests check
// the store's own part: its options, and that its database and schema are
// the ones opened and migrated.

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	if err := openStore(t, dsn, WithClock(time.Now)).Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	for i, bad := range []Option{WithStripe(nil), WithClock(nil)} {
		if s, err := Open(ctx, dsn, bad); !errors.Is(err, ErrInvalidOption) {
			if err == nil {
				s.Close()
			}
			t.Errorf("Open with bad option %d: error = %v, want one wrapping ErrInvalidOption", i, err)
		}
	}
	if _, err := Open(ctx, "postgres://%zz"); err == nil || !strings.Contains(err.Error(), "parse billing database dsn") {
		t.Errorf("Open of a malformed DSN = %v, want an error naming the billing database", err)
	}
}

// Migrating again changes nothing; a schema newer than this binary is
// refused.
func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var v int32
	if err := s.pool.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&v); err != nil || v != 1 {
		t.Errorf("schema version = %d, %v; want 1", v, err)
	}
	if _, err := s.Footprint(ctx, []string{"acc-1"}); err != nil {
		t.Errorf("Footprint after migrating: %v", err)
	}
	if _, err := s.pool.Exec(ctx, "UPDATE "+versionTable+" SET version = version + 1"); err != nil {
		t.Fatalf("pretend a newer release migrated: %v", err)
	}
	err := s.Migrate(ctx)
	if !errors.Is(err, pgstore.ErrSchemaNewer) || !strings.HasPrefix(err.Error(), "migrate billing database: ") {
		t.Fatalf("Migrate = %v, want a billing database error wrapping pgstore.ErrSchemaNewer", err)
	}
}

// The schema itself refuses half-erased rows.
func TestSchemaRefusesHalfErasedRows(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `INSERT INTO customers (account_id, name) VALUES ('acc-1', 'Erika Mustermann')`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `
INSERT INTO invoices (number, account_id, issued_on, due_on, currency, net_amount, tax_amount, gross_amount, customer_name)
VALUES ('RE-1', 'acc-1', '2024-01-01', '2024-01-15', 'EUR', 100, 19, 119, 'Erika Mustermann')`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sql  string
	}{
		{name: "erased customer with a name", sql: `UPDATE customers SET erased_at = now()`},
		{name: "provider id without provider", sql: `UPDATE customers SET provider_customer_id = 'cus_1'`},
		{name: "pseudonymised invoice with a name", sql: `UPDATE invoices SET pseudonymised_at = now(), customer_pseudonym = 'psn_x', retain_until = '2032-12-31'`},
		{name: "pseudonymised without pseudonym", sql: `UPDATE invoices SET customer_name = NULL, pseudonymised_at = now(), retain_until = '2032-12-31'`},
		{name: "pseudonymised without retain_until", sql: `UPDATE invoices SET customer_name = NULL, pseudonymised_at = now(), customer_pseudonym = 'psn_x'`},
		{name: "amounts not adding up", sql: `UPDATE invoices SET gross_amount = 120`},
		{name: "currency not ISO", sql: `UPDATE invoices SET currency = 'euro'`},
		{name: "invoice of no customer", sql: `UPDATE invoices SET account_id = 'acc-2'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.pool.Exec(ctx, tt.sql); err == nil {
				t.Errorf("%s: accepted", tt.sql)
			}
		})
	}
}
