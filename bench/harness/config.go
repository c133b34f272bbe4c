// Package harness is Lethe's end-to-end benchmark (issue #8). It starts its
// own nats-server in each storage configuration, measures the server's raw
// JetStream ceiling, runs the coordinator and the four workers as processes
// built from the repository, fires erasures through the dashboard's event
// path and measures throughput, latency, CPU, memory and Redis use; then it
// measures the stores' own targets (contacts purge against PostgreSQL's
// DELETE, log erasure against zcat | grep -v | gzip) and the steady state.
// Every target is a ratio against a ceiling measured in the same run, so that
// figures from a shared, noisy machine stay comparable.
package harness

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Storage is a JetStream storage configuration a user would choose between.
type Storage string

// The two storage configurations: the server's default (fsync every two
// minutes) and sync_interval: always (fsync on every write, the setting
// Jepsen's 2025 analysis says is needed to lose no acknowledged write on
// power loss).
const (
	StorageDefault Storage = "default"
	StorageAlways  Storage = "always"
)

// Targets the harness can measure. TargetSchedule is reserved for the
// scheduler's own figures (pending stages in Redis, cost per due stage);
// until the scheduler lands it reports "not measured".
const (
	TargetThroughput = "throughput"
	TargetLatency    = "latency"
	TargetContacts   = "contacts"
	TargetLogs       = "logs"
	TargetSteady     = "steady"
	TargetSchedule   = "schedule"
)

// AllTargets lists every target in the order they run.
var AllTargets = []string{TargetThroughput, TargetLatency, TargetContacts, TargetLogs, TargetSchedule, TargetSteady}

// Service binaries the harness runs, as scripts/bench builds them into
// .lethe/bin.
const (
	BinCoordinator = "coordinator"
	BinContacts    = "contacts-worker"
	BinLogs        = "logs-worker"
	BinBilling     = "billing-worker"
	BinBackups     = "backups-worker"
)

// ServiceBinaries are the binaries Config.BinDir must hold.
var ServiceBinaries = []string{BinCoordinator, BinContacts, BinLogs, BinBilling, BinBackups}

// Config is everything a run is configured with. Preset gives the sizes;
// the paths and URLs have no defaults here (the command fills them).
type Config struct {
	// NATSServer is the nats-server binary (scripts/bench builds the pinned
	// version into .lethe/bin).
	NATSServer string
	// BinDir holds the service binaries named in ServiceBinaries.
	BinDir string
	// StripeMock is the stripe-mock binary; needed only when SeedInvoices > 0
	// (the billing worker deletes the seeded customers there).
	StripeMock string
	// RedisServer, when set, is a redis-server binary: the harness starts
	// its own on a free loopback port for each storage configuration, with
	// the shipped persistence (AOF, fsync every second), so that INFO memory
	// counts Lethe alone. Empty: RedisURL is used with a key prefix of the
	// run's own.
	RedisServer string
	RedisURL    string
	// PostgresURL names a role that may create databases; the harness makes
	// its own temporary ones and drops them at the end.
	PostgresURL string
	// WorkDir holds the NATS store, segments, snapshots and process logs;
	// empty: a temporary directory, removed at the end unless Keep.
	WorkDir string
	Keep    bool
	// LogLevel of the services; "info" is what ships.
	LogLevel string
	// CoordinatorPprof, when set, is the loopback host:port where the
	// coordinator serves Go's profiler during the run (for profiling it
	// under load: go tool pprof http://ADDR/debug/pprof/profile).
	CoordinatorPprof string
	// NATSPprofPort, when not 0, makes nats-server serve Go's profiler on
	// 127.0.0.1 at that port (its prof_port) during the run.
	NATSPprofPort int

	Storages []Storage
	Targets  []string

	// Jobs is the size of the throughput run; Window bounds the jobs in
	// flight when Rate is 0 ("as fast as the pipeline takes them").
	Jobs   int
	Window int
	Rate   float64
	// LatencyJobs run at LatencyRate, or at half the measured maximum rate
	// when LatencyRate is 0.
	LatencyJobs int
	LatencyRate float64
	// Data seeded for every account of the pipeline runs; 0 means none (the
	// throughput target is for accounts with no data).
	SeedContacts   int
	SeedLogRecords int
	SeedInvoices   int

	// The raw ceiling: RawMsgs messages of RawSize bytes, published
	// asynchronously in batches of RawBatch, as nats bench js pub async.
	RawMsgs  int
	RawSize  int
	RawBatch int

	// Contacts purge: ContactsBigPairs accounts of ContactsBig contacts
	// on each side (one purged at a time; more than one evens out a
	// single slow moment on a shared machine), and ContactsAccounts
	// accounts of ContactsPerAccount each.
	ContactsBig        int
	ContactsBigPairs   int
	ContactsAccounts   int
	ContactsPerAccount int

	// Log erasure: LogHours sealed hourly segments shared by LogAccounts
	// accounts that are erased together plus LogOthers that stay, each
	// with LogRecords records per hour; every measurement is repeated
	// LogRepeat times and the median taken.
	LogAccounts int
	LogOthers   int
	LogHours    int
	LogRecords  int
	LogRepeat   int

	// Steady state: a run of SteadyDuration at SteadyRate (0: half the
	// maximum measured in this run, in SteadyStorage), RSS sampled every
	// SteadyInterval.
	SteadyDuration time.Duration
	SteadyInterval time.Duration
	SteadyRate     float64
	SteadyStorage  Storage

	// Timeout bounds each phase's wait for its jobs.
	Timeout time.Duration
	// Progress receives a line per second while a phase runs; nil: none.
	Progress io.Writer
}

// Sizes names the presets of Preset.
var Sizes = []string{"tiny", "small", "full"}

// Preset returns the sizes of a run: "tiny" for the smoke test (seconds),
// "small" for a check on a developer's machine (minutes), "full" for the
// figures in docs/benchmarks.md (the sizes the targets name).
func Preset(size string) (Config, error) {
	c := Config{
		LogLevel:       "info",
		Storages:       []Storage{StorageDefault, StorageAlways},
		Targets:        slices.Clone(AllTargets),
		RawSize:        128,
		RawBatch:       500,
		SteadyStorage:  StorageDefault,
		SteadyInterval: time.Second,
		Timeout:        10 * time.Minute,
	}
	switch size {
	case "tiny":
		c.Jobs, c.Window, c.LatencyJobs = 20, 20, 20
		c.RawMsgs = 2000
		c.ContactsBig, c.ContactsBigPairs, c.ContactsAccounts, c.ContactsPerAccount = 1000, 1, 5, 200
		c.LogAccounts, c.LogOthers, c.LogHours, c.LogRecords, c.LogRepeat = 10, 5, 2, 20, 1
		c.SteadyDuration, c.SteadyInterval = 3*time.Second, 500*time.Millisecond
		c.Timeout = time.Minute
	case "small":
		c.Jobs, c.Window, c.LatencyJobs = 3000, 1000, 1500
		c.RawMsgs = 100000
		c.ContactsBig, c.ContactsBigPairs, c.ContactsAccounts, c.ContactsPerAccount = 100000, 2, 100, 1000
		c.LogAccounts, c.LogOthers, c.LogHours, c.LogRecords, c.LogRepeat = 100, 20, 6, 50, 3
		c.SteadyDuration = 2 * time.Minute
	case "full":
		c.Jobs, c.Window, c.LatencyJobs = 20000, 1000, 5000
		c.RawMsgs = 500000
		c.ContactsBig, c.ContactsBigPairs, c.ContactsAccounts, c.ContactsPerAccount = 1000000, 2, 1000, 1000
		c.LogAccounts, c.LogOthers, c.LogHours, c.LogRecords, c.LogRepeat = 100, 20, 6, 50, 5
		c.SteadyDuration = 10 * time.Minute
	default:
		return Config{}, fmt.Errorf("unknown size %q: want one of %s", size, strings.Join(Sizes, ", "))
	}
	return c, nil
}

// ErrInvalidConfig wraps every reason Validate rejects a configuration for.
var ErrInvalidConfig = errors.New("invalid bench configuration")

// Validate reports every unusable setting, each saying what to set.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Targets) == 0 {
		bad("no target selected: give -targets, e.g. %s", strings.Join(AllTargets, ","))
	}
	for _, t := range c.Targets {
		if !slices.Contains(AllTargets, t) {
			bad("unknown target %q: want some of %s", t, strings.Join(AllTargets, ","))
		}
	}
	for _, s := range c.Storages {
		if s != StorageDefault && s != StorageAlways {
			bad("unknown storage %q: want default, always or both", s)
		}
	}
	if c.SteadyStorage != StorageDefault && c.SteadyStorage != StorageAlways {
		bad("unknown steady-state storage %q: want default or always", c.SteadyStorage)
	}
	pipeline := c.wants(TargetThroughput) || c.wants(TargetLatency) || c.wants(TargetSteady)
	if pipeline {
		if len(c.Storages) == 0 && (c.wants(TargetThroughput) || c.wants(TargetLatency)) {
			bad("no storage configuration: give -storage default,always")
		}
		if c.NATSServer == "" || c.BinDir == "" {
			bad("the pipeline targets need -nats-server and -bin-dir (scripts/bench builds both)")
		}
		if c.RedisServer == "" && c.RedisURL == "" {
			bad("give -redis-server (a redis-server binary) or -redis-url")
		}
		if c.SeedInvoices > 0 && c.StripeMock == "" {
			bad("-seed-invoices needs -stripe-mock: the billing worker deletes the seeded customers there")
		}
	}
	if pipeline || c.wants(TargetContacts) {
		if c.PostgresURL == "" {
			bad("give -postgres-url: a role that may create databases")
		}
	}
	if c.wants(TargetThroughput) && (c.Jobs < 1 || c.Window < 1) {
		bad("-jobs and -window must be at least 1")
	}
	if c.wants(TargetLatency) && c.LatencyJobs < 1 {
		bad("-latency-jobs must be at least 1")
	}
	if c.wants(TargetLatency) && !c.wants(TargetThroughput) && c.LatencyRate <= 0 {
		bad("-latency-rate is needed without the throughput target (it is half the measured maximum otherwise)")
	}
	if c.wants(TargetSteady) && !c.wants(TargetThroughput) && c.SteadyRate <= 0 {
		bad("-steady-rate is needed without the throughput target (it is half the measured maximum otherwise)")
	}
	if c.wants(TargetSteady) && c.wants(TargetThroughput) && c.SteadyRate <= 0 && !slices.Contains(c.Storages, c.SteadyStorage) {
		bad("-steady-storage %s is not among -storage, so its maximum rate is not measured: add it or give -steady-rate", c.SteadyStorage)
	}
	if c.Rate < 0 || c.LatencyRate < 0 || c.SteadyRate < 0 {
		bad("rates must not be negative")
	}
	if c.SeedContacts < 0 || c.SeedLogRecords < 0 || c.SeedInvoices < 0 {
		bad("seed sizes must not be negative")
	}
	if c.RawMsgs < 1 || c.RawSize < 1 || c.RawBatch < 1 {
		bad("-raw-msgs, -raw-size and -raw-batch must be at least 1")
	}
	if c.wants(TargetContacts) && (c.ContactsBig < 1 || c.ContactsBigPairs < 1 || c.ContactsAccounts < 1 || c.ContactsPerAccount < 1) {
		bad("-contacts-big, -contacts-big-pairs, -contacts-accounts and -contacts-per-account must be at least 1")
	}
	if c.wants(TargetLogs) && (c.LogAccounts < 1 || c.LogHours < 1 || c.LogRecords < 1 || c.LogRepeat < 1 || c.LogOthers < 0) {
		bad("-log-accounts, -log-hours, -log-records and -log-repeat must be at least 1")
	}
	if c.wants(TargetSteady) && (c.SteadyDuration <= 0 || c.SteadyInterval <= 0 || c.SteadyInterval > c.SteadyDuration/4) {
		bad("-steady-duration must be at least four -steady-interval")
	}
	if c.Timeout <= 0 {
		bad("-timeout must be positive")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) wants(target string) bool { return slices.Contains(c.Targets, target) }
