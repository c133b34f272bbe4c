package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/testenv"
)

// countRows counts an account's rows in each contacts table.
func countRows(t *testing.T, dsn, accountID string) seedCounts {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	out := seedCounts{}
	for col, table := range map[string]string{
		"lists":      "contact_lists",
		"contacts":   "contacts",
		"members":    "contact_list_members",
		"properties": "contact_properties",
	} {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE account_id = $1", accountID).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		out[col] = n
	}
	return out
}

func TestSeed(t *testing.T) {
	dsn := testenv.Postgres(t)
	env := map[string]string{EnvContactsDSN: dsn}

	r := runCLI(t, env, "seed", "demo-0001", "demo-0002", "--stores", "contacts", "--contacts", "2500", "--lists", "3", "--properties", "2", "--seed", "7")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, w := range []string{
		"seeding demo-0001: 2000/2500 contacts\n",
		"seeding demo-0001: 2500/2500 contacts\n",
		"seeding demo-0002: 2500/2500 contacts\n",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	// The table shows what the database holds.
	var want bytes.Buffer
	results := []seedResult{}
	for _, id := range []string{"demo-0001", "demo-0002"} {
		got := countRows(t, dsn, id)
		if got["lists"] != 3 || got["contacts"] != 2500 || got["properties"] != 5000 || got["members"] == 0 {
			t.Errorf("database holds %v for %s, want 3 lists, 2500 contacts, 5000 properties, some members", got, id)
		}
		results = append(results, seedResult{AccountID: id, Stores: map[string]seedCounts{"contacts": got}})
	}
	writeSeedTables(&want, []seeder{&contactsSeeder{}}, results)
	if r.stdout != want.String() {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want.String())
	}
	if !strings.HasPrefix(r.stdout, "ACCOUNT    LISTS  CONTACTS  MEMBERS  PROPERTIES\ndemo-0001  3      2500      ") {
		t.Errorf("table header or first row unexpected:\n%s", r.stdout)
	}

	// Seeding again migrates again (a no-op) and adds; JSON output.
	r = runCLI(t, env, "seed", "demo-0003", "--stores", "contacts", "--contacts", "10", "--lists", "1", "--properties", "1", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("second seed: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	var got struct {
		Accounts []seedResult `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if len(got.Accounts) != 1 || got.Accounts[0].AccountID != "demo-0003" {
		t.Fatalf("json accounts = %+v", got.Accounts)
	}
	if c := got.Accounts[0].Stores["contacts"]; fmt.Sprint(c) != fmt.Sprint(countRows(t, dsn, "demo-0003")) {
		t.Errorf("json counts %v, database %v", c, countRows(t, dsn, "demo-0003"))
	}
}

func TestSeedDatabaseUnreachable(t *testing.T) {
	dsn := "postgres://lethe:s3cret-pw@" + freeAddr(t) + "/lethe_contacts?sslmode=disable&connect_timeout=2"
	r := runCLI(t, nil, "seed", "demo-0001", "--stores", "contacts", "--contacts-dsn", dsn)
	if r.code != ExitUnavailable {
		t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitUnavailable, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "erasectl: ") || !strings.Contains(r.stderr, "start PostgreSQL with scripts/demo, or point LETHE_CONTACTS_DSN") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if strings.Contains(r.stderr, "s3cret-pw") {
		t.Errorf("stderr leaks the password: %q", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}
