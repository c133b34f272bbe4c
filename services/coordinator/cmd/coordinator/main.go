// Command coordinator runs Lethe's coordinator: the HTTP API, the
// dashboard-event consumer, the dispatcher and the report intake.
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
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "coordinator:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := app.LoadConfig(os.Args[1:], os.Getenv)
	if err != nil {
		return err
	}
	log, err := logging.New("coordinator", logging.Format(cfg.LogFormat), cfg.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, cfg, log, nil)
}
