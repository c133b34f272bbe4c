package contactstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/pgstore"
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

// Connecting and migrating are pgstore's (tested there); these tests check
// the store's own part: its options, and that its database and schema are
// the ones opened and migrated.

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	if err := openStore(t, dsn, WithBatchSize(7)).Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	for i, bad := range []Option{WithBatchSize(0), WithBatchSize(-1)} {
		if s, err := Open(ctx, dsn, bad); !errors.Is(err, ErrInvalidOption) {
			if err == nil {
				s.Close()
			}
			t.Errorf("Open with bad option %d: error = %v, want one wrapping ErrInvalidOption", i, err)
		}
	}
	if _, err := Open(ctx, "postgres://%zz"); err == nil || !strings.Contains(err.Error(), "parse contacts database dsn") {
		t.Errorf("Open of a malformed DSN = %v, want an error naming the contacts database", err)
	}
}

// Migrating again changes nothing; a schema newer than this binary is
// refused and left as it is.
func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t) // first migration
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
	if !errors.Is(err, pgstore.ErrSchemaNewer) || !strings.HasPrefix(err.Error(), "migrate contacts database: ") {
		t.Fatalf("Migrate = %v, want a contacts database error wrapping pgstore.ErrSchemaNewer", err)
	}
	if _, err := s.Footprint(ctx, []string{"acc-1"}); err != nil {
		t.Errorf("tables gone after refused migration: %v", err)
	}
}
