// Package contactstore is the PostgreSQL store of the contacts that the
// customers of the e-mail platform keep: the people they mail to, their
// lists and properties. It exists so that the contacts purge worker can
// erase one account's contacts completely, in small batches that never lock
// the tables for long, and can prove afterwards that nothing is left.
//
// Store implements worker.Purger. It also owns the schema (Migrate) and can
// fill an account with realistic demo data (Seed) for demos and load tests.
//
// Contacts are personal data: no e-mail address or name ever appears in an
// error this package returns.
package contactstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-privacy/lethe/lib/pgstore"
	"github.com/lethe-privacy/lethe/lib/worker"
)

// DefaultBatchSize is how many contacts (with their properties and
// memberships) or lists one purge transaction deletes at most unless
// WithBatchSize says otherwise. At this size a batch takes a few hundred
// milliseconds at most, mostly the contacts' foreign-key checks, short
// enough that row locks are held only briefly and the runtime's heartbeats
// and cancellation are never kept waiting.
const DefaultBatchSize = 5000

// versionTable records the applied schema version. It is not schema
// qualified so that an operator can place the store in a schema of their
// choice with search_path in the DSN; our migrations never change
// search_path, which is why tern recommends qualifying it.
const versionTable = "contactstore_schema_version"

//go:embed migrations/*.sql
var migrationFiles embed.FS

var _ worker.Purger = (*Store)(nil)

// Store is the contacts database. It is safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	batchSize int
	// afterBatch, when set, is called after every purge batch. Tests use it
	// to cancel a purge half-way at a known point.
	afterBatch func(table string, deleted int64)
}

type options struct {
	batchSize int
}

// Option configures a Store. Options validate their arguments: Open returns
// an error wrapping ErrInvalidOption for a bad one.
type Option func(*options) error

// WithBatchSize sets the most contacts (with their properties and
// memberships) or lists one purge transaction deletes (default
// DefaultBatchSize). Smaller batches hold locks for less time and react
// faster to cancellation; larger ones need fewer round trips.
func WithBatchSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: batch size %d must be at least 1", ErrInvalidOption, n)
		}
		o.batchSize = n
		return nil
	}
}

// Open connects to the contacts database at dsn (a PostgreSQL URL or
// key=value string; pool settings such as pool_max_conns go there too) and
// checks that it answers. It does not migrate: call Migrate.
//
// The error says what to check when the database is unreachable. It wraps
// ErrInvalidOption when an option is invalid.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{batchSize: DefaultBatchSize}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	pool, err := pgstore.Open(ctx, dsn, "contacts")
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool, batchSize: o.batchSize}, nil
}

// Close closes every connection. Running calls fail once it returns.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error { return pgstore.Ping(ctx, s.pool, "contacts") }

// Migrate brings the schema up to the newest version this binary embeds. It
// is idempotent, and safe when several replicas start at once (see
// pgstore.Migrate).
//
// It fails with an error wrapping pgstore.ErrSchemaNewer when the database
// is at a newer version than this binary knows (a newer release migrated
// it): this binary must not run against it.
func (s *Store) Migrate(ctx context.Context) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate contacts database: open embedded migrations: %w", err)
	}
	if err := pgstore.Migrate(ctx, s.pool, files, versionTable); err != nil {
		return fmt.Errorf("migrate contacts database: %w", err)
	}
	return nil
}
