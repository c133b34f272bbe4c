// Command lethe-bench runs Lethe's benchmark harness (issue #8) and prints
// every target with the figure measured, its ratio against the ceiling
// measured in the same run, and whether it was met. scripts/bench builds
// the pinned nats-server, the services and this command, then runs it;
// docs/benchmarks.md says how to read the output.
//
// Exit codes: 0 done (targets met or not, unless -fail-on-miss), 1 a phase
// failed (the message says what to do), 2 bad flags, 3 a target was missed
// and -fail-on-miss was given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lethe-privacy/lethe/bench/harness"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
	exitMissed = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, output, failOnMiss, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "lethe-bench: %v\nlethe-bench: see lethe-bench -h, or docs/benchmarks.md\n", err)
		return exitUsage
	}
	rep, err := harness.Run(ctx, cfg)
	if errors.Is(err, harness.ErrInvalidConfig) {
		fmt.Fprintf(stderr, "lethe-bench: %v\n", err)
		return exitUsage
	}
	if rep != nil {
		var werr error
		if output == "json" {
			werr = rep.WriteJSON(stdout)
		} else {
			werr = rep.WriteTable(stdout)
		}
		if werr != nil && err == nil {
			err = fmt.Errorf("write the report: %w", werr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "lethe-bench: %v\nlethe-bench: rerun with -keep to keep the processes' logs (the work directory is printed)\n", err)
		return exitFailed
	}
	if missed := rep.Missed(); len(missed) > 0 {
		fmt.Fprintf(stderr, "lethe-bench: %d target(s) missed: %s\n", len(missed), strings.Join(missed, "; "))
		if failOnMiss {
			return exitMissed
		}
	}
	return exitOK
}

// parse reads the flags. -size chooses the preset whose values are the
// other flags' defaults, so it is looked for first.
func parse(args []string, stderr io.Writer) (harness.Config, string, bool, error) {
	size := "small"
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "size" {
			switch {
			case hasVal:
				size = val
			case i+1 < len(args):
				size = args[i+1]
			}
		}
	}
	c, err := harness.Preset(size)
	if err != nil {
		return c, "", false, err
	}
	redisServer, _ := exec.LookPath("redis-server")
	c.NATSServer, c.BinDir, c.RedisServer = ".lethe/bin/nats-server", ".lethe/bench/bin", redisServer
	c.StripeMock = ".lethe/bin/stripe-mock"
	c.RedisURL = "redis://127.0.0.1:6379/0"
	c.PostgresURL = "postgres://lethe:lethe@127.0.0.1:5432/postgres?sslmode=disable"

	fs := flag.NewFlagSet("lethe-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: lethe-bench [-size tiny|small|full] [flags]\n\n"+
			"Measures Lethe's benchmark targets (docs/benchmarks.md); scripts/bench builds what it runs.\n"+
			"Progress goes to stderr, the report to stdout. Defaults below are the %q preset's.\n\n", size)
		fs.PrintDefaults()
	}
	var output, storages, targets string
	var failOnMiss, quiet bool
	fs.String("size", size, "preset of every size below: "+strings.Join(harness.Sizes, ", "))
	fs.StringVar(&output, "o", "table", "output: table or json")
	fs.StringVar(&storages, "storage", joinStorages(c.Storages), "JetStream storage configurations: default, always, or both")
	fs.StringVar(&targets, "targets", strings.Join(c.Targets, ","), "targets to measure: "+strings.Join(harness.AllTargets, ","))
	fs.BoolVar(&failOnMiss, "fail-on-miss", false, "exit 3 when a target is missed")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")

	fs.IntVar(&c.Jobs, "jobs", c.Jobs, "jobs of the throughput run")
	fs.IntVar(&c.Window, "window", c.Window, "jobs in flight at most in the throughput run (with -rate 0)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "jobs/s of the throughput run; 0: as fast as the pipeline takes them")
	fs.IntVar(&c.LatencyJobs, "latency-jobs", c.LatencyJobs, "jobs of the latency run")
	fs.Float64Var(&c.LatencyRate, "latency-rate", c.LatencyRate, "jobs/s of the latency run; 0: half the measured maximum")
	fs.IntVar(&c.SeedContacts, "seed-contacts", c.SeedContacts, "contacts seeded per account of the pipeline runs (0: none)")
	fs.IntVar(&c.SeedLogRecords, "seed-log-records", c.SeedLogRecords, "event-log records seeded per account (0: none)")
	fs.IntVar(&c.SeedInvoices, "seed-invoices", c.SeedInvoices, "invoices seeded per account (0: none; needs -stripe-mock)")
	fs.IntVar(&c.RawMsgs, "raw-msgs", c.RawMsgs, "messages of the raw JetStream ceiling")
	fs.IntVar(&c.RawSize, "raw-size", c.RawSize, "bytes per raw message (nats bench's default: 128)")
	fs.IntVar(&c.RawBatch, "raw-batch", c.RawBatch, "async publishes per batch and pull batch (nats bench's default: 500)")
	fs.IntVar(&c.ContactsBig, "contacts-big", c.ContactsBig, "contacts of each big account of the purge target")
	fs.IntVar(&c.ContactsBigPairs, "contacts-big-pairs", c.ContactsBigPairs, "big accounts erased by each side, one at a time")
	fs.IntVar(&c.ContactsAccounts, "contacts-accounts", c.ContactsAccounts, "accounts of the many-accounts purge target")
	fs.IntVar(&c.ContactsPerAccount, "contacts-per-account", c.ContactsPerAccount, "contacts of each of them")
	fs.IntVar(&c.LogAccounts, "log-accounts", c.LogAccounts, "accounts erased together in the log target")
	fs.IntVar(&c.LogOthers, "log-others", c.LogOthers, "accounts that stay in the same segments")
	fs.IntVar(&c.LogHours, "log-hours", c.LogHours, "hourly segments")
	fs.IntVar(&c.LogRecords, "log-records", c.LogRecords, "records per account and hour")
	fs.IntVar(&c.LogRepeat, "log-repeat", c.LogRepeat, "repetitions (the median is reported)")
	fs.DurationVar(&c.SteadyDuration, "steady-duration", c.SteadyDuration, "length of the steady-state run")
	fs.DurationVar(&c.SteadyInterval, "steady-interval", c.SteadyInterval, "RSS sampling interval")
	fs.Float64Var(&c.SteadyRate, "steady-rate", c.SteadyRate, "jobs/s of the steady-state run; 0: half the measured maximum")
	steadyStorage := fs.String("steady-storage", string(c.SteadyStorage), "storage configuration of the steady-state run")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "how long each run may wait for its jobs")

	fs.StringVar(&c.NATSServer, "nats-server", c.NATSServer, "nats-server binary (scripts/bench builds the pinned one)")
	fs.StringVar(&c.BinDir, "bin-dir", c.BinDir, "directory of the coordinator and worker binaries")
	fs.StringVar(&c.StripeMock, "stripe-mock", c.StripeMock, "stripe-mock binary, for -seed-invoices")
	fs.StringVar(&c.RedisServer, "redis-server", c.RedisServer, "redis-server binary to run a Redis of the run's own; empty: use -redis-url")
	fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "Redis to use (under a key prefix of the run) when -redis-server is empty")
	fs.StringVar(&c.PostgresURL, "postgres-url", c.PostgresURL, "PostgreSQL role that may create the run's temporary databases")
	fs.StringVar(&c.WorkDir, "work-dir", c.WorkDir, "parent of the run's work directory (default: a temporary one)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the work directory (stores, process logs)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "the services' log level (info ships)")
	fs.StringVar(&c.CoordinatorPprof, "coordinator-pprof", "", "loopback host:port where the coordinator serves Go's profiler during the run (go tool pprof http://ADDR/debug/pprof/profile); empty: off")
	fs.IntVar(&c.NATSPprofPort, "nats-pprof-port", 0, "port on 127.0.0.1 where nats-server serves Go's profiler during the run (its prof_port); 0: off")
	if err := fs.Parse(args); err != nil {
		return c, "", false, err
	}
	if fs.NArg() > 0 {
		return c, "", false, fmt.Errorf("unexpected argument %q: lethe-bench takes flags only", fs.Arg(0))
	}
	if output != "table" && output != "json" {
		return c, "", false, fmt.Errorf("-o %q: want table or json", output)
	}
	c.Storages = nil
	for _, s := range splitList(storages) {
		if s == "both" {
			c.Storages = append(c.Storages, harness.StorageDefault, harness.StorageAlways)
			continue
		}
		c.Storages = append(c.Storages, harness.Storage(s))
	}
	c.Targets = splitList(targets)
	c.SteadyStorage = harness.Storage(*steadyStorage)
	if !quiet {
		c.Progress = stderr
	}
	return c, output, failOnMiss, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func joinStorages(ss []harness.Storage) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return strings.Join(out, ",")
}
