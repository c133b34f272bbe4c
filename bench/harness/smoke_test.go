package harness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/bench/harness"
	"github.com/lethe-privacy/lethe/lib/testenv"
)

// buildBinaries builds the five services and nats-server (the version the
// workspace pins, as lib's go.mod requires it) into a temporary directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// No symbol tables or DWARF: linking is most of the build, and nothing
	// here is debugged.
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", dir+string(filepath.Separator),
		"./services/coordinator/cmd/coordinator", "./services/contacts/cmd/contacts-worker",
		"./services/logs/cmd/logs-worker", "./services/billing/cmd/billing-worker",
		"./services/backups/cmd/backups-worker", "github.com/nats-io/nats-server/v2")
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the services: %v\n%s", err, out)
	}
	t.Logf("built the services and nats-server in %s", time.Since(start).Round(time.Millisecond))
	return dir
}

// TestHarnessRunsEveryTarget runs the whole harness at the "tiny" preset
// (20 jobs per run, small stores, a 3-second steady state) so that it
// cannot rot: every phase must finish, and the figures must hang together.
// No figure is compared with a goal: on a shared machine that would be a
// timed assertion.
func TestHarnessRunsEveryTarget(t *testing.T) {
	bin := buildBinaries(t)
	redisURL := os.Getenv("LETHE_TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = testenv.DefaultRedisURL
	}
	pgURL := os.Getenv("LETHE_TEST_POSTGRES_URL")
	if pgURL == "" {
		pgURL = testenv.DefaultPostgresURL
	}
	cfg, err := harness.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATSServer = filepath.Join(bin, "nats-server")
	cfg.BinDir = bin
	cfg.RedisURL = redisURL // the shared Redis, under a prefix of the run
	cfg.PostgresURL = pgURL
	cfg.WorkDir = t.TempDir()
	cfg.SeedContacts, cfg.SeedLogRecords = 20, 12
	cfg.LatencyJobs = 10
	if sm := os.Getenv("LETHE_STRIPE_MOCK_BIN"); sm != "" {
		cfg.StripeMock, cfg.SeedInvoices = sm, 2
	}
	var progress bytes.Buffer
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	rep, err := harness.Run(ctx, cfg)
	t.Logf("ran the harness in %s", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}

	if len(rep.Storages) != 2 {
		t.Fatalf("storages measured: %d, want 2", len(rep.Storages))
	}
	for _, s := range rep.Storages {
		for name, run := range map[string]*harness.PipelineRun{"throughput": s.Throughput, "latency": s.Latency} {
			if run == nil {
				t.Fatalf("%s: no %s run", s.Storage, name)
			}
			if run.Completed != run.Jobs || run.Failed != 0 {
				t.Errorf("%s %s: %d of %d jobs completed, %d failed", s.Storage, name, run.Completed, run.Jobs, run.Failed)
			}
			for lname, l := range map[string]harness.Latency{"dispatched": run.Dispatched, "finished": run.Finished} {
				if l.N != run.Jobs || l.P50 > l.P99 || l.P99 > l.Max || l.P50 <= 0 {
					t.Errorf("%s %s %s latency does not hang together: %+v", s.Storage, name, lname, l)
				}
			}
		}
		jobs := uint64(s.Throughput.Jobs + s.Latency.Jobs)
		if got := s.Streams["ACCOUNTS_V1"]; got != jobs {
			t.Errorf("%s: %d account-deletion events stored for %d jobs", s.Storage, got, jobs)
		}
		if s.MessagesPerJob <= 1 || s.StoreWritesPerJob < s.MessagesPerJob || s.Ratio <= 0 || s.RawAfter == nil {
			t.Errorf("%s: messages per job %.2f, writes %.2f, ratio %.3f", s.Storage, s.MessagesPerJob, s.StoreWritesPerJob, s.Ratio)
		}
		if s.Redis.Keys == 0 || s.Redis.BytesPerJob <= 0 {
			t.Errorf("%s: redis use not measured: %+v", s.Storage, s.Redis)
		}
		if len(s.Processes) < 7 { // five services, nats-server, the harness
			t.Errorf("%s: CPU of %d processes, want the services, nats-server and the harness", s.Storage, len(s.Processes))
		}
	}
	c := rep.Contacts
	if c == nil {
		t.Fatal("contacts: not measured")
	}
	// Both sides get accounts of the same shape; the seeder's random
	// memberships make their row counts differ by a few per cent only.
	for _, p := range []harness.PurgeRatio{c.Big, c.Many} {
		if p.PurgeRows == 0 || p.RawRows == 0 || math.Abs(float64(p.PurgeRows-p.RawRows)) > 0.1*float64(p.RawRows) || p.Ratio <= 0 {
			t.Errorf("contacts: purge and raw delete removed different amounts: %+v", p)
		}
	}
	l := rep.Logs
	if l == nil || l.TogetherPasses < 1 || l.TogetherRewrites < int64(l.Segments) || l.ShellSeconds <= 0 || l.UncompressedBytes == 0 {
		t.Errorf("logs: %+v", l)
	}
	if rep.Schedule == nil || rep.Schedule.Status != "not measured" {
		t.Errorf("schedule: %+v", rep.Schedule)
	}
	st := rep.Steady
	if st == nil || st.Run.Completed != st.Run.Jobs || len(st.Processes) != len(harness.ServiceBinaries) {
		t.Fatalf("steady state: %+v", st)
	}
	for _, p := range st.Processes {
		if p.Samples < 5 || p.StartMB <= 0 || p.PeakMB <= 0 {
			t.Errorf("steady state of %s: %+v", p.Process, p)
		}
	}
	// Two throughput, four latency, two contacts, two logs, the schedule
	// and the steady state.
	if len(rep.Targets) != 12 {
		t.Errorf("%d target rows, want 12: %+v", len(rep.Targets), rep.Targets)
	}

	var table, js bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"throughput, default storage", "sync_interval: always", "contacts purge", "segment rewrite", "steady state"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back harness.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Targets) != len(rep.Targets) {
		t.Errorf("JSON report does not read back: %v", err)
	}
	if !strings.Contains(progress.String(), "jobs/s in the last second") {
		t.Errorf("no progress lines:\n%s", progress.String())
	}
}

func TestValidateSaysWhatToSet(t *testing.T) {
	cfg, err := harness.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Targets = []string{"throughput", "nonsense"}
	err = cfg.Validate()
	for _, want := range []string{"-nats-server", "-postgres-url", `unknown target "nonsense"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
	if _, err := harness.Preset("huge"); err == nil {
		t.Error(`Preset("huge") succeeded`)
	}
}
