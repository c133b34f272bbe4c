package backupstore

import (
	"bufio"
	"context"
	"fmt"
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

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestStore opens a store on a temporary backup root.
func newTestStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := New(filepath.Join(t.TempDir(), "backups"), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// newTestLedger gives the test a migrated ledger on a database of its own.
func newTestLedger(t testing.TB) *Ledger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := OpenLedger(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatalf("OpenLedger: %v", err)
	}
	t.Cleanup(l.Close)
	if err := l.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return l
}

// The source databases of the tests: a contacts database, whose erasure
// deletes rows, and a billing database, whose erasure keeps pseudonymised
// rows (tombstones with the account id, but no personal data).
const (
	contactsSchema = `
create table contacts (id bigserial primary key, account_id text not null, email text not null);
create table contact_properties (contact_id bigint not null references contacts (id), account_id text not null, key text not null, value text);`
	billingSchema = `
create table customers (account_id text primary key, name text, vat_id text, erased_at timestamptz);
create table invoices (id bigserial primary key, account_id text not null references customers (account_id),
	amount_cents int not null, customer_name text, pseudonymised_at timestamptz);`
)

var (
	contactsTables = Tables("contacts", "contact_properties")
	billingTables  = []AccountTable{
		{Name: "customers", Where: "erased_at IS NULL"},
		{Name: "invoices", Column: "account_id", Where: "pseudonymised_at IS NULL"},
	}
	// personalRows selects a table's rows with personal data.
	personalRows = map[string]string{
		"contacts":           "true",
		"contact_properties": "true",
		"customers":          "name IS NOT NULL",
		"invoices":           "customer_name IS NOT NULL",
	}
)

func mustExec(t testing.TB, dsn string, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// count returns the rows of table that belong to account; with personal,
// only those with personal data.
func count(t testing.TB, dsn, table, account string, personal bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	cond := "true"
	if personal {
		cond = personalRows[table]
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()+" WHERE account_id = $1 AND "+cond, account).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// sourceEnv is a set of live stores to back up: two databases and a log
// tree, seeded with the same accounts.
type sourceEnv struct {
	contactsDSN string
	billingDSN  string
	logsDir     string
}

func newSource(t testing.TB, accounts ...string) *sourceEnv {
	t.Helper()
	e := &sourceEnv{contactsDSN: testenv.Postgres(t), billingDSN: testenv.Postgres(t), logsDir: filepath.Join(t.TempDir(), "logs")}
	mustExec(t, e.contactsDSN, contactsSchema)
	mustExec(t, e.billingDSN, billingSchema)
	for i, a := range accounts {
		for c := range 3 {
			mustExec(t, e.contactsDSN, `
WITH c AS (INSERT INTO contacts (account_id, email) VALUES ($1, $2) RETURNING id)
INSERT INTO contact_properties (contact_id, account_id, key, value)
SELECT id, $1, k, 'v' FROM c, unnest(array['first_name', 'city']) AS k`, a, fmt.Sprintf("person%d.%d@example.org", i, c))
		}
		mustExec(t, e.billingDSN, `INSERT INTO customers (account_id, name, vat_id) VALUES ($1, $2, 'DE123')`, a, "Firma "+a)
		mustExec(t, e.billingDSN, `INSERT INTO invoices (account_id, amount_cents, customer_name) VALUES ($1, 100, $2), ($1, 250, $2)`, a, "Firma "+a)
	}
	for seg := 1; seg <= 2; seg++ {
		var b strings.Builder
		for _, a := range accounts {
			fmt.Fprintf(&b, "%s\topen subject=Hello %d\n", a, seg)
		}
		writeFile(t, filepath.Join(e.logsDir, "segments", fmt.Sprintf("%06d.log", seg)), b.String())
	}
	return e
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *sourceEnv) source() Source {
	return Source{
		Databases: []Database{
			{Name: "contacts", DSN: e.contactsDSN, Tables: contactsTables},
			{Name: "billing", DSN: e.billingDSN, Tables: billingTables},
		},
		Logs: &LogsSource{Dir: e.logsDir, Accounts: func(context.Context) ([]string, error) { return logAccounts(e.logsDir) }},
	}
}

// erase deletes the account from the live stores, as the contacts, billing
// and logs workers would.
func (e *sourceEnv) erase(t testing.TB, account string) {
	t.Helper()
	eraseDatabases(t, e.contactsDSN, e.billingDSN, []string{account})
	if err := eraseLogs(e.logsDir, []string{account}); err != nil {
		t.Fatal(err)
	}
}

func eraseDatabases(t testing.TB, contactsDSN, billingDSN string, accounts []string) {
	t.Helper()
	if contactsDSN != "" {
		mustExec(t, contactsDSN, `DELETE FROM contact_properties WHERE account_id = ANY($1)`, accounts)
		mustExec(t, contactsDSN, `DELETE FROM contacts WHERE account_id = ANY($1)`, accounts)
	}
	if billingDSN != "" {
		mustExec(t, billingDSN, `UPDATE invoices SET customer_name = NULL, pseudonymised_at = now() WHERE account_id = ANY($1)`, accounts)
		mustExec(t, billingDSN, `UPDATE customers SET name = NULL, vat_id = NULL, erased_at = now() WHERE account_id = ANY($1)`, accounts)
	}
}

// logAccounts lists the accounts of a log tree of "<account>\t<event>"
// lines.
func logAccounts(dir string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if a, _, ok := strings.Cut(sc.Text(), "\t"); ok {
				seen[a] = true
			}
		}
		return sc.Err()
	})
	var out []string
	for a := range seen {
		out = append(out, a)
	}
	slices.Sort(out)
	return out, err
}

// eraseLogs rewrites every log file without the accounts' lines.
func eraseLogs(dir string, accounts []string) error {
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var keep strings.Builder
		for line := range strings.Lines(string(data)) {
			a, _, _ := strings.Cut(line, "\t")
			if !slices.Contains(accounts, a) {
				keep.WriteString(line)
			}
		}
		return os.WriteFile(path, []byte(keep.String()), 0o600)
	})
}

// logsOnly is a cheap source for tests that do not need databases: a log
// tree whose lister returns what accounts() says at the time.
func logsOnly(t testing.TB, accounts func() []string) Source {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	writeFile(t, filepath.Join(dir, "000001.log"), "x\tevent\n")
	return Source{Logs: &LogsSource{Dir: dir, Accounts: func(context.Context) ([]string, error) { return accounts(), nil }}}
}

func take(t testing.TB, s *Store, src Source) Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := s.TakeSnapshot(ctx, src)
	if err != nil {
		t.Fatalf("TakeSnapshot: %v", err)
	}
	return snap
}

func ids(snaps []Snapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = s.ID
	}
	return out
}

func ledgerExec(t testing.TB, l *Ledger, sql string, args ...any) {
	t.Helper()
	if _, err := l.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", firstLine(sql), err)
	}
}
