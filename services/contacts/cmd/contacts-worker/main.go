// Command contacts-worker erases a deleted account's contact lists,
// contacts and contact properties from the contacts database, on the
// shared worker runtime. Configuration comes from LETHE_* environment
// variables and flags (-h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lethe-privacy/lethe/lib/logging"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
)

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "contacts-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg worker.ServiceConfig
	fs := flag.NewFlagSet("contacts-worker", flag.ContinueOnError)
	cfg.RegisterFlags(fs, os.Getenv, erasurev1.CategoryContacts, "127.0.0.1:9101")
	dsn := fs.String("contacts-dsn", envOr("LETHE_CONTACTS_DSN", "postgres://lethe:lethe@127.0.0.1:5432/lethe_contacts?sslmode=disable"), "PostgreSQL URL of the contacts database (env LETHE_CONTACTS_DSN)")
	batch := fs.Int("batch-size", contactstore.DefaultBatchSize, "contacts (with their properties and memberships) or lists deleted per transaction: smaller holds locks for less time, larger is faster")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	log, err := logging.New("contacts-worker", logging.Format(cfg.LogFormat), cfg.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	store, err := contactstore.Open(ctx, *dsn, contactstore.WithBatchSize(*batch))
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate the contacts database: %w", err)
	}
	return worker.Serve(ctx, cfg, store, store.Ping, log)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
