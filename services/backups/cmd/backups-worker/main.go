// Command backups-worker runs the backups category of Lethe's erasure
// pipeline on the shared worker runtime: "suppress" writes an erased
// account into the restore ledger (the backups database), so that no
// restore brings its data back, and "verify_rotated" succeeds once the
// backup catalog shows that no snapshot holds the account any more. It
// takes no snapshots itself; erasectl takes, rotates and restores them.
// Configuration comes from LETHE_* environment variables and flags (-h).
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
	"github.com/lethe-privacy/lethe/services/backups/backupstore"
)

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "backups-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg worker.ServiceConfig
	fs := flag.NewFlagSet("backups-worker", flag.ContinueOnError)
	cfg.RegisterFlags(fs, os.Getenv, erasurev1.CategoryBackups, "127.0.0.1:9104")
	root := fs.String("backup-root", envOr("LETHE_BACKUP_ROOT", "/var/lib/lethe/backups"), "directory of the backup snapshots and their catalog (env LETHE_BACKUP_ROOT)")
	dsn := fs.String("backups-dsn", envOr("LETHE_BACKUPS_DSN", "postgres://lethe:lethe@127.0.0.1:5432/lethe_backups?sslmode=disable"), "PostgreSQL URL of the backups database, which holds the restore ledger (env LETHE_BACKUPS_DSN)")
	retention := fs.String("retention", envOr("LETHE_BACKUP_RETENTION", "35d"), "how long snapshots are kept, e.g. 35d or 840h; must match the rotation's (env LETHE_BACKUP_RETENTION)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	keep, err := backupstore.ParseRetention(*retention)
	if err != nil {
		return err
	}
	log, err := logging.New("backups-worker", logging.Format(cfg.LogFormat), cfg.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	store, err := backupstore.New(*root, backupstore.WithRetention(keep))
	if err != nil {
		return err
	}
	ledger, err := backupstore.OpenLedger(ctx, *dsn)
	if err != nil {
		return err
	}
	defer ledger.Close()
	if err := ledger.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate the backups database: %w", err)
	}
	purger := backupstore.NewPurger(store, ledger)
	return worker.Serve(ctx, cfg, purger, purger.Ready, log)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
