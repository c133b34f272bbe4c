package backupstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/testenv"
)

// restoredEnv is a restore target: new, empty databases and a log
// directory that does not exist yet.
type restoredEnv struct {
	contactsDSN string
	billingDSN  string
	logsDir     string
}

func newRestoredEnv(t testing.TB, withBilling bool) *restoredEnv {
	t.Helper()
	r := &restoredEnv{contactsDSN: testenv.Postgres(t), logsDir: filepath.Join(t.TempDir(), "restored-logs")}
	if withBilling {
		r.billingDSN = testenv.Postgres(t)
	}
	return r
}

func (r *restoredEnv) target() RestoreTarget {
	dbs := map[string]string{"contacts": r.contactsDSN}
	if r.billingDSN != "" {
		dbs["billing"] = r.billingDSN
	}
	return RestoreTarget{
		Databases:    dbs,
		LogsDir:      r.logsDir,
		LogsAccounts: func(_ context.Context, dir string) ([]string, error) { return logAccounts(dir) },
	}
}

// reapplier erases from the restored copies, as erasectl wires the
// contacts, billing and logs purges; it records what it was asked.
func (r *restoredEnv) reapplier(t testing.TB) (Reapplier, func() []string) {
	var mu sync.Mutex
	var got []string
	return ReapplierFunc(func(_ context.Context, accounts []string) error {
			mu.Lock()
			got = append(got, accounts...)
			mu.Unlock()
			eraseDatabases(t, r.contactsDSN, r.billingDSN, accounts)
			return eraseLogs(r.logsDir, accounts)
		}), func() []string {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(got)
		}
}

func restore(t testing.TB, s *Store, id string, target RestoreTarget, l SuppressionList, re Reapplier) (RestoreResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Restore(ctx, id, target, l, re)
}

// The whole life of an erasure in the backups: a snapshot holds A, B and
// C; B is erased (ledger entry, then the other workers delete its rows);
// restoring the old snapshot brings B back only until the restore
// re-applies the ledger, which happens before it reports success.
func TestRestoreReappliesErasures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t, "acc-a", "acc-b", "acc-c")
	s := newTestStore(t)
	l := newTestLedger(t)

	before := take(t, s, src.source())
	if want := []string{"acc-a", "acc-b", "acc-c"}; !slices.Equal(before.Accounts, want) {
		t.Fatalf("snapshot accounts = %v, want %v", before.Accounts, want)
	}
	if len(before.Databases) != 2 || before.Logs == nil || before.Logs.Files != 2 {
		t.Fatalf("snapshot parts = %+v logs %+v, want 2 databases and 2 log files", before.Databases, before.Logs)
	}

	if added, err := l.Suppress(ctx, "acc-b", "job-1"); err != nil || !added {
		t.Fatalf("Suppress = %v, %v; want added", added, err)
	}
	src.erase(t, "acc-b")
	after := take(t, s, src.source())
	if want := []string{"acc-a", "acc-c"}; !slices.Equal(after.Accounts, want) {
		t.Errorf("snapshot after the erasure holds %v, want %v", after.Accounts, want)
	}

	r := newRestoredEnv(t, true)
	re, asked := r.reapplier(t)
	res, err := restore(t, s, before.ID, r.target(), l, re)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !slices.Equal(asked(), []string{"acc-b"}) || !slices.Equal(res.Reapplied, []string{"acc-b"}) {
		t.Errorf("re-applied %v (result %v), want [acc-b]", asked(), res.Reapplied)
	}
	if !slices.Equal(res.Databases, []string{"billing", "contacts"}) || res.LogFiles != 2 {
		t.Errorf("restored %v and %d log files, want billing, contacts and 2", res.Databases, res.LogFiles)
	}
	for _, tt := range []struct {
		dsn, table string
		want       int // rows per kept account
		retained   int // rows of the erased account kept without personal data
	}{
		{dsn: r.contactsDSN, table: "contacts", want: 3},
		{dsn: r.contactsDSN, table: "contact_properties", want: 6},
		{dsn: r.billingDSN, table: "customers", want: 1, retained: 1},
		{dsn: r.billingDSN, table: "invoices", want: 2, retained: 2},
	} {
		if n := count(t, tt.dsn, tt.table, "acc-b", true); n != 0 {
			t.Errorf("restored %s holds %d rows with personal data of the erased account", tt.table, n)
		}
		if n := count(t, tt.dsn, tt.table, "acc-b", false); n != tt.retained {
			t.Errorf("restored %s holds %d rows of the erased account, want %d retained", tt.table, n, tt.retained)
		}
		for _, kept := range []string{"acc-a", "acc-c"} {
			if n := count(t, tt.dsn, tt.table, kept, true); n != tt.want {
				t.Errorf("restored %s holds %d rows of %s, want %d", tt.table, n, kept, tt.want)
			}
		}
	}
	left, err := logAccounts(r.logsDir)
	if err != nil || !slices.Equal(left, []string{"acc-a", "acc-c"}) {
		t.Errorf("restored logs hold %v (%v), want acc-a and acc-c", left, err)
	}
}

// An account erased before a snapshot was taken can still be in it (its
// other purges had not run yet): the restore re-applies it because the
// snapshot holds it, however old the ledger entry.
func TestRestoreReappliesOldEntriesOfHeldAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t, "acc-a", "acc-b")
	s := newTestStore(t)
	l := newTestLedger(t)
	if _, err := l.Suppress(ctx, "acc-b", "job-old"); err != nil {
		t.Fatal(err)
	}
	// An old erasure of an account the snapshot does not hold, and one
	// of acc-b from long before: both older than the margin.
	ledgerExec(t, l, `INSERT INTO restore_ledger VALUES ('acc-gone', 'job-0', now() - interval '30 days')`)
	ledgerExec(t, l, `UPDATE restore_ledger SET erased_at = now() - interval '20 days' WHERE account_id = 'acc-b'`)
	snap := take(t, s, src.source()) // acc-b not yet purged: still in the snapshot

	r := newRestoredEnv(t, true)
	re, _ := r.reapplier(t)
	res, err := restore(t, s, snap.ID, r.target(), l, re)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !slices.Equal(res.Reapplied, []string{"acc-b"}) {
		t.Errorf("re-applied %v, want [acc-b]", res.Reapplied)
	}
	if n := count(t, r.contactsDSN, "contacts", "acc-b", true); n != 0 {
		t.Errorf("restored contacts hold %d rows of acc-b", n)
	}
}

func TestRestoreFailsUnlessReapplyErasesEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t, "acc-a", "acc-b")
	s := newTestStore(t)
	l := newTestLedger(t)
	snap := take(t, s, src.source())
	if _, err := l.Suppress(ctx, "acc-b", "job-1"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		reapply func(r *restoredEnv) Reapplier
		wantIs  error
	}{
		{
			name: "reapplier fails",
			reapply: func(*restoredEnv) Reapplier {
				return ReapplierFunc(func(context.Context, []string) error { return errors.New("contacts store unreachable") })
			},
			wantIs: ErrReapplyFailed,
		},
		{
			name: "reapplier reports success but erases nothing",
			reapply: func(*restoredEnv) Reapplier {
				return ReapplierFunc(func(context.Context, []string) error { return nil })
			},
			wantIs: ErrReapplyIncomplete,
		},
		{
			name: "reapplier misses the logs",
			reapply: func(r *restoredEnv) Reapplier {
				return ReapplierFunc(func(_ context.Context, a []string) error {
					eraseDatabases(t, r.contactsDSN, "", a)
					return nil
				})
			},
			wantIs: ErrReapplyIncomplete,
		},
		{
			name: "ledger unreadable",
			reapply: func(r *restoredEnv) Reapplier {
				re, _ := r.reapplier(t)
				return re
			},
			wantIs: ErrReapplyFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRestoredEnv(t, false)
			var ledger SuppressionList = l
			if tt.name == "ledger unreadable" {
				ledger = failingLedger{}
			}
			_, err := restore(t, s, snap.ID, r.target(), ledger, tt.reapply(r))
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Restore error = %v, want %v", err, tt.wantIs)
			}
			t.Logf("Restore error: %v", err)
			if !strings.Contains(err.Error(), "MUST NOT be used") || !strings.Contains(err.Error(), "drop them") {
				t.Errorf("error %q does not say that the restored databases are unusable and what to do", err)
			}
			if strings.Contains(err.Error(), "@") {
				t.Errorf("error %q may quote personal data", err)
			}
			if entries, _ := os.ReadDir(r.logsDir); len(entries) != 0 {
				t.Errorf("restored log directory still holds %d entries after the failure", len(entries))
			}
		})
	}
}

type failingLedger struct{}

func (failingLedger) Suppressed(context.Context, time.Time, []string) ([]string, error) {
	return nil, errors.New("backups database unreachable")
}

// Before anything is restored, the target and the snapshot's files are
// checked; nothing is written when they are unusable.
func TestRestoreRefusesBadTargetsAndDamagedFiles(t *testing.T) {
	t.Parallel()
	src := newSource(t, "acc-a")
	s := newTestStore(t)
	l := newTestLedger(t)
	snap := take(t, s, src.source())
	fresh := testenv.Postgres(t)
	noop := ReapplierFunc(func(context.Context, []string) error { return nil })
	nonEmptyLogs := t.TempDir()
	writeFile(t, filepath.Join(nonEmptyLogs, "x"), "")

	tests := []struct {
		name   string
		id     string
		target RestoreTarget
		damage bool
		wantIs error
	}{
		{name: "unknown snapshot", id: "20200101T000000Z-00000000", target: RestoreTarget{Databases: map[string]string{"contacts": fresh}}, wantIs: ErrSnapshotNotFound},
		{name: "not a snapshot id", id: "../../etc", target: RestoreTarget{Databases: map[string]string{"contacts": fresh}}, wantIs: ErrSnapshotNotFound},
		{name: "nothing to restore", id: snap.ID, wantIs: ErrInvalidTarget},
		{name: "database not in snapshot", id: snap.ID, target: RestoreTarget{Databases: map[string]string{"orders": fresh}}, wantIs: ErrInvalidTarget},
		{name: "log directory not empty", id: snap.ID, target: RestoreTarget{LogsDir: nonEmptyLogs}, wantIs: ErrInvalidTarget},
		{name: "target database not empty", id: snap.ID, target: RestoreTarget{Databases: map[string]string{"contacts": src.contactsDSN}}, wantIs: ErrTargetNotEmpty},
		{name: "damaged dump", id: snap.ID, target: RestoreTarget{Databases: map[string]string{"contacts": fresh}}, damage: true, wantIs: ErrDamagedSnapshot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.damage {
				path := filepath.Join(s.dataDir(snap.ID), "contacts.dump")
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				orig := slices.Clone(data)
				data[len(data)/2] ^= 0xff
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.WriteFile(path, orig, 0o600) })
			}
			_, err := restore(t, s, tt.id, tt.target, l, noop)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Restore error = %v, want %v", err, tt.wantIs)
			}
			if n := countRelations(t, fresh); n != 0 {
				t.Errorf("fresh target has %d relations after a refused restore", n)
			}
		})
	}
}

func countRelations(t testing.TB, dsn string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(ctx, conn)
	var n int64
	if err := conn.QueryRow(ctx, userRelationsSQL).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
