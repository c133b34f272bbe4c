package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// result is what one run of erasectl produced.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs erasectl with args and env as its environment.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return runCLICtx(t, t.Context(), env, args...)
}

func runCLICtx(t *testing.T, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	p := &program{
		stdout:       &stdout,
		stderr:       &stderr,
		pollInterval: 5 * time.Millisecond,
		httpClient:   &http.Client{Timeout: 5 * time.Second},
	}
	code := p.main(ctx, args, func(k string) string { return env[k] })
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		name     string
		give     []string
		wantPos  []string
		wantWait bool
		wantWhy  string
		wantErr  bool
	}{
		{name: "flags first", give: []string{"--wait", "--reason", "x", "a"}, wantPos: []string{"a"}, wantWait: true, wantWhy: "x"},
		{name: "flags after", give: []string{"a", "--wait", "--reason=x"}, wantPos: []string{"a"}, wantWait: true, wantWhy: "x"},
		{name: "mixed", give: []string{"a", "-reason", "x", "b", "--wait", "c"}, wantPos: []string{"a", "b", "c"}, wantWait: true, wantWhy: "x"},
		{name: "terminator", give: []string{"a", "--", "--wait", "-x"}, wantPos: []string{"a", "--wait", "-x"}},
		{name: "dash is positional", give: []string{"-", "--wait"}, wantPos: []string{"-"}, wantWait: true},
		{name: "none", give: nil, wantPos: nil},
		{name: "unknown flag", give: []string{"a", "--nope"}, wantErr: true},
		{name: "missing value", give: []string{"a", "--reason"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(&bytes.Buffer{})
			wait := fs.Bool("wait", false, "")
			why := fs.String("reason", "", "")
			pos, err := parseInterleaved(fs, tt.give)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseInterleaved(%q) succeeded, want an error", tt.give)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseInterleaved(%q): %v", tt.give, err)
			}
			if !reflect.DeepEqual(pos, tt.wantPos) || *wait != tt.wantWait || *why != tt.wantWhy {
				t.Errorf("parseInterleaved(%q) = %q wait=%v reason=%q, want %q wait=%v reason=%q",
					tt.give, pos, *wait, *why, tt.wantPos, tt.wantWait, tt.wantWhy)
			}
		})
	}
}

func TestParseCommands(t *testing.T) {
	env := map[string]string{EnvAPIURL: "http://coordinator:9000"}
	tests := []struct {
		name    string
		give    []string
		want    command
		wantCfg config
	}{
		{
			name: "request with flags after the account",
			give: []string{"request", "acct-1", "--requested-by", "alice", "--reason", "DSR 1", "--wait", "--timeout", "30s"},
			want: &requestCmd{accountID: "acct-1", requestedBy: "alice", reason: "DSR 1", wait: true, timeout: 30 * time.Second},
		},
		{
			name: "request defaults",
			give: []string{"request", "--reason=r", "--requested-by=ops", "acct-1"},
			want: &requestCmd{accountID: "acct-1", requestedBy: "ops", reason: "r", timeout: 2 * time.Minute},
		},
		{
			name:    "global flags before the command, -o after",
			give:    []string{"--api-url", "http://other:1", "status", "job-1", "-o", "json"},
			want:    &statusCmd{jobID: "job-1"},
			wantCfg: config{apiURL: "http://other:1", output: "json"},
		},
		{
			name:    "global flag after the command wins",
			give:    []string{"--api-url", "http://a:1", "status", "job-1", "--api-url", "http://b:2"},
			want:    &statusCmd{jobID: "job-1"},
			wantCfg: config{apiURL: "http://b:2", output: "table"},
		},
		{
			name: "list defaults",
			give: []string{"list"},
			want: &listCmd{limit: 50, within: 72 * time.Hour},
		},
		{
			name: "list filters",
			give: []string{"list", "--account", "acct-1", "--status", "failed", "--limit", "10", "--all"},
			want: &listCmd{accountID: "acct-1", status: "failed", limit: 10, all: true, within: 72 * time.Hour},
		},
		{
			name: "footprint",
			give: []string{"footprint", "a", "b", "a", "--categories", "contacts, logs,contacts", "--timeout", "2s"},
			want: &footprintCmd{accountIDs: []string{"a", "b"}, categories: "contacts, logs,contacts", timeout: 2 * time.Second, categoryList: []string{"contacts", "logs"}},
		},
		{
			name: "version",
			give: []string{"version"},
			want: versionCmd{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &program{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
			p.cfg = configFromEnv(func(k string) string { return env[k] })
			got, err := p.parse(tt.give)
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.give, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parse(%q) = %#v, want %#v", tt.give, got, tt.want)
			}
			if tt.wantCfg.apiURL != "" {
				if p.cfg.apiURL != tt.wantCfg.apiURL || p.cfg.output != tt.wantCfg.output {
					t.Errorf("config = %+v, want api %q output %q", p.cfg, tt.wantCfg.apiURL, tt.wantCfg.output)
				}
			}
		})
	}
}

func TestParseSeed(t *testing.T) {
	p := &program{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, cfg: configFromEnv(nil)}
	got, err := p.parse([]string{"seed", "demo-1", "--contacts", "10", "demo-2", "--lists", "2", "--properties=1", "--seed", "7"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c := got.(*seedCmd)
	if !reflect.DeepEqual(c.accountIDs, []string{"demo-1", "demo-2"}) || c.seed != 7 {
		t.Errorf("accounts %q seed %d", c.accountIDs, c.seed)
	}
	want := []seeder{
		&contactsSeeder{contacts: 10, lists: 2, properties: 1},
		&logsSeeder{hours: 72, recordsPerHour: 200},
		&billingSeeder{invoices: 60},
	}
	if !reflect.DeepEqual(c.selected, want) {
		t.Errorf("selected seeders = %#v, want %#v", c.selected, want)
	}

	got, err = p.parse([]string{"seed", "demo-1", "--stores", "billing,logs", "--log-hours", "3", "--log-records-per-hour", "9", "--invoices", "4", "--invoice-start-year", "2020"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	want = []seeder{&logsSeeder{hours: 3, recordsPerHour: 9}, &billingSeeder{invoices: 4, startYear: 2020}}
	if c := got.(*seedCmd); !reflect.DeepEqual(c.selected, want) {
		t.Errorf("selected seeders = %#v, want %#v (in store order)", c.selected, want)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name       string
		give       []string
		wantStderr string
	}{
		{name: "no command", give: nil, wantStderr: "no command given"},
		{name: "unknown command", give: []string{"erase"}, wantStderr: `unknown command "erase"`},
		{name: "unknown global flag", give: []string{"--nope", "list"}, wantStderr: "flag provided but not defined: -nope"},
		{name: "request without account", give: []string{"request", "--requested-by", "a", "--reason", "b"}, wantStderr: "want exactly one ACCOUNT_ID"},
		{name: "request with two accounts", give: []string{"request", "a", "b", "--requested-by", "a", "--reason", "b"}, wantStderr: "got 2 arguments"},
		{name: "request without reason", give: []string{"request", "a", "--requested-by", "b"}, wantStderr: "--reason is required"},
		{name: "request bad timeout", give: []string{"request", "a", "--requested-by", "b", "--reason", "c", "--timeout", "soon"}, wantStderr: `invalid value "soon"`},
		{name: "request zero timeout", give: []string{"request", "a", "--requested-by", "b", "--reason", "c", "--timeout", "0s"}, wantStderr: "--timeout must be positive"},
		{name: "request account with space", give: []string{"request", "Jane Doe", "--requested-by", "b", "--reason", "c"}, wantStderr: "account id contains spaces"},
		{name: "request e-mail address", give: []string{"request", "jane@example.org", "--requested-by", "b", "--reason", "c"}, wantStderr: "not an e-mail address"},
		{name: "footprint e-mail address", give: []string{"footprint", "jane@example.org"}, wantStderr: "not an e-mail address"},
		{name: "status long id", give: []string{"status", strings.Repeat("x", 201)}, wantStderr: "longer than 200 bytes"},
		{name: "status without id", give: []string{"status"}, wantStderr: "want exactly one JOB_ID"},
		{name: "list with argument", give: []string{"list", "acct-1"}, wantStderr: "takes no arguments"},
		{name: "list zero limit", give: []string{"list", "--limit", "0"}, wantStderr: "--limit must be positive"},
		{name: "bad output", give: []string{"list", "-o", "yaml"}, wantStderr: `-o must be table or json, not "yaml"`},
		{name: "seed without account", give: []string{"seed"}, wantStderr: "want at least one ACCOUNT_ID"},
		{name: "seed negative contacts", give: []string{"seed", "a", "--contacts", "-1"}, wantStderr: "--contacts must be at least 1"},
		{name: "seed zero lists", give: []string{"seed", "a", "--lists", "0"}, wantStderr: "--lists must be at least 1"},
		{name: "seed too many properties", give: []string{"seed", "a", "--properties", "7"}, wantStderr: "--properties must be between 1 and 6"},
		{name: "seed unknown store", give: []string{"seed", "a", "--stores", "contacts,ledger"}, wantStderr: `unknown store "ledger"`},
		{name: "seed zero log hours", give: []string{"seed", "a", "--log-hours", "0"}, wantStderr: "--log-hours must be between 1 and 100000"},
		{name: "seed zero log records", give: []string{"seed", "a", "--log-records-per-hour", "0"}, wantStderr: "--log-records-per-hour must be between 1 and 1000000"},
		{name: "seed zero invoices", give: []string{"seed", "a", "--invoices", "0"}, wantStderr: "--invoices must be between 1 and 100000"},
		{name: "seed invoices from the future", give: []string{"seed", "a", "--invoice-start-year", "3000"}, wantStderr: "--invoice-start-year must be between 1970 and"},
		{name: "seed stripe key as a flag", give: []string{"seed", "a", "--stripe-api-key", "sk_test_x"}, wantStderr: "flag provided but not defined: -stripe-api-key"},
		{name: "footprint without account", give: []string{"footprint"}, wantStderr: "want at least one ACCOUNT_ID"},
		{name: "footprint bad category", give: []string{"footprint", "a", "--categories", "con.tacts"}, wantStderr: `"con.tacts" is not a category name`},
		{name: "footprint no category", give: []string{"footprint", "a", "--categories", ","}, wantStderr: "names no category"},
		{name: "backups without action", give: []string{"backups"}, wantStderr: "want an action: take, list, rotate or restore"},
		{name: "backups unknown action", give: []string{"backups", "prune"}, wantStderr: `unknown action "prune"`},
		{name: "backups take with argument", give: []string{"backups", "take", "x"}, wantStderr: "take takes no arguments"},
		{name: "backups list with a target", give: []string{"backups", "list", "--target-suffix", "x"}, wantStderr: "the target flags belong to restore"},
		{name: "backups restore without id", give: []string{"backups", "restore", "--target-suffix", "x"}, wantStderr: "restore wants one SNAPSHOT_ID"},
		{name: "backups restore bad id", give: []string{"backups", "restore", "latest", "--target-suffix", "x"}, wantStderr: `"latest" is not a snapshot id`},
		{name: "backups restore without targets", give: []string{"backups", "restore", "20260615T101500Z-3f9a0c2e"}, wantStderr: "restore wants targets"},
		{name: "backups restore suffix and dsn", give: []string{"backups", "restore", "20260615T101500Z-3f9a0c2e", "--target-suffix", "x", "--logs-target-dir", "/tmp/x"}, wantStderr: "either --target-suffix or"},
		{name: "backups restore bad suffix", give: []string{"backups", "restore", "20260615T101500Z-3f9a0c2e", "--target-suffix", "X;drop"}, wantStderr: "--target-suffix must be lower-case"},
		{name: "backups bad retention", give: []string{"backups", "list", "--retention", "forever"}, wantStderr: `retention "forever": want whole days like 35d`},
		{name: "backups zero retention", give: []string{"backups", "rotate", "--retention", "0d"}, wantStderr: "must be positive"},
		{name: "version with argument", give: []string{"version", "x"}, wantStderr: "takes no arguments"},
		{name: "help of unknown command", give: []string{"help", "erase"}, wantStderr: `unknown command "erase"`},
		{name: "flag of another command", give: []string{"status", "job-1", "--wait"}, wantStderr: "flag provided but not defined: -wait"},
		{name: "global flag that does not apply", give: []string{"status", "job-1", "--nats-url", "nats://x"}, wantStderr: "flag provided but not defined: -nats-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.give...)
			if r.code != ExitUsage {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", r.code, ExitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, "erasectl: ") || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q after the erasectl: prefix", r.stderr, tt.wantStderr)
			}
			if strings.Contains(r.stderr, "Jane") || strings.Contains(r.stderr, "jane@") {
				t.Errorf("stderr repeats a personal value: %q", r.stderr)
			}
			if tt.give != nil && r.stdout != "" {
				t.Errorf("stdout = %q, want nothing on a usage error", r.stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		give []string
		want []string
	}{
		{give: []string{"help"}, want: []string{"Usage:", "Commands:", "request", "footprint", "Exit codes:", "LETHE_API_URL", "Examples:"}},
		{give: []string{"-h"}, want: []string{"Commands:", "Exit codes:"}},
		{give: []string{"--help"}, want: []string{"Commands:"}},
		{give: []string{"help", "-h"}, want: []string{"Commands:"}},
		{give: []string{"-o", "json", "help", "seed"}, want: []string{"Usage: erasectl seed"}},
		{give: []string{"help", "request"}, want: []string{"Usage: erasectl request ACCOUNT_ID", "--requested-by WHO", "--timeout duration", "(default 2m0s)", "--api-url URL", "Examples:", "Exit codes:"}},
		{give: []string{"request", "-h"}, want: []string{"Usage: erasectl request"}},
		{give: []string{"request", "acct-1", "--help"}, want: []string{"Usage: erasectl request"}},
		{give: []string{"status", "--help"}, want: []string{"Usage: erasectl status JOB_ID", "-o format"}},
		{give: []string{"list", "-h"}, want: []string{"--all", "--limit int", "(default 50)"}},
		{give: []string{"seed", "-h"}, want: []string{"--contacts int", "(default 5000)", "--contacts-dsn DSN", "Stores: contacts, logs, billing (all by default).",
			"--log-hours int", "(default 72)", "--invoices int", "(default 60)", "--logs-root DIR", "--billing-dsn DSN", "--stripe-api-url URL", "LETHE_STRIPE_API_KEY only"}},
		{give: []string{"footprint", "-h"}, want: []string{"--categories CATEGORIES", "(default contacts,logs,billing,backups)", "--nats-url URL", "exit 5", "in_ledger=1 and snapshots=N"}},
		{give: []string{"backups", "-h"}, want: []string{"Usage: erasectl backups take | list | rotate | restore SNAPSHOT_ID", "--target-suffix NAME", "--contacts-target-dsn DSN",
			"--backup-root DIR", "--backups-dsn DSN", "--retention DAYS", "(default 35d)", "MUST NOT be used", "8    backups restore"}},
		{give: []string{"help"}, want: []string{"backups", "--backup-root DIR", "LETHE_BACKUP_RETENTION", "LETHE_STRIPE_API_KEY", "8    backups restore"}},
		{give: []string{"help", "version"}, want: []string{"Usage: erasectl version"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.give, " "), func(t *testing.T) {
			r := runCLI(t, nil, tt.give...)
			if r.code != ExitOK || r.stderr != "" {
				t.Fatalf("exit code %d, stderr %q; want 0 and nothing", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("help lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	if r.code != ExitOK || !strings.HasPrefix(r.stdout, "erasectl dev (go") {
		t.Errorf("version: code %d stdout %q", r.code, r.stdout)
	}
	r = runCLI(t, nil, "version", "-o", "json")
	if r.code != ExitOK || !strings.Contains(r.stdout, `"version": "dev"`) {
		t.Errorf("version -o json: code %d stdout %q", r.code, r.stdout)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		give     error
		wantCode int
		wantMsg  string
	}{
		{name: "plain", give: errors.New("boom"), wantCode: ExitError, wantMsg: "boom"},
		{name: "coded", give: withCode(ExitTimeout, errors.New("late")), wantCode: ExitTimeout, wantMsg: "late"},
		{name: "wrapped coded", give: errors.Join(withCode(ExitNotFound, errors.New("gone"))), wantCode: ExitNotFound, wantMsg: "gone"},
		{name: "interrupted", give: context.Canceled, wantCode: ExitInterrupted, wantMsg: "interrupted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := classify(tt.give)
			if code != tt.wantCode || msg != tt.wantMsg {
				t.Errorf("classify = %d %q, want %d %q", code, msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestRedaction(t *testing.T) {
	if got := redactURL("nats://u:secret@nats:4222"); strings.Contains(got, "secret") {
		t.Errorf("redactURL leaks the password: %q", got)
	}
}

// freeAddr returns a loopback address where nothing listens.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
