package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/services/backups/backupstore"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// migrateLedger migrates the restore ledger, as the backups worker does at
// start.
func migrateLedger(t *testing.T, dsn string) *backupstore.Ledger {
	t.Helper()
	l, err := backupstore.OpenLedger(t.Context(), dsn)
	if err != nil {
		t.Fatalf("open ledger: %v", err)
	}
	t.Cleanup(l.Close)
	if err := l.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate ledger: %v", err)
	}
	return l
}

// eraseLive erases an account from the live stores as the workers do: the
// ledger entry (backups), then the contacts, logs and billing purges.
func eraseLive(t *testing.T, env map[string]string, ledger *backupstore.Ledger, id string) {
	t.Helper()
	ctx := t.Context()
	if _, err := ledger.Suppress(ctx, id, "job-"+id); err != nil {
		t.Fatalf("suppress: %v", err)
	}
	cs, err := contactstore.Open(ctx, env[EnvContactsDSN])
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.Purge(ctx, task("contacts", contactstore.ActionDelete, id)); err != nil {
		t.Fatalf("purge contacts: %v", err)
	}
	ls, err := logstore.Open(ctx, env[EnvLogsRoot])
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	if _, err := ls.Purge(ctx, task("logs", logstore.ActionDelete, id)); err != nil {
		t.Fatalf("purge logs: %v", err)
	}
	bs, err := billingstore.Open(ctx, env[EnvBillingDSN], billingstore.WithStripe(fakeProvider{}))
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	if _, err := bs.Purge(ctx, task("billing", billingstore.ActionPseudonymise, id)); err != nil {
		t.Fatalf("purge billing: %v", err)
	}
}

// restoredName is the database name --target-suffix makes of a DSN's.
func restoredName(t *testing.T, dsn, suffix string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/") + "_restore_" + suffix
}

// withDatabase is dsn with another database name.
func withDatabase(t *testing.T, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// dropAfter drops the database name on dsn's server when the test ends, in
// case a restore created it.
func dropAfter(t *testing.T, dsn, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, dsn, name); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
}

func databaseExists(t *testing.T, dsn, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

type snapshotList struct {
	Snapshots []snapshotJSON `json:"snapshots"`
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("stdout is not the JSON expected: %v\n%s", err, s)
	}
	return v
}

// The life of an erasure in the backups, through erasectl: a snapshot
// holds two accounts; one is erased (ledger entry and the stores' purges,
// as the workers do); restoring the old snapshot brings back everything of
// the other account and nothing personal of the erased one, because the
// restore re-applies the erasure with the stores' real purges.
func TestBackupsTakeEraseRestore(t *testing.T) {
	env := storesEnv(t)
	ledger := migrateLedger(t, env[EnvBackupsDSN])
	if r := runCLI(t, env, append([]string{"seed", "demo-0001", "demo-0002"}, smallSeed...)...); r.code != ExitOK {
		t.Fatalf("seed: exit %d, stderr:\n%s", r.code, r.stderr)
	}

	r := runCLI(t, env, "backups", "take", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("take: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	before := decode[snapshotJSON](t, r.stdout)
	if *before.Accounts != 2 || len(before.Databases) != 2 || before.Logs == nil || before.Logs.Files == 0 || before.State != stateOK {
		t.Fatalf("first snapshot = %+v, want 2 accounts, 2 databases and the logs", before)
	}
	if !strings.Contains(r.stderr, "taking a snapshot of the contacts and billing databases") || !strings.Contains(r.stderr, "snapshot "+before.ID+" taken in") {
		t.Errorf("take progress:\n%s", r.stderr)
	}

	eraseLive(t, env, ledger, "demo-0002")
	r = runCLI(t, env, "backups", "take")
	if r.code != ExitOK {
		t.Fatalf("second take: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// The billing tombstone and pseudonymised invoices are not personal
	// data: the new snapshot does not hold the erased account.
	for _, w := range []string{"snapshot:   ", "databases:  contacts ", ", billing ", "logs:       ", "accounts:   1\n"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("take output lacks %q:\n%s", w, r.stdout)
		}
	}

	// What the live stores hold now, to compare the restored copies with.
	liveContacts := countRows(t, env[EnvContactsDSN], "demo-0001")
	liveLogs := logFootprint(t, env[EnvLogsRoot], "demo-0001")
	liveBilling := map[string]map[string]int64{
		"demo-0001": billingFootprint(t, env[EnvBillingDSN], "demo-0001"),
		"demo-0002": billingFootprint(t, env[EnvBillingDSN], "demo-0002"),
	}
	if liveBilling["demo-0002"][billingstore.KindProviderCustomer] != 0 {
		t.Fatalf("live billing after the erasure = %v", liveBilling["demo-0002"])
	}

	t.Run("restore into new targets", func(t *testing.T) {
		contactsDB := restoredName(t, env[EnvContactsDSN], "t1")
		billingDB := restoredName(t, env[EnvBillingDSN], "t1")
		dropAfter(t, env[EnvContactsDSN], contactsDB)
		dropAfter(t, env[EnvBillingDSN], billingDB)
		r := runCLI(t, env, "backups", "restore", before.ID, "--target-suffix", "t1")
		if r.code != ExitOK {
			t.Fatalf("restore: exit %d, stderr:\n%s", r.code, r.stderr)
		}
		logsDir := env[EnvLogsRoot] + "_restore_t1"
		for _, w := range []string{
			"created database " + contactsDB + ", database " + billingDB + ", directory " + logsDir,
			"restoring snapshot " + before.ID,
			"re-applying the erasures of 1 account to the restored data",
		} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
			}
		}
		for _, w := range []string{
			"contacts:    restored into postgres://", "/" + contactsDB,
			"logs:        " + "", " files restored into " + logsDir,
			"re-applied:  1 account: demo-0002\n",
			"ACCOUNT    CONTACTS  BILLING  LOGS\ndemo-0002  ",
			"keeps the payment provider's customer id of 1 account (footprint provider_customer)",
		} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
			}
		}
		checkRestored(t, withDatabase(t, env[EnvContactsDSN], contactsDB), withDatabase(t, env[EnvBillingDSN], billingDB), logsDir,
			liveContacts, liveLogs, liveBilling)
	})

	t.Run("restore into named targets, json", func(t *testing.T) {
		contactsDSN, billingDSN := testenv.Postgres(t), testenv.Postgres(t)
		logsDir := filepath.Join(t.TempDir(), "restored-logs")
		r := runCLI(t, env, "backups", "restore", before.ID, "-o", "json",
			"--contacts-target-dsn", contactsDSN, "--billing-target-dsn", billingDSN, "--logs-target-dir", logsDir)
		if r.code != ExitOK {
			t.Fatalf("restore: exit %d, stderr:\n%s", r.code, r.stderr)
		}
		got := decode[restoreJSON](t, r.stdout)
		if got.SnapshotID != before.ID || got.CreatedTargets || !slices.Equal(got.Databases, []string{"billing", "contacts"}) ||
			len(got.Reapplied) != 1 || got.Reapplied[0].AccountID != "demo-0002" || got.ProviderReferencesKept != 1 {
			t.Fatalf("restore = %+v", got)
		}
		items := got.Reapplied[0].Items
		if items["contacts"] == 0 || items["billing"] == 0 || items["logs"] != 60 {
			t.Errorf("re-applied items = %v, want some of each store and the 60 log records", items)
		}
		checkRestored(t, contactsDSN, billingDSN, logsDir, liveContacts, liveLogs, liveBilling)
	})

	t.Run("re-application fails", func(t *testing.T) {
		// A ledger entry no store accepts stands for any failure of a
		// purge: the restore must refuse the data, and remove what it made.
		conn, err := pgx.Connect(t.Context(), env[EnvBackupsDSN])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(t.Context(), `INSERT INTO restore_ledger (account_id, job_id) VALUES ('bad id', 'job-x')`); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(context.Background(), `DELETE FROM restore_ledger WHERE job_id = 'job-x'`)
		contactsDB := restoredName(t, env[EnvContactsDSN], "t2")
		billingDB := restoredName(t, env[EnvBillingDSN], "t2")
		dropAfter(t, env[EnvContactsDSN], contactsDB)
		dropAfter(t, env[EnvBillingDSN], billingDB)

		r := runCLI(t, env, "backups", "restore", before.ID, "--target-suffix", "t2")
		if r.code != ExitRestoreUnusable {
			t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, ExitRestoreUnusable, r.stderr)
		}
		for _, w := range []string{
			"erasectl: restore snapshot " + before.ID + ": re-applying erasures to the restored data failed",
			"restored contacts database",
			"MUST NOT be used",
			"erasectl created database " + contactsDB + ", database " + billingDB + ", directory " + env[EnvLogsRoot] + "_restore_t2 for this restore and removed them again",
		} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
			}
		}
		if r.stdout != "" {
			t.Errorf("stdout = %q, want nothing", r.stdout)
		}
		if databaseExists(t, env[EnvContactsDSN], contactsDB) || databaseExists(t, env[EnvBillingDSN], billingDB) {
			t.Errorf("the databases the failed restore created are still there")
		}
		if _, err := os.Stat(env[EnvLogsRoot] + "_restore_t2"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the log directory the failed restore created: %v", err)
		}
	})

	t.Run("target not empty", func(t *testing.T) {
		r := runCLI(t, env, "backups", "restore", before.ID, "--contacts-target-dsn", env[EnvContactsDSN])
		if r.code != ExitUsage || !strings.Contains(r.stderr, "restore target database is not empty") {
			t.Errorf("exit %d, stderr %q; want %d and not empty", r.code, r.stderr, ExitUsage)
		}
		if r.code == ExitOK {
			t.Fatal("restored over the live database")
		}
	})

	t.Run("unknown snapshot", func(t *testing.T) {
		r := runCLI(t, env, "backups", "restore", "20200101T000000Z-00000000", "--target-suffix", "t3")
		if r.code != ExitNotFound || !strings.Contains(r.stderr, "snapshot not found") || !strings.Contains(r.stderr, "erasectl backups list") {
			t.Errorf("exit %d, stderr %q; want %d", r.code, r.stderr, ExitNotFound)
		}
	})

	t.Run("ledger unreachable", func(t *testing.T) {
		r := runCLI(t, with(env, EnvBackupsDSN, "postgres://lethe:pw-secret@"+freeAddr(t)+"/x?connect_timeout=2"), "backups", "restore", before.ID, "--target-suffix", "t4")
		if r.code != ExitUnavailable || !strings.Contains(r.stderr, "LETHE_BACKUPS_DSN") || strings.Contains(r.stderr, "pw-secret") {
			t.Errorf("exit %d, stderr %q; want %d naming LETHE_BACKUPS_DSN", r.code, r.stderr, ExitUnavailable)
		}
		if _, err := os.Stat(env[EnvLogsRoot] + "_restore_t4"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("restore created targets although the ledger is unreachable")
		}
	})
}

// checkRestored compares restored copies with the live stores after the
// erasure of demo-0002: demo-0001 whole, nothing personal of demo-0002.
func checkRestored(t *testing.T, contactsDSN, billingDSN, logsDir string, liveContacts seedCounts, liveLogs map[string]int64, liveBilling map[string]map[string]int64) {
	t.Helper()
	if got := countRows(t, contactsDSN, "demo-0001"); !reflect.DeepEqual(got, liveContacts) {
		t.Errorf("restored contacts of demo-0001 = %v, want %v", got, liveContacts)
	}
	if got := countRows(t, contactsDSN, "demo-0002"); !reflect.DeepEqual(got, seedCounts{"lists": 0, "contacts": 0, "members": 0, "properties": 0}) {
		t.Errorf("restored contacts of the erased account = %v, want none", got)
	}
	logs := logFootprint(t, logsDir, "demo-0001", "demo-0002")
	if logs["demo-0001"] != liveLogs["demo-0001"] || logs["demo-0001"] != 60 || logs["demo-0002"] != 0 {
		t.Errorf("restored log records = %v, want demo-0001's %d and none of demo-0002", logs, liveLogs["demo-0001"])
	}
	if got := billingFootprint(t, billingDSN, "demo-0001"); !reflect.DeepEqual(got, liveBilling["demo-0001"]) {
		t.Errorf("restored billing of demo-0001 = %v, want %v", got, liveBilling["demo-0001"])
	}
	// The erased account: no personal field, the same invoices retained as
	// live, and the provider reference kept for the live worker's.
	got := billingFootprint(t, billingDSN, "demo-0002")
	live := liveBilling["demo-0002"]
	if got[billingstore.KindCustomerFields] != 0 || got[billingstore.KindInvoicePersonalFields] != 0 ||
		got[billingstore.KindInvoicesRetained] != live[billingstore.KindInvoicesRetained] || got[billingstore.KindProviderCustomer] != 1 {
		t.Errorf("restored billing of the erased account = %v, live %v", got, live)
	}
}

// list shows snapshots and what else is in the root; rotate deletes what
// the retention lets go.
func TestBackupsListRotate(t *testing.T) {
	env := storesEnv(t)
	if r := runCLI(t, env, append([]string{"seed", "demo-0001"}, smallSeed...)...); r.code != ExitOK {
		t.Fatalf("seed: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := runCLI(t, env, "backups", "list"); r.code != ExitOK || r.stdout != "ID  CREATED  EXPIRES  ACCOUNTS  SIZE  STATE\n" || !strings.Contains(r.stderr, "no snapshots in") {
		t.Errorf("empty list: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var ids []string
	for range 2 {
		r := runCLI(t, env, "backups", "take", "-o", "json")
		if r.code != ExitOK {
			t.Fatalf("take: exit %d, stderr:\n%s", r.code, r.stderr)
		}
		ids = append(ids, decode[snapshotJSON](t, r.stdout).ID)
	}
	slices.Sort(ids) // two takes in one second sort by their random part
	// An abandoned take and a damaged catalog entry, both from 2020.
	root := env[EnvBackupRoot]
	if err := os.Mkdir(filepath.Join(root, "snapshots", "20200101T000000Z-0000000a"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "catalog", "20200102T000000Z-0000000b.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, env, "backups", "list")
	if r.code != ExitOK {
		t.Fatalf("list: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasSuffix(lines[0], "STATE") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	for i, want := range []struct{ id, state string }{
		{"20200101T000000Z-0000000a", "incomplete"}, {"20200102T000000Z-0000000b", "damaged"}, {ids[0], "ok"}, {ids[1], "ok"},
	} {
		f := strings.Fields(lines[i+1])
		if f[0] != want.id || f[len(f)-1] != want.state {
			t.Errorf("row %d = %q, want %s %s", i, lines[i+1], want.id, want.state)
		}
	}
	if f := strings.Fields(lines[3]); f[3] != "1" || (f[5] != "kB" && f[5] != "MB") {
		t.Errorf("snapshot row = %q, want 1 account and its size", lines[3])
	}
	if !strings.Contains(r.stderr, "1 damaged catalog entries") {
		t.Errorf("stderr = %q", r.stderr)
	}
	list := decode[snapshotList](t, runCLI(t, env, "backups", "list", "-o", "json").stdout)
	if len(list.Snapshots) != 4 || list.Snapshots[2].ID != ids[0] || *list.Snapshots[2].Accounts != 1 || list.Snapshots[2].SizeBytes == 0 ||
		!list.Snapshots[2].ExpiresAt.Equal(list.Snapshots[2].CreatedAt.Add(35*24*time.Hour)) {
		t.Errorf("list json = %+v", list.Snapshots)
	}

	// The default retention keeps both snapshots; what 2020 left goes.
	r = runCLI(t, env, "backups", "rotate")
	if r.code != ExitOK {
		t.Fatalf("rotate: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, w := range []string{
		"20200102T000000Z-0000000b  2020-01-02T00:00:00Z  deleted: expired 2020-02-06T00:00:00Z\n",
		"20200101T000000Z-0000000a  2020-01-01T00:00:00Z  removed: incomplete, abandoned\n",
		ids[0] + "  ", "kept until ",
		"deleted 1, removed 1 abandoned, kept 2 (retention 35d)\n",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("rotate output lacks %q:\n%s", w, r.stdout)
		}
	}

	// A short retention lets both go.
	time.Sleep(1100 * time.Millisecond) // snapshot times are whole seconds
	short := with(env, EnvBackupRetention, "1s")
	if r := runCLI(t, short, "backups", "list"); !strings.Contains(r.stdout, "  expired\n") {
		t.Errorf("list with a short retention:\n%s", r.stdout)
	}
	r = runCLI(t, short, "backups", "rotate", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("rotate: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	type rotated struct {
		Retention string   `json:"retention"`
		Deleted   []string `json:"deleted"`
		Abandoned []string `json:"abandoned"`
		Kept      []string `json:"kept"`
		Damaged   []string `json:"damaged"`
		Busy      int      `json:"busy"`
	}
	if got, want := decode[rotated](t, r.stdout), (rotated{Retention: "1s", Deleted: ids, Abandoned: []string{}, Kept: []string{}, Damaged: []string{}}); !reflect.DeepEqual(got, want) {
		t.Errorf("rotate = %+v, want %+v", got, want)
	}
	if list := decode[snapshotList](t, runCLI(t, env, "backups", "list", "-o", "json").stdout); len(list.Snapshots) != 0 {
		t.Errorf("after rotation: %+v", list.Snapshots)
	}
}

// take needs every store: a missing log root or an unreachable database
// fails it with the variable to fix, and leaves no snapshot behind.
func TestBackupsTakeFails(t *testing.T) {
	env := storesEnv(t)
	if r := runCLI(t, env, "seed", "demo-0001", "--stores", "contacts", "--contacts", "1"); r.code != ExitOK {
		t.Fatalf("seed: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r := runCLI(t, env, "backups", "take")
	if r.code != ExitError || !strings.Contains(r.stderr, "event-log root") || !strings.Contains(r.stderr, "LETHE_LOGS_ROOT") {
		t.Errorf("no log root: exit %d, stderr %q", r.code, r.stderr)
	}
	if err := os.MkdirAll(env[EnvLogsRoot], 0o700); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, with(env, EnvBillingDSN, "postgres://lethe:pw-secret@"+freeAddr(t)+"/lethe_billing?connect_timeout=2"), "backups", "take")
	if r.code != ExitUnavailable || !strings.Contains(r.stderr, "LETHE_BILLING_DSN") || strings.Contains(r.stderr, "pw-secret") {
		t.Errorf("billing unreachable: exit %d, stderr %q", r.code, r.stderr)
	}
	if list := decode[snapshotList](t, runCLI(t, env, "backups", "list", "-o", "json").stdout); len(list.Snapshots) != 0 {
		t.Errorf("a failed take left %+v", list.Snapshots)
	}
}

func TestSuffixDSN(t *testing.T) {
	tests := []struct {
		give, wantDSN, wantDB, wantErr string
	}{
		{
			give:    "postgres://lethe:pw@db:5432/lethe_contacts?sslmode=disable",
			wantDSN: "postgres://lethe:pw@db:5432/lethe_contacts_restore_s1?sslmode=disable", wantDB: "lethe_contacts_restore_s1",
		},
		{
			give:    "host=db user=lethe dbname=lethe_billing password='p w'",
			wantDSN: "host=db user=lethe dbname=lethe_billing password='p w' dbname='lethe_billing_restore_s1'", wantDB: "lethe_billing_restore_s1",
		},
		{give: "postgres://lethe@db/" + strings.Repeat("x", 60), wantErr: "longer than PostgreSQL's 63 bytes"},
	}
	for _, tt := range tests {
		dsn, db, err := suffixDSN(tt.give, "s1")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("suffixDSN(%q) error = %v, want %q", tt.give, err, tt.wantErr)
			}
			continue
		}
		if err != nil || dsn != tt.wantDSN || db != tt.wantDB {
			t.Errorf("suffixDSN(%q) = %q, %q, %v; want %q, %q", tt.give, dsn, db, err, tt.wantDSN, tt.wantDB)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "postgres://lethe:s3cret@db:5432/x?sslmode=disable", want: "postgres://lethe:xxxxx@db:5432/x?sslmode=disable"},
		{give: "host=db password=s3cret dbname=x", want: "host=db password=xxxxx dbname=x"},
		{give: "host=db password = 's3 cr\\'et' dbname=x", want: "host=db password=xxxxx dbname=x"},
	}
	for _, tt := range tests {
		if got := redactDSN(tt.give); got != tt.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		give int64
		want string
	}{
		{0, "0 B"}, {999, "999 B"}, {1000, "1.0 kB"}, {406_200, "406.2 kB"}, {12_345_678, "12.3 MB"}, {7_000_000_000_000, "7000.0 GB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.give); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
