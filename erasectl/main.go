// Command erasectl is the command line of Lethe, the personal-data erasure
// pipeline: forced erasures, job status, footprints and demo data. Run
// `erasectl help` for its commands and exit codes; package cli holds them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lethe-privacy/lethe/erasectl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
