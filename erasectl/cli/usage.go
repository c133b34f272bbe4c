package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

const usageHeader = `erasectl operates Lethe, the personal-data erasure pipeline: it asks the
coordinator for erasures, shows their jobs, asks the workers what is left of
an account, seeds local stores with synthetic demo data, and takes, lists,
rotates and restores backups.

Usage:
  erasectl [global flags] COMMAND [flags] [args]
  erasectl help COMMAND
`

const usageGlobals = `
Global flags (accepted before or after the command):
  --api-url URL       coordinator HTTP API (env LETHE_API_URL, default ` + DefaultAPIURL + `)
  --token-file FILE   file holding your API token (env LETHE_API_TOKEN_FILE; or the
                      token itself in LETHE_API_TOKEN, never a flag: the process
                      list shows flags); its principal is recorded as requested_by
  --nats-url URL      NATS server (env LETHE_NATS_URL, default ` + DefaultNATSURL + `);
                      credentials and TLS from the environment only:
                      LETHE_NATS_NKEY_SEED_FILE (erasectl's seed; or LETHE_NATS_CREDS,
                      or LETHE_NATS_USER with LETHE_NATS_PASSWORD), LETHE_NATS_CA,
                      LETHE_NATS_CERT, LETHE_NATS_KEY
  --contacts-dsn DSN  contacts database (env LETHE_CONTACTS_DSN,
                      default ` + DefaultContactsDSN + `)
  --billing-dsn DSN   billing database (env LETHE_BILLING_DSN,
                      default ` + DefaultBillingDSN + `)
  --logs-root DIR     event-log segments (env LETHE_LOGS_ROOT, default ` + DefaultLogsRoot + `)
  --stripe-api-url URL
                      Stripe API or stripe-mock for seed (env LETHE_STRIPE_API_URL;
                      default none: no provider calls, invented customer ids);
                      the key only from the environment: LETHE_STRIPE_API_KEY
  --backup-root DIR   backup snapshots (env LETHE_BACKUP_ROOT, default ` + DefaultBackupRoot + `)
  --backups-dsn DSN   backups database with the restore ledger (env LETHE_BACKUPS_DSN,
                      default ` + DefaultBackupsDSN + `)
  --retention 35d     how long snapshots are kept (env LETHE_BACKUP_RETENTION)
  -o table|json       output: aligned table (default) or one JSON document
  -h, --help          help; works after every command too
`

const usageExitCodes = `
Exit codes:
  0    ok (request without --wait: the job was accepted)
  1    unexpected error
  2    usage error: unknown command, bad flags or arguments
  3    the job failed
  4    timed out waiting
  5    a dependency is unreachable: coordinator, NATS or database down, or a
       worker did not answer
  6    no such job (or backup snapshot)
  7    the job's state does not allow the action (e.g. nothing to replay)
  8    backups restore: re-applying the erasures to the restored data failed;
       the restored data holds erased accounts and must not be used
  9    certificate verify: the certificate does not verify (changed after
       signing, or signed with another key); audit verify: the audit trail
       does not verify (an entry changed, removed, reordered or unsigned)
  10   not allowed: the coordinator did not accept the API token (401), or
       the token's role may not do this (403)
  130  interrupted
`

const usageExamples = `
Examples:
  erasectl seed demo-0001 demo-0002 --contacts 5000
  erasectl request demo-0001 --reason "DSR ticket 4711" --wait
  erasectl status 0b7e6f7c-3f1d-4c1a-9a43-6d0f3c2a9e51
  erasectl list --status failed --all -o json
  erasectl footprint demo-0001 --categories contacts
  erasectl backups take
  erasectl backups restore 20260615T101500Z-3f9a0c2e --target-suffix check1
`

func (p *program) printUsage(w io.Writer) {
	io.WriteString(w, usageHeader)
	io.WriteString(w, "\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  help\tshow help for a command\n")
	tw.Flush()
	io.WriteString(w, usageGlobals)
	io.WriteString(w, usageExitCodes)
	io.WriteString(w, usageExamples)
}

func (p *program) printCommandUsage(w io.Writer, spec commandSpec) {
	fmt.Fprintf(w, "Usage: erasectl %s\n\n%s\n", spec.usage, strings.TrimSpace(spec.description))
	// A fresh flag set shows the defaults, not values this run has parsed.
	fs := flag.NewFlagSet(spec.name, flag.ContinueOnError)
	cfg := configFromEnv(nil)
	cfg.register(fs, spec.globals)
	spec.new().flags(fs)
	io.WriteString(w, "\nFlags:\n")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		left := dash + f.Name
		if name != "" {
			left += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", left, usage)
	})
	tw.Flush()
	if spec.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(spec.examples, "\n"))
	}
	io.WriteString(w, usageExitCodes)
}
