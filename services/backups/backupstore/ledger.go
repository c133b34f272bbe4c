package backupstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-privacy/lethe/lib/pgstore"
)

// versionTable records the ledger's schema version. It is not schema
// qualified so that an operator can place the ledger in a schema of their
// choice with search_path in the DSN.
const versionTable = "backupstore_schema_version"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Ledger is the restore ledger in the backups database: the accounts whose
// erasure every restore must re-apply. It is safe for concurrent use, also
// by several worker replicas on the same database.
type Ledger struct {
	pool *pgxpool.Pool
}

// LedgerEntry is one erasure in the ledger.
type LedgerEntry struct {
	AccountID string
	JobID     string
	// ErasedAt is when the entry was first written, by the database's
	// clock.
	ErasedAt time.Time
}

// SuppressionList is the part of the ledger a restore reads.
type SuppressionList interface {
	// Suppressed returns, sorted and distinct, the accounts with an entry
	// written at or after since, and those of held with any entry.
	Suppressed(ctx context.Context, since time.Time, held []string) ([]string, error)
}

var _ SuppressionList = (*Ledger)(nil)

// OpenLedger connects to the backups database at dsn (a PostgreSQL URL or
// key=value string) and checks that it answers. It does not migrate: call
// Migrate. The error says what to check when the database is unreachable.
func OpenLedger(ctx context.Context, dsn string) (*Ledger, error) {
	pool, err := pgstore.Open(ctx, dsn, "backups")
	if err != nil {
		return nil, err
	}
	return &Ledger{pool: pool}, nil
}

// Close closes every connection. Running calls fail once it returns.
func (l *Ledger) Close() { l.pool.Close() }

// Ping checks that the database answers, for readiness probes.
func (l *Ledger) Ping(ctx context.Context) error { return pgstore.Ping(ctx, l.pool, "backups") }

// Migrate brings the ledger's schema up to the newest version this binary
// embeds. It is idempotent and safe when several replicas start at once
// (see pgstore.Migrate). It fails with an error wrapping
// pgstore.ErrSchemaNewer when the database is at a newer version than this
// binary knows.
func (l *Ledger) Migrate(ctx context.Context) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate backups database: open embedded migrations: %w", err)
	}
	if err := pgstore.Migrate(ctx, l.pool, files, versionTable); err != nil {
		return fmt.Errorf("migrate backups database: %w", err)
	}
	return nil
}

// Suppress writes the ledger entry (accountID, jobID) and returns once it
// is committed, which makes the account's data in every backup unusable:
// from then on every Restore re-applies the erasure. It is idempotent per
// (account, job): added is false when the entry was already there, and its
// time is not changed. The error wraps ErrInvalidAccountID for an id that
// cannot be one.
func (l *Ledger) Suppress(ctx context.Context, accountID, jobID string) (added bool, err error) {
	if err := checkAccountID(accountID); err != nil {
		return false, err
	}
	if err := checkID(jobID); err != nil {
		return false, fmt.Errorf("invalid job id: %w", err)
	}
	tag, err := l.pool.Exec(ctx,
		`INSERT INTO restore_ledger (account_id, job_id) VALUES ($1, $2) ON CONFLICT (account_id, job_id) DO NOTHING`,
		accountID, jobID)
	if err != nil {
		return false, fmt.Errorf("write restore ledger entry of account %s: %w", accountID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Entries returns the ledger entries of the accounts, by account and then
// time. Accounts without an entry have none.
func (l *Ledger) Entries(ctx context.Context, accountIDs []string) ([]LedgerEntry, error) {
	if len(accountIDs) == 0 {
		return nil, nil
	}
	rows, err := l.pool.Query(ctx,
		`SELECT account_id, job_id, erased_at FROM restore_ledger WHERE account_id = ANY($1::text[]) ORDER BY account_id, erased_at, job_id`,
		accountIDs)
	if err != nil {
		return nil, fmt.Errorf("read restore ledger of %d accounts: %w", len(accountIDs), err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LedgerEntry, error) {
		var e LedgerEntry
		err := r.Scan(&e.AccountID, &e.JobID, &e.ErasedAt)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read restore ledger of %d accounts: %w", len(accountIDs), err)
	}
	return entries, nil
}

// Suppressed returns, sorted and distinct, every account with an entry
// written at or after since, and every account of held with an entry at
// all. Restore asks with the snapshot's time minus a margin and the
// accounts the snapshot holds: an account erased before the snapshot was
// taken may still be in it when its other purges had not yet run.
func (l *Ledger) Suppressed(ctx context.Context, since time.Time, held []string) ([]string, error) {
	if held == nil {
		held = []string{}
	}
	rows, err := l.pool.Query(ctx,
		`SELECT DISTINCT account_id FROM restore_ledger WHERE erased_at >= $1 OR account_id = ANY($2::text[])`,
		since, held)
	if err != nil {
		return nil, fmt.Errorf("read restore ledger: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read restore ledger: %w", err)
	}
	// Byte order, whatever the database's collation.
	slices.Sort(ids)
	return ids, nil
}
