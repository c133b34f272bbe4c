package backupstore

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "b")
	tests := []struct {
		name string
		root string
		opts []Option
		ok   bool
	}{
		{name: "defaults", root: root, ok: true},
		{name: "all options", root: root, opts: []Option{WithRetention(day), WithClock(time.Now), WithReapplyMargin(0), WithPgBinDir("/usr/bin")}, ok: true},
		{name: "empty root", root: ""},
		{name: "zero retention", root: root, opts: []Option{WithRetention(0)}},
		{name: "nil clock", root: root, opts: []Option{WithClock(nil)}},
		{name: "negative margin", root: root, opts: []Option{WithReapplyMargin(-time.Second)}},
		{name: "empty bin dir", root: root, opts: []Option{WithPgBinDir("")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.root, tt.opts...)
			if tt.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := s.Check(context.Background()); err != nil {
					t.Errorf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOption) {
				t.Errorf("New error = %v, want ErrInvalidOption", err)
			}
		})
	}
}

func TestParseRetention(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		want    time.Duration
		wantErr bool
	}{
		{give: "35d", want: 35 * day},
		{give: "840h", want: 35 * day},
		{give: "90m", want: 90 * time.Minute},
		{give: "0d", wantErr: true},
		{give: "-1h", wantErr: true},
		{give: "1.5d", wantErr: true},
		{give: "d", wantErr: true},
		{give: "99999999999d", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRetention(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRetention(%q) = %v, %v; want %v, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestConnArgsKeepPasswordsOffTheCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give, wantConn string
		wantEnv        []string
	}{
		{
			give:     "postgres://lethe:s3cret@db:5432/contacts?sslmode=disable",
			wantConn: "postgres://lethe@db:5432/contacts?sslmode=disable", wantEnv: []string{"PGPASSWORD=s3cret"},
		},
		{give: "postgresql://lethe@db/contacts", wantConn: "postgresql://lethe@db/contacts"},
		{give: "host=db dbname=contacts", wantConn: "host=db dbname=contacts"},
	}
	for _, tt := range tests {
		conn, env := connArgs(tt.give)
		if conn != tt.wantConn || !slices.Equal(env, tt.wantEnv) {
			t.Errorf("connArgs(%q) = %q, %v; want %q, %v", tt.give, conn, env, tt.wantConn, tt.wantEnv)
		}
	}
}

func TestErrorLinesDropRowData(t *testing.T) {
	t.Parallel()
	out := `pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 3350; 0 16390 TABLE DATA contacts lethe
pg_restore: error: COPY failed for table "contacts": ERROR:  duplicate key value violates unique constraint "contacts_pkey"
DETAIL:  Key (email)=(jane@example.org) already exists.
CONTEXT:  COPY contacts, line 1: "1	acc-a	jane@example.org"
pg_restore: error: could not execute query: ERROR:  invalid input syntax for type integer: "jane@example.org"
Command was: INSERT INTO contacts VALUES ('jane@example.org');
`
	got := errorLines("pg_restore", out)
	if strings.Contains(got, "jane") || strings.Contains(got, "acc-a") {
		t.Errorf("errorLines kept row data: %q", got)
	}
	if !strings.Contains(got, `COPY failed for table "contacts"`) || !strings.Contains(got, "invalid input syntax for type integer") {
		t.Errorf("errorLines dropped the errors themselves: %q", got)
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	t.Parallel()
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnopqrstuvwxyz", "12"} {
		_, _ = b.Write([]byte(s))
	}
	if got := b.String(); got != "uvwxyz12" {
		t.Errorf("tail = %q, want %q", got, "uvwxyz12")
	}
}
