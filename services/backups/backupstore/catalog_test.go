package backupstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// A crash can leave three things behind: a torn temporary catalog file, a
// snapshot directory without a catalog entry, and (bit rot, a bad copy) a
// damaged entry. None of them breaks List or hides data from
// verify_rotated, and Rotate clears the first two once no take is running.
func TestCatalogSurvivesCrashLeftovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock(t0)
	s := newTestStore(t, WithClock(clk.now))
	p := NewPurger(s, newTestLedger(t))
	good := take(t, s, logsOnly(t, func() []string { return []string{"acc-a"} }))
	data, err := os.ReadFile(s.manifestPath(good.ID))
	if err != nil {
		t.Fatal(err)
	}

	// A torn write of the next entry: half a manifest in a temporary file.
	torn := filepath.Join(s.catalogDir(), "."+newID(t0.Add(time.Hour))+".json.tmp-4711")
	writeFile(t, torn, string(data[:len(data)/2]))
	writeFile(t, filepath.Join(s.catalogDir(), "README"), "not ours")
	if got := ids(list(t, s)); !slices.Equal(got, []string{good.ID}) {
		t.Fatalf("List with a torn temporary file = %v, want [%s]", got, good.ID)
	}

	// A crashed take: files without a catalog entry.
	incomplete := newID(t0.Add(2 * time.Hour))
	writeFile(t, filepath.Join(s.dataDir(incomplete), "contacts.dump"), "PGDMP partial")
	// A damaged entry of a snapshot from a day later.
	damaged := newID(t0.Add(day))
	writeFile(t, s.manifestPath(damaged), string(data[:len(data)-10]))
	writeFile(t, filepath.Join(s.dataDir(damaged), logsFileName), "tar")

	snaps, err := s.List(ctx)
	if !errors.Is(err, ErrDamagedManifest) || !strings.Contains(err.Error(), damaged) {
		t.Errorf("List with a damaged entry: error %v, want ErrDamagedManifest naming %s", err, damaged)
	}
	if !slices.Equal(ids(snaps), []string{good.ID}) {
		t.Errorf("List with a damaged entry = %v, want the readable [%s]", ids(snaps), good.ID)
	}
	inv, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inv.Incomplete, []string{incomplete}) || !slices.Equal(inv.Damaged, []string{damaged}) || len(inv.Snapshots) != 1 {
		t.Errorf("Inventory = %+v, want incomplete %s and damaged %s", inv, incomplete, damaged)
	}
	// Unknown contents might hold anyone.
	if err := verify(p, "acc-z"); !errors.Is(err, ErrNotRotated) || !strings.Contains(err.Error(), "cannot be checked") {
		t.Errorf("verify with unknown snapshots = %v, want ErrNotRotated", err)
	}
	fps, err := p.Footprint(ctx, []string{"acc-z"})
	if err != nil || fps[0].Detail[KindSnapshotsUnchecked] != 2 {
		t.Errorf("Footprint = %+v, %v; want 2 unchecked snapshots", fps, err)
	}

	// While a take runs, its directory looks just like the crashed one:
	// Rotate must leave both alone.
	taking, err := s.lockShared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := rotate(t, s)
	if res.Busy != 1 || len(res.Abandoned) != 0 || !fileExists(torn) || !fileExists(s.dataDir(incomplete)) {
		t.Errorf("Rotate during a take = %+v, want the incomplete snapshot and temporary file left alone", res)
	}
	taking.unlock()

	res = rotate(t, s)
	if !slices.Equal(res.Abandoned, []string{incomplete}) || !slices.Equal(res.Damaged, []string{damaged}) || res.Kept != 1 {
		t.Errorf("Rotate after the take = %+v, want %s removed and %s kept as damaged", res, incomplete, damaged)
	}
	if fileExists(torn) || fileExists(s.dataDir(incomplete)) {
		t.Error("Rotate left the torn temporary file or the abandoned snapshot behind")
	}
	if !fileExists(filepath.Join(s.catalogDir(), "README")) {
		t.Error("Rotate removed a file that is not its own")
	}

	// The damaged entry goes when its id says it expired.
	clk.advance(DefaultRetention + day)
	res = rotate(t, s)
	if !slices.Contains(res.Deleted, damaged) || fileExists(s.manifestPath(damaged)) || fileExists(s.dataDir(damaged)) {
		t.Errorf("Rotate after expiry = %+v, want the damaged snapshot deleted", res)
	}
	if err := verify(p, "acc-a"); err != nil {
		t.Errorf("verify after everything rotated = %v", err)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// A failed take leaves nothing behind, catalogues nothing, and never
// records a value that may be personal data.
func TestTakeSnapshotFailures(t *testing.T) {
	t.Parallel()
	src := newSource(t, "acc-a")
	s := newTestStore(t)
	logsDir := t.TempDir()
	tests := []struct {
		name   string
		src    Source
		wantIs error
		want   string
	}{
		{name: "nothing", src: Source{}, wantIs: ErrInvalidSource},
		{name: "bad name", src: Source{Databases: []Database{{Name: "../x", DSN: src.contactsDSN, Tables: contactsTables}}}, wantIs: ErrInvalidSource},
		{name: "no tables", src: Source{Databases: []Database{{Name: "contacts", DSN: src.contactsDSN}}}, wantIs: ErrInvalidSource},
		{name: "bad table", src: Source{Databases: []Database{{Name: "contacts", DSN: src.contactsDSN, Tables: Tables("contacts; drop table x")}}}, wantIs: ErrInvalidSource},
		{name: "statement in a condition", src: Source{Databases: []Database{{Name: "contacts", DSN: src.contactsDSN, Tables: []AccountTable{{Name: "contacts", Where: "true; drop table contacts"}}}}}, wantIs: ErrInvalidSource},
		{name: "names twice", src: Source{Databases: []Database{
			{Name: "contacts", DSN: src.contactsDSN, Tables: contactsTables},
			{Name: "contacts", DSN: src.contactsDSN, Tables: contactsTables},
		}}, wantIs: ErrInvalidSource},
		{name: "logs without lister", src: Source{Logs: &LogsSource{Dir: logsDir}}, wantIs: ErrInvalidSource},
		{name: "missing table", src: Source{Databases: []Database{{Name: "contacts", DSN: src.contactsDSN, Tables: Tables("contacts", "no_such_table")}}}, want: "list accounts of database contacts"},
		{name: "e-mail address as account id", src: Source{Databases: []Database{{Name: "contacts", DSN: src.contactsDSN, Tables: []AccountTable{{Name: "contacts", Column: "email"}}}}}, wantIs: ErrInvalidAccountID},
		{name: "log lister fails", src: Source{Logs: &LogsSource{Dir: logsDir, Accounts: func(context.Context) ([]string, error) { return nil, errors.New("logs store down") }}}, want: "logs store down"},
		{name: "unreachable database", src: Source{Databases: []Database{{Name: "contacts", DSN: "postgres://lethe:s3cret@127.0.0.1:1/x?connect_timeout=2", Tables: contactsTables}}}, want: "connect to database contacts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.TakeSnapshot(context.Background(), tt.src)
			if err == nil || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("TakeSnapshot error = %v, want one wrapping %v containing %q", err, tt.wantIs, tt.want)
			}
			for _, secret := range []string{"@example.org", "s3cret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals %q", err, secret)
				}
			}
			inv, err := s.Inventory(context.Background())
			if err != nil || len(inv.Snapshots)+len(inv.Incomplete)+len(inv.Damaged) != 0 {
				t.Errorf("after a failed take: inventory %+v, %v; want it empty", inv, err)
			}
		})
	}
}

func validManifest(t testing.TB) []byte {
	t.Helper()
	snap := Snapshot{
		ID:          "20260301T020000Z-0a1b2c3d",
		CreatedAt:   t0,
		CompletedAt: t0.Add(90 * time.Second),
		Databases: []DatabaseDump{
			{Name: "contacts", Size: 1234, SHA256: strings.Repeat("ab", 32), Tables: []AccountTable{
				{Name: "contacts", Column: "account_id"},
				{Name: "public.contact_properties", Column: "account_id", Where: "deleted_at IS NULL"},
			}},
		},
		Logs:     &LogsArchive{Files: 2, Size: 4096, SHA256: strings.Repeat("cd", 32)},
		Accounts: []string{"acc-a", "acc-b"},
	}
	data, err := encodeManifest(snap)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return data
}

func TestDecodeManifest(t *testing.T) {
	t.Parallel()
	valid := string(validManifest(t))
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{name: "valid", give: valid},
		{name: "truncated", give: valid[:len(valid)/2], wantErr: "truncated"},
		{name: "empty", give: "", wantErr: "truncated"},
		{name: "trailing data", give: valid + "{}", wantErr: "data after"},
		{name: "newer format", give: strings.Replace(valid, `"format":1`, `"format":2`, 1), wantErr: "format 2"},
		{name: "unknown field", give: strings.Replace(valid, `"format":1`, `"format":1,"extra":true`, 1), wantErr: "unknown field"},
		{name: "id of another file", give: strings.Replace(valid, "0a1b2c3d", "ffffffff", 1), wantErr: "file name"},
		{name: "time not matching the id", give: strings.Replace(valid, `"created_at":"2026-03-01T02:00:00Z"`, `"created_at":"2026-03-01T02:00:01Z"`, 1), wantErr: "created_at"},
		{name: "path in a database name", give: strings.Replace(valid, `"name":"contacts"`, `"name":"../../etc/passwd"`, 1), wantErr: "bad name"},
		{name: "SQL in a table name", give: strings.Replace(valid, `"name":"contacts","column"`, `"name":"contacts; drop table x","column"`, 1), wantErr: "table name"},
		{name: "statement in a condition", give: strings.Replace(valid, `"deleted_at IS NULL"`, `"true; drop table contacts"`, 1), wantErr: "one SQL expression"},
		{name: "comment in a condition", give: strings.Replace(valid, `"deleted_at IS NULL"`, `"true --"`, 1), wantErr: "one SQL expression"},
		{name: "unsorted accounts", give: strings.Replace(valid, `["acc-a","acc-b"]`, `["acc-b","acc-a"]`, 1), wantErr: "not sorted"},
		{name: "e-mail as account", give: strings.Replace(valid, `["acc-a","acc-b"]`, `["acc-a","jane@example.org"]`, 1), wantErr: "e-mail"},
		{name: "bad checksum", give: strings.Replace(valid, strings.Repeat("ab", 32), "abc", 1), wantErr: "checksum"},
		{name: "wrong type", give: strings.Replace(valid, `"size":1234`, `"size":"jane@example.org"`, 1), wantErr: "wrong type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(tt.give), "20260301T020000Z-0a1b2c3d")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("decode error = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "jane@") {
				t.Errorf("decode error %q quotes a value of the entry", err)
			}
		})
	}
}

// FuzzDecodeManifest feeds the catalog decoder what a damaged or tampered
// file could hold. It must never panic, and whatever it accepts must be
// valid and survive a round trip unchanged.
func FuzzDecodeManifest(f *testing.F) {
	valid := validManifest(f)
	f.Add(valid)
	f.Add(valid[:len(valid)/3])
	f.Add(bytes.Replace(valid, []byte(`"logs":{"files":2,"size":4096,"sha256":"`+strings.Repeat("cd", 32)+`"},`), nil, 1))
	f.Add(bytes.Replace(valid, []byte(`"acc-a","acc-b"`), nil, 1))
	f.Add([]byte(`{"format":1,"id":"20260301T020000Z-0a1b2c3d","created_at":"2026-03-01T02:00:00+01:00"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"format":1,"accounts":["\ufffd"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := decodeManifest(data, "")
		if err != nil {
			return
		}
		again, err := encodeManifest(snap)
		if err != nil {
			t.Fatalf("accepted entry does not encode: %v", err)
		}
		back, err := decodeManifest(again, snap.ID)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if !reflect.DeepEqual(snap, back) {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v", snap, back)
		}
	})
}
