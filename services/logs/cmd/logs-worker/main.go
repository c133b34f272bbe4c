// Command logs-worker erases a deleted account's records from the e-mail
// platform's event-log segments (sends, deliveries, opens, clicks,
// bounces), on the shared worker runtime. Configuration comes from LETHE_*
// environment variables and flags (-h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lethe-privacy/lethe/lib/logging"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// defaultConcurrency is high on purpose: a purge only hands its account to
// the store's erasure loop and waits, and the more purges wait together,
// the more accounts one pass erases with one rewrite of each segment.
const defaultConcurrency = 64

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "logs-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg worker.ServiceConfig
	fs := flag.NewFlagSet("logs-worker", flag.ContinueOnError)
	cfg.RegisterFlags(fs, os.Getenv, erasurev1.CategoryLogs, "127.0.0.1:9102")
	root := fs.String("logs-root", envOr("LETHE_LOGS_ROOT", "/var/lib/lethe/logs"), "root directory of the event-log segments (env LETHE_LOGS_ROOT)")
	linger := fs.Duration("linger", logstore.DefaultLinger, "how long an erasure pass waits for more purges to join it")
	parallelism := fs.Int("parallelism", 0, "segments rewritten at once (0: the CPUs, at most 4)")
	// The shared default of -concurrency suits purgers that each do their
	// own work; this one coalesces, so its default is set before parsing.
	if f := fs.Lookup("concurrency"); f != nil && os.Getenv("LETHE_CONCURRENCY") == "" {
		if err := f.Value.Set(strconv.Itoa(defaultConcurrency)); err != nil {
			return err
		}
		f.DefValue = strconv.Itoa(defaultConcurrency)
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	log, err := logging.New("logs-worker", logging.Format(cfg.LogFormat), cfg.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg.Registry = prometheus.NewRegistry()
	opts := []logstore.Option{logstore.WithLogger(log), logstore.WithLinger(*linger), logstore.WithRegisterer(cfg.Registry)}
	if *parallelism != 0 {
		opts = append(opts, logstore.WithParallelism(*parallelism))
	}
	openCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	store, err := logstore.Open(openCtx, *root, opts...)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	return worker.Serve(ctx, cfg, store, store.Ping, log)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
