package worker

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// ServiceConfig is what every worker service shares: where NATS is, where
// to serve probes and metrics, and the runtime's knobs.
type ServiceConfig struct {
	NATSURL string
	// NATS holds this worker's credentials (its own identity,
	// brokerauth.Worker(category)) and TLS files.
	NATS      natsconn.Auth
	HTTPAddr  string
	LogFormat string
	LogLevel  string
	Runtime   Config
	Topology  topology.Settings
	// AwaitTopology makes the worker wait for the coordinator to create
	// its consumer when it is missing, instead of creating the JetStream
	// topology itself (the zero value, for a worker that starts before any
	// coordinator on a broker without permissions). With per-service
	// credentials a worker may not manage streams.
	AwaitTopology bool
	// Registry serves /metrics; a purger registers its own collectors on
	// it before Serve. Nil makes a fresh one.
	Registry *prometheus.Registry

	envErrs []error
}

// RegisterFlags declares the shared flags on fs, with defaults from
// getenv (LETHE_*). Call fs.Parse afterwards, then Validate.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet, getenv func(string) string, category, defaultHTTPAddr string) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	c.Runtime.Category = category
	c.Topology = topology.DefaultSettings()
	c.Topology.Categories = []string{category}
	fs.StringVar(&c.NATSURL, "nats-url", env("LETHE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL (env LETHE_NATS_URL)")
	c.NATS.RegisterFlags(fs, getenv)
	// With credentials, the broker's permissions let only the coordinator
	// manage streams; without, anyone may (a development set-up).
	fs.BoolVar(&c.AwaitTopology, "await-topology", c.envBool(getenv, "LETHE_AWAIT_TOPOLOGY", c.NATS.Authenticated()),
		"when this worker's consumer is missing, wait for the coordinator to create it instead of creating the JetStream topology (default: true when NATS credentials are set; env LETHE_AWAIT_TOPOLOGY)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("LETHE_HTTP_ADDR", defaultHTTPAddr), "listen address of /healthz, /readyz and /metrics (env LETHE_HTTP_ADDR)")
	fs.StringVar(&c.LogFormat, "log-format", env("LETHE_LOG_FORMAT", "json"), "json or console (env LETHE_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("LETHE_LOG_LEVEL", "info"), "debug, info, warn or error (env LETHE_LOG_LEVEL)")
	fs.IntVar(&c.Runtime.Concurrency, "concurrency", c.envInt(getenv, "LETHE_CONCURRENCY", 4), "purges running at once in this replica (env LETHE_CONCURRENCY)")
	fs.DurationVar(&c.Runtime.PurgeTimeout, "purge-timeout", 10*time.Minute, "deadline of one purge attempt")
	fs.DurationVar(&c.Runtime.DrainTimeout, "drain-timeout", 30*time.Second, "how long running purges may finish at shutdown")
	fs.IntVar(&c.Topology.Replicas, "stream-replicas", c.envInt(getenv, "LETHE_STREAM_REPLICAS", 1), "replicas of every JetStream stream: 1, or 3 on a cluster (env LETHE_STREAM_REPLICAS)")
	// The retry policy, per category since each category is its own
	// service; docs/operations.md lists the defaults and their reasons.
	fs.IntVar(&c.Runtime.Retry.InProcessAttempts, "retry-in-process", c.envInt(getenv, "LETHE_RETRY_IN_PROCESS", 3), "quick tries of a purge within one delivery (env LETHE_RETRY_IN_PROCESS)")
	fs.DurationVar(&c.Runtime.Retry.RedeliveryInitial, "retry-initial", c.envDuration(getenv, "LETHE_RETRY_INITIAL", 5*time.Second), "delay before the second delivery (env LETHE_RETRY_INITIAL)")
	fs.Float64Var(&c.Runtime.Retry.RedeliveryMultiplier, "retry-multiplier", c.envFloat(getenv, "LETHE_RETRY_MULTIPLIER", 2), "growth of the delay per delivery (env LETHE_RETRY_MULTIPLIER)")
	fs.DurationVar(&c.Runtime.Retry.RedeliveryMax, "retry-max", c.envDuration(getenv, "LETHE_RETRY_MAX", 5*time.Minute), "longest delay between deliveries (env LETHE_RETRY_MAX)")
	fs.IntVar(&c.Runtime.Retry.MaxAttempts, "max-attempts", c.envInt(getenv, "LETHE_MAX_ATTEMPTS", 0), "deliveries before a task is dead-lettered; 0: the consumer's max deliver (env LETHE_MAX_ATTEMPTS)")
	fs.Func("never-retry", "comma-separated error classes that fail a task at once (env LETHE_NEVER_RETRY)", func(v string) error {
		c.Runtime.Retry.NeverRetry = splitList(v)
		return nil
	})
	c.Runtime.Retry.NeverRetry = splitList(getenv("LETHE_NEVER_RETRY"))
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// envInt, envFloat and envDuration read a default from the environment;
// a malformed value is remembered and reported by Validate.
func (c *ServiceConfig) envInt(getenv func(string) string, k string, def int) int {
	v := getenv(k)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not a whole number", k, v))
		return def
	}
	return n
}

func (c *ServiceConfig) envBool(getenv func(string) string, k string, def bool) bool {
	v := getenv(k)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not true or false", k, v))
		return def
	}
	return b
}

func (c *ServiceConfig) envFloat(getenv func(string) string, k string, def float64) float64 {
	v := getenv(k)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not a number", k, v))
		return def
	}
	return f
}

func (c *ServiceConfig) envDuration(getenv func(string) string, k string, def time.Duration) time.Duration {
	v := getenv(k)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not a duration such as 5s or 2m", k, v))
		return def
	}
	return d
}

// Validate reports the first unusable setting.
func (c ServiceConfig) Validate() error {
	if len(c.envErrs) > 0 {
		return fmt.Errorf("invalid environment: %w", errors.Join(c.envErrs...))
	}
	if c.NATSURL == "" {
		return errors.New("LETHE_NATS_URL is empty")
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("LETHE_HTTP_ADDR %q is not host:port", c.HTTPAddr)
	}
	if err := c.Runtime.Validate(); err != nil {
		return err
	}
	return c.Topology.Validate()
}

// Serve runs a worker service: it connects to NATS, makes sure the
// topology exists, serves /healthz, /readyz and /metrics, and runs the
// runtime for purger until ctx is cancelled; then it drains and returns.
// ready checks the purger's own store for /readyz; it may be nil.
func Serve(ctx context.Context, cfg ServiceConfig, purger Purger, ready func(context.Context) error, log *zap.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	natsOpts, err := cfg.NATS.Options(brokerauth.Worker(cfg.Runtime.Category))
	if err != nil {
		return err
	}
	nc, js, err := natsconn.Connect(cfg.NATSURL, "lethe-worker-"+cfg.Runtime.Category, log, natsOpts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := awaitConsumer(setupCtx, js, cfg, log); err != nil {
		if ctx.Err() != nil {
			// Told to stop before the coordinator made the consumer.
			return nil
		}
		return err
	}

	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rt, err := New(cfg.Runtime, nc, js, purger, log, NewMetrics(reg))
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeStatus(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		switch {
		case !nc.IsConnected():
			writeStatus(w, http.StatusServiceUnavailable, "not connected to nats")
		case ready != nil && ready(rctx) != nil:
			writeStatus(w, http.StatusServiceUnavailable, "store unreachable")
		default:
			writeStatus(w, http.StatusOK, "ready")
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (in use? set LETHE_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("probe server failed", zap.Error(err))
		}
	}()
	log.Info("worker service serving", zap.String("category", cfg.Runtime.Category), zap.String("http_addr", ln.Addr().String()))

	runErr := rt.Run(ctx)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelShutdown()
	_ = srv.Shutdown(shutdownCtx)
	if err := nc.Drain(); err != nil {
		log.Warn("nats drain", zap.Error(err))
	}
	return runErr
}

// awaitConsumer makes sure the category's consumer exists. The coordinator
// owns the topology and updates it; a worker creates it only when it starts
// first and may (not AwaitTopology), so that the two never fight over
// settings. Otherwise it waits for the coordinator until ctx ends.
func awaitConsumer(ctx context.Context, js jetstream.JetStream, cfg ServiceConfig, log *zap.Logger) error {
	name := erasurev1.WorkerConsumer(cfg.Runtime.Category)
	logged := false
	for {
		_, err := js.Consumer(ctx, erasurev1.TasksStream, name)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("look up the %s consumer (is JetStream enabled on the server? may this worker's NATS credentials read it?): %w", cfg.Runtime.Category, err)
		}
		if !cfg.AwaitTopology {
			if err := topology.Ensure(ctx, js, cfg.Topology); err != nil {
				return fmt.Errorf("set up jetstream topology (if the worker's NATS credentials may not, set LETHE_AWAIT_TOPOLOGY=true and start the coordinator): %w", err)
			}
			return nil
		}
		if !logged {
			log.Info("waiting for the coordinator to create this worker's consumer", zap.String("consumer", name))
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consumer %s does not exist: start the coordinator, which creates the topology: %w", name, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func writeStatus(w http.ResponseWriter, code int, status string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": status})
}
