package billingstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	tests := []struct {
		name     string
		dsn      string
		opts     []Option
		wantIs   error
		wantText string
	}{
		{name: "valid", dsn: dsn, opts: []Option{WithClock(time.Now)}},
		{name: "nil provider", dsn: dsn, opts: []Option{WithStripe(nil)}, wantIs: ErrInvalidOption},
		{name: "nil clock", dsn: dsn, opts: []Option{WithClock(nil)}, wantIs: ErrInvalidOption},
		{name: "malformed dsn", dsn: "postgres://%zz", wantText: "parse billing database dsn"},
		{
			name: "unreachable", dsn: "postgres://lethe:s3cret@127.0.0.1:1/billing?connect_timeout=2",
			wantText: "check that PostgreSQL is running",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Open(ctx, tt.dsn, tt.opts...)
			if tt.wantIs == nil && tt.wantText == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer s.Close()
				if err := s.Ping(ctx); err != nil {
					t.Fatalf("Ping: %v", err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Open error = %v, want one wrapping %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Open error = %q, want it to contain %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Open error %q reveals the password", err)
			}
		})
	}
}

func schemaVersion(t *testing.T, s *Store) int32 {
	t.Helper()
	var v int32
	if err := s.pool.QueryRow(context.Background(), "SELECT version FROM "+versionTable).Scan(&v); err != nil {
		t.Fatalf("read schema version: %v", err)
	}
	return v
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if v := schemaVersion(t, s); v != 1 {
		t.Errorf("schema version = %d, want 1", v)
	}
	if _, err := s.Footprint(context.Background(), []string{"acc-1"}); err != nil {
		t.Errorf("Footprint after migrating: %v", err)
	}
}

// Replicas start together and all migrate: tern's advisory lock lets one
// apply the schema while the others wait and find nothing to do.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	const replicas = 4
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openStore(t, dsn)
	}
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(context.Background()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Migrate: %v", i, err)
		}
	}
	if v := schemaVersion(t, stores[0]); v != 1 {
		t.Errorf("schema version = %d, want 1", v)
	}
}

// A binary must refuse a schema newer than it knows instead of migrating it
// down, which would drop the tables.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if _, err := s.pool.Exec(context.Background(), "UPDATE "+versionTable+" SET version = 2"); err != nil {
		t.Fatalf("pretend a newer release migrated: %v", err)
	}
	err := s.Migrate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "deploy the newer release") {
		t.Fatalf("Migrate = %v, want an error about the newer schema", err)
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
