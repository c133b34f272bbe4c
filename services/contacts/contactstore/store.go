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
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// DefaultBatchSize is how many rows one purge statement deletes at most
// unless WithBatchSize says otherwise. At this size a batch takes a few
// milliseconds, short enough that row locks are held only briefly and the
// runtime's heartbeats and cancellation are never kept waiting.
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

// WithBatchSize sets the most rows one purge statement deletes (default
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
	// pgconn redacts the password in its parse errors.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse contacts database dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create contacts database pool: %w", err)
	}
	// The pool connects lazily; ping now so that a wrong DSN fails at start-up
	// with advice, not at the first purge.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		// pgconn's error names host, port, user and database already.
		return nil, fmt.Errorf("reach contacts database: %w (check that PostgreSQL is running and "+
			"reachable from here, and that host, port, user, password and database in the DSN are right)", err)
	}
	return &Store{pool: pool, batchSize: o.batchSize}, nil
}

// Close closes every connection. Running calls fail once it returns.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping contacts database: %w", err)
	}
	return nil
}

// Migrate brings the schema up to the newest version this binary embeds. It
// is idempotent, and safe when several replicas start at once: tern holds a
// PostgreSQL session advisory lock (pg_advisory_lock) while it reads the
// current version and applies what is missing, so the others wait and then
// find nothing to do. Each migration runs in its own transaction.
//
// It fails when the database is at a newer version than this binary knows
// (a newer release migrated it): this binary must not run against it.
func (s *Store) Migrate(ctx context.Context) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate contacts database: acquire connection: %w", err)
	}
	// Take the connection out of the pool and close it afterwards: the
	// advisory lock belongs to the session, and if tern cannot release it
	// (ctx cancelled while it waits) only closing the session does. A pooled
	// connection would keep the lock and block every later migration.
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()

	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return fmt.Errorf("migrate contacts database: create version table: %w", err)
	}
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate contacts database: open embedded migrations: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return fmt.Errorf("migrate contacts database: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		var bad migrate.BadVersionError
		if errors.As(err, &bad) {
			return fmt.Errorf("migrate contacts database: %w (the schema is newer than this binary: deploy the newer release)", err)
		}
		return fmt.Errorf("migrate contacts database: %w", err)
	}
	return nil
}
