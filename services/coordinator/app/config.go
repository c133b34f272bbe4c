package app

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/redisconn"
	"github.com/lethe-privacy/lethe/lib/tlsfiles"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/policy"
)

// Config is the coordinator's whole configuration. LoadConfig fills it
// from the environment (LETHE_*) and flags; flags win.
type Config struct {
	NATSURL string
	// NATS holds the coordinator's broker credentials and TLS files
	// (identity brokerauth.Coordinator).
	NATS        natsconn.Auth
	RedisURL    string
	RedisPrefix string
	// RedisSentinels and RedisMasterName, when set, find the Redis primary
	// through Sentinel (see lib/redisconn); RedisURL then gives the
	// credentials and database.
	RedisSentinels  []string
	RedisMasterName string
	// RedisTLS names the CA and client certificate for TLS to Redis.
	RedisTLS tlsfiles.Files
	HTTPAddr string
	// PprofAddr, when set, serves Go's profiler (net/http/pprof) there,
	// without authentication: loopback only.
	PprofAddr string
	LogFormat string
	LogLevel  string
	// Categories get one "erase" task each in every job.
	Categories []string
	// Topology holds the JetStream settings (see docs/jetstream.md).
	Topology topology.Settings
	// ShutdownTimeout bounds the graceful drain.
	ShutdownTimeout time.Duration
	// MonitorInterval is how often the SRE gauges are sampled (0: 15 s).
	MonitorInterval time.Duration
	// ReconcileInterval spaces reconciliation runs; RedispatchAfter is how
	// long a dispatched task may go without a report before its message is
	// looked for (see package reconcile).
	ReconcileInterval time.Duration
	RedispatchAfter   time.Duration
	// RebuildOnEmpty rebuilds the job state from the lifecycle stream at
	// start-up when Redis holds no job but the stream has events (see
	// Rebuilder.OnEmpty).
	RebuildOnEmpty bool
	// UnknownJobRetryDelay spaces the retries of a report whose job Redis
	// does not hold (yet: it may be being rebuilt); 0: 1 minute.
	UnknownJobRetryDelay time.Duration
	// CertificateKey is the PEM file of the certificate signing key (empty:
	// no certificates); CertificateKeyCreate creates it when missing.
	CertificateKey       string
	CertificateKeyCreate bool
	// AuditKey is the file of the keys that sign the lifecycle stream's
	// audit chain (empty: events unsigned; see services/coordinator/audit);
	// AuditKeyCreate creates it when missing.
	AuditKey       string
	AuditKeyCreate bool
	// Policy, when set, is used as the retention policy (tests and
	// embedders); PolicyPath is not read then.
	Policy *policy.Policy
	// PolicyPath is the retention policy file; empty: the shipped default
	// (services/coordinator/policy/default.yaml).
	PolicyPath string
	// SchedulerLeaseTTL is how long a scheduler replica that stops renewing
	// keeps the lease: the longest scheduling pauses when it dies.
	SchedulerLeaseTTL time.Duration
	// APITokens is the file of the API's bearer tokens (their hashes, the
	// principals and roles; see package apiauth). Required: the API has
	// no anonymous access, and the coordinator does not start without it.
	APITokens string
	// APITokensReload is how often the tokens file is read again (0:
	// 30 s), so that issued, rotated and revoked tokens take effect
	// without a restart.
	APITokensReload time.Duration
	// APIRateLimit and APIRateBurst bound each principal's requests a
	// second (0: httpapi's defaults).
	APIRateLimit float64
	APIRateBurst int
}

// LoadPolicy returns the retention policy: Policy if set, else the file
// at PolicyPath, else the shipped default. It checks that the policy and
// the categories this coordinator serves agree: a category without stages
// would never be erased, one without a worker never finish. Only the
// shipped default is cut down to fewer categories (a development set-up
// with fewer workers); an explicit policy must match exactly.
func (c Config) LoadPolicy() (*policy.Policy, error) {
	p := c.Policy
	switch {
	case p != nil:
	case c.PolicyPath != "":
		var err error
		if p, err = policy.Load(c.PolicyPath); err != nil {
			return nil, fmt.Errorf("%w (fix the file, or unset LETHE_POLICY to use the shipped default)", err)
		}
	default:
		p = policy.Default().Restrict(c.Categories)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("retention policy %s: %w", c.policyName(), err)
	}
	for _, cat := range p.Categories {
		if !slices.Contains(c.Categories, cat.Name) {
			return nil, fmt.Errorf("retention policy %s names category %q, which LETHE_CATEGORIES (%s) does not list: add it there (and run its worker) or remove it from the policy", c.policyName(), cat.Name, strings.Join(c.Categories, ","))
		}
	}
	for _, cat := range c.Categories {
		if !slices.ContainsFunc(p.Categories, func(pc policy.Category) bool { return pc.Name == cat }) {
			return nil, fmt.Errorf("retention policy %s has no stages for category %q, which LETHE_CATEGORIES lists: its data would never be erased; add the category to the policy or remove it from LETHE_CATEGORIES", c.policyName(), cat)
		}
	}
	return p, nil
}

func (c Config) policyName() string {
	switch {
	case c.Policy != nil:
		return "version " + c.Policy.Version
	case c.PolicyPath == "":
		return "(shipped default)"
	}
	return c.PolicyPath
}

// Actions run by each category's erase stage until the retention policy
// file replaces this table.
var defaultActions = map[string]string{
	erasurev1.CategoryContacts: "delete",
	erasurev1.CategoryLogs:     "delete",
	erasurev1.CategoryBilling:  "pseudonymise",
	erasurev1.CategoryBackups:  "suppress",
}

// Plan is the task list every job gets. When backups are among the
// categories, their ledger entry comes first and every other category
// waits for it: data destroyed before the ledger knows the account could
// come back with the next restore.
func (c Config) Plan() []jobs.TaskSpec {
	var p []jobs.TaskSpec
	var deps []jobs.TaskKey
	for _, cat := range c.Categories {
		if cat == erasurev1.CategoryBackups {
			p = append(p, jobs.TaskSpec{Category: cat, Stage: "erase", Action: defaultActions[cat]})
			deps = []jobs.TaskKey{{Category: cat, Stage: "erase"}}
		}
	}
	for _, cat := range c.Categories {
		if cat == erasurev1.CategoryBackups {
			continue
		}
		action := defaultActions[cat]
		if action == "" {
			action = "delete"
		}
		p = append(p, jobs.TaskSpec{Category: cat, Stage: "erase", Action: action, DependsOn: deps})
	}
	return p
}

// LoadConfig reads the configuration from getenv and args. It returns
// flag.ErrHelp when -h was given.
func LoadConfig(args []string, getenv func(string) string) (Config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	c := Config{Topology: topology.DefaultSettings()}
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.StringVar(&c.NATSURL, "nats-url", env("LETHE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL (env LETHE_NATS_URL)")
	c.NATS.RegisterFlags(fs, getenv)
	fs.StringVar(&c.RedisURL, "redis-url", env("LETHE_REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL, redis://[user:password@]host:port/db; rediss:// for TLS (env LETHE_REDIS_URL)")
	fs.StringVar(&c.RedisTLS.CA, "redis-ca", env("LETHE_REDIS_CA", ""), "PEM file of the CA that signed Redis's certificate; turns TLS on (env LETHE_REDIS_CA)")
	fs.StringVar(&c.RedisTLS.Cert, "redis-cert", env("LETHE_REDIS_CERT", ""), "PEM client certificate for Redis (env LETHE_REDIS_CERT)")
	fs.StringVar(&c.RedisTLS.Key, "redis-key", env("LETHE_REDIS_KEY", ""), "PEM key of -redis-cert (env LETHE_REDIS_KEY)")
	sentinels := fs.String("redis-sentinels", env("LETHE_REDIS_SENTINELS", ""), "comma-separated host:port of Redis sentinels; empty: connect to LETHE_REDIS_URL directly (env LETHE_REDIS_SENTINELS)")
	fs.StringVar(&c.RedisMasterName, "redis-master-name", env("LETHE_REDIS_MASTER_NAME", "lethe"), "the Sentinel master name of the Redis primary (env LETHE_REDIS_MASTER_NAME)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", env("LETHE_REDIS_PREFIX", "lethe:"), "prefix of every Redis key (env LETHE_REDIS_PREFIX)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("LETHE_HTTP_ADDR", "127.0.0.1:8080"), "HTTP listen address (env LETHE_HTTP_ADDR)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", env("LETHE_PPROF_ADDR", ""), "serve Go's profiler (/debug/pprof/) on this loopback host:port, for profiling; empty: off (env LETHE_PPROF_ADDR)")
	fs.StringVar(&c.LogFormat, "log-format", env("LETHE_LOG_FORMAT", "json"), "json or console (env LETHE_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("LETHE_LOG_LEVEL", "info"), "debug, info, warn or error (env LETHE_LOG_LEVEL)")
	cats := fs.String("categories", env("LETHE_CATEGORIES", strings.Join(topology.DefaultSettings().Categories, ",")), "comma-separated data categories every job erases (env LETHE_CATEGORIES)")
	replicas := fs.Int("stream-replicas", 1, "replicas of every JetStream stream: 1, or 3 on a cluster (env LETHE_STREAM_REPLICAS)")
	if v := getenv("LETHE_STREAM_REPLICAS"); v != "" {
		if err := fs.Set("stream-replicas", v); err != nil {
			return Config{}, fmt.Errorf("LETHE_STREAM_REPLICAS=%q is not a whole number: set 1, or 3 on a NATS cluster", v)
		}
	}
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful shutdown may take")
	fs.DurationVar(&c.MonitorInterval, "monitor-interval", 15*time.Second, "how often consumer lag, dead letters and task ages are sampled for /metrics")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", time.Minute, "time between reconciliation runs")
	fs.DurationVar(&c.RedispatchAfter, "redispatch-after", 15*time.Minute, "how long a dispatched task may go without a report before reconciliation looks for its message")
	fs.BoolVar(&c.RebuildOnEmpty, "rebuild-on-empty", true, "at start-up, rebuild the job state from the lifecycle stream when Redis holds no job but the stream has events")
	fs.DurationVar(&c.UnknownJobRetryDelay, "unknown-job-retry-delay", time.Minute, "how long a report for a job Redis does not hold waits before it is tried again")
	fs.StringVar(&c.CertificateKey, "certificate-key", env("LETHE_CERTIFICATE_KEY", ".lethe/keys/certificate.pem"), "PEM file of the Ed25519 key that signs erasure certificates; empty: no certificates (env LETHE_CERTIFICATE_KEY)")
	fs.BoolVar(&c.CertificateKeyCreate, "certificate-key-create", env("LETHE_CERTIFICATE_KEY_CREATE", "true") == "true", "create the certificate key when its file is missing (development); set false in production so that a missing key stops start-up (env LETHE_CERTIFICATE_KEY_CREATE)")
	fs.StringVar(&c.AuditKey, "audit-key", env("LETHE_AUDIT_KEY", ".lethe/keys/audit.key"), "file of the HMAC keys that chain the lifecycle events into a tamper-evident audit trail, 64 hex digits a line, the first signs; every coordinator needs the same file; empty: events unsigned (env LETHE_AUDIT_KEY)")
	fs.BoolVar(&c.AuditKeyCreate, "audit-key-create", env("LETHE_AUDIT_KEY_CREATE", "true") == "true", "create the audit key when its file is missing (development); set false in production so that a missing key stops start-up (env LETHE_AUDIT_KEY_CREATE)")
	fs.StringVar(&c.PolicyPath, "policy", env("LETHE_POLICY", ""), "retention policy file (YAML, see services/coordinator/policy/README.md); empty: the shipped default (env LETHE_POLICY)")
	fs.DurationVar(&c.SchedulerLeaseTTL, "scheduler-lease-ttl", 10*time.Second, "how long the scheduling replica's lease lasts without renewal: the longest scheduling pauses when that replica dies")
	fs.StringVar(&c.APITokens, "api-tokens", env("LETHE_API_TOKENS", ""), "file of the HTTP API's bearer tokens (hashes, principals, roles; made by erasectl token issue); required: the API has no anonymous access (env LETHE_API_TOKENS)")
	fs.DurationVar(&c.APITokensReload, "api-tokens-reload", 30*time.Second, "how often the API tokens file is read again")
	fs.Float64Var(&c.APIRateLimit, "api-rate-limit", 100, "HTTP API requests a second each principal may send, sustained; more are answered 429 (env LETHE_API_RATE_LIMIT)")
	fs.IntVar(&c.APIRateBurst, "api-rate-burst", 200, "HTTP API requests each principal may send in a burst (env LETHE_API_RATE_BURST)")
	for _, f := range []struct{ env, flag string }{{"LETHE_API_RATE_LIMIT", "api-rate-limit"}, {"LETHE_API_RATE_BURST", "api-rate-burst"}} {
		if v := getenv(f.env); v != "" {
			if err := fs.Set(f.flag, v); err != nil {
				return Config{}, fmt.Errorf("%s=%q is not a number: %w", f.env, v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q; the coordinator takes flags only (see -h)", fs.Arg(0))
	}
	for _, cat := range strings.Split(*cats, ",") {
		if cat = strings.TrimSpace(cat); cat != "" {
			c.Categories = append(c.Categories, cat)
		}
	}
	c.RedisSentinels = splitList(*sentinels)
	c.Topology.Categories = c.Categories
	c.Topology.Replicas = *replicas
	return c, c.Validate()
}

// Redis is the connection options for lib/redisconn.
func (c Config) Redis() redisconn.Options {
	return redisconn.Options{URL: c.RedisURL, SentinelAddrs: c.RedisSentinels, MasterName: c.RedisMasterName, TLSFiles: c.RedisTLS}
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

// Validate reports the first unusable setting, saying how to fix it.
func (c Config) Validate() error {
	var errs []error
	if c.NATSURL == "" {
		errs = append(errs, errors.New("LETHE_NATS_URL is empty"))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Redis().Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("LETHE_HTTP_ADDR %q is not host:port", c.HTTPAddr))
	}
	if c.PprofAddr != "" {
		if host, _, err := net.SplitHostPort(c.PprofAddr); err != nil || !isLoopback(host) {
			errs = append(errs, fmt.Errorf("LETHE_PPROF_ADDR %q: the profiler has no authentication, give a loopback host:port such as 127.0.0.1:6060", c.PprofAddr))
		}
	}
	if len(c.Categories) == 0 {
		errs = append(errs, errors.New("LETHE_CATEGORIES names no category"))
	}
	if c.APIRateLimit < 0 || c.APIRateBurst < 0 {
		errs = append(errs, errors.New("-api-rate-limit and -api-rate-burst must not be negative"))
	}
	if c.SchedulerLeaseTTL < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("-scheduler-lease-ttl %s is too short: use 300ms or more (default 10s)", c.SchedulerLeaseTTL))
	}
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

// isLoopback reports whether host is a loopback address or localhost.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
