package contactstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/testenv"
)

// openStore opens a store on dsn and closes it when the test ends.
func openStore(t testing.TB, dsn string, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// newStore gives the test a migrated store on a database of its own.
func newStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s := openStore(t, testenv.Postgres(t), opts...)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

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
		{name: "valid", dsn: dsn, opts: []Option{WithBatchSize(7)}},
		{name: "zero batch size", dsn: dsn, opts: []Option{WithBatchSize(0)}, wantIs: ErrInvalidOption},
		{name: "negative batch size", dsn: dsn, opts: []Option{WithBatchSize(-1)}, wantIs: ErrInvalidOption},
		{name: "malformed dsn", dsn: "postgres://%zz", wantText: "parse contacts database dsn"},
		{
			name: "unreachable", dsn: "postgres://lethe:s3cret@127.0.0.1:1/contacts?connect_timeout=2",
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
	s := newStore(t) // first migration
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

// Replicas of the worker start together and all migrate: tern's advisory
// lock must let exactly one apply the schema while the others wait and then
// find nothing to do.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	const replicas = 6
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openStore(t, dsn)
	}
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(context.Background())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Migrate: %v", i, err)
		}
	}
	var rows int
	if err := stores[0].pool.QueryRow(context.Background(), "SELECT count(*) FROM "+versionTable).Scan(&rows); err != nil {
		t.Fatalf("count version rows: %v", err)
	}
	if rows != 1 {
		t.Errorf("version table has %d rows, want 1", rows)
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
	if _, err := s.Footprint(context.Background(), []string{"acc-1"}); err != nil {
		t.Errorf("tables gone after refused migration: %v", err)
	}
}
