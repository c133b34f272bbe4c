package cli

import (
	"flag"
	"fmt"
	"net/url"
	"strings"

	"github.com/lethe-privacy/lethe/lib/redact"
)

// Environment variables and their defaults.
const (
	EnvAPIURL      = "LETHE_API_URL"
	EnvNATSURL     = "LETHE_NATS_URL"
	EnvContactsDSN = "LETHE_CONTACTS_DSN"
	EnvLogsRoot    = "LETHE_LOGS_ROOT"
	EnvBillingDSN  = "LETHE_BILLING_DSN"
	// EnvStripeAPIURL is where seed creates billing customers; empty: it
	// calls no provider and invents the customer ids.
	EnvStripeAPIURL = "LETHE_STRIPE_API_URL"
	// EnvStripeAPIKey is read from the environment only, never from a flag
	// (the process list shows flags to every user), and never printed.
	EnvStripeAPIKey    = "LETHE_STRIPE_API_KEY"
	EnvBackupRoot      = "LETHE_BACKUP_ROOT"
	EnvBackupsDSN      = "LETHE_BACKUPS_DSN"
	EnvBackupRetention = "LETHE_BACKUP_RETENTION"

	DefaultAPIURL          = "http://127.0.0.1:8080"
	DefaultNATSURL         = "nats://127.0.0.1:4222"
	DefaultContactsDSN     = "postgres://lethe:lethe@127.0.0.1:5432/lethe_contacts?sslmode=disable"
	DefaultLogsRoot        = "/var/lib/lethe/logs"
	DefaultBillingDSN      = "postgres://lethe:lethe@127.0.0.1:5432/lethe_billing?sslmode=disable"
	DefaultBackupRoot      = "/var/lib/lethe/backups"
	DefaultBackupsDSN      = "postgres://lethe:lethe@127.0.0.1:5432/lethe_backups?sslmode=disable"
	DefaultBackupRetention = "35d"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// config is erasectl's global configuration: the environment, overridden by
// flags given before or after the command name.
type config struct {
	apiURL       string
	natsURL      string
	contactsDSN  string
	logsRoot     string
	billingDSN   string
	stripeAPIURL string
	stripeAPIKey redact.String
	backupRoot   string
	backupsDSN   string
	// backupRetention is as given; the commands that use it parse it.
	backupRetention string
	output          string
}

func configFromEnv(getenv func(string) string) config {
	or := func(key, def string) string {
		if getenv != nil {
			if v := strings.TrimSpace(getenv(key)); v != "" {
				return v
			}
		}
		return def
	}
	return config{
		apiURL:      or(EnvAPIURL, DefaultAPIURL),
		natsURL:     or(EnvNATSURL, DefaultNATSURL),
		contactsDSN: or(EnvContactsDSN, DefaultContactsDSN),
		logsRoot:    or(EnvLogsRoot, DefaultLogsRoot),
		billingDSN:  or(EnvBillingDSN, DefaultBillingDSN),
		// Empty by default: no provider calls unless asked for.
		stripeAPIURL:    or(EnvStripeAPIURL, ""),
		stripeAPIKey:    redact.New(or(EnvStripeAPIKey, "")),
		backupRoot:      or(EnvBackupRoot, DefaultBackupRoot),
		backupsDSN:      or(EnvBackupsDSN, DefaultBackupsDSN),
		backupRetention: or(EnvBackupRetention, DefaultBackupRetention),
		output:          outputTable,
	}
}

// globalFlag is a set of global flags, for a command to say which apply to it.
type globalFlag uint16

const (
	flagAPIURL globalFlag = 1 << iota
	flagNATSURL
	flagContactsDSN
	flagLogsRoot
	flagBillingDSN
	flagStripeAPIURL
	flagBackupRoot
	flagBackupsDSN
	flagBackupRetention

	allGlobals = flagAPIURL | flagNATSURL | flagContactsDSN | flagLogsRoot | flagBillingDSN |
		flagStripeAPIURL | flagBackupRoot | flagBackupsDSN | flagBackupRetention
)

// register adds -o and the selected global flags to fs. Their defaults are
// the current values, so a flag given before the command name holds unless
// it is given again after it.
func (c *config) register(fs *flag.FlagSet, which globalFlag) {
	fs.StringVar(&c.output, "o", c.output, "output `format`: table or json")
	if which&flagAPIURL != 0 {
		fs.StringVar(&c.apiURL, "api-url", c.apiURL, "coordinator HTTP API `URL` (env "+EnvAPIURL+")")
	}
	if which&flagNATSURL != 0 {
		fs.StringVar(&c.natsURL, "nats-url", c.natsURL, "NATS server `URL` (env "+EnvNATSURL+")")
	}
	if which&flagContactsDSN != 0 {
		fs.StringVar(&c.contactsDSN, "contacts-dsn", c.contactsDSN, "contacts PostgreSQL database `DSN` (env "+EnvContactsDSN+")")
	}
	if which&flagLogsRoot != 0 {
		fs.StringVar(&c.logsRoot, "logs-root", c.logsRoot, "root `DIR` of the event-log segments (env "+EnvLogsRoot+")")
	}
	if which&flagBillingDSN != 0 {
		fs.StringVar(&c.billingDSN, "billing-dsn", c.billingDSN, "billing PostgreSQL database `DSN` (env "+EnvBillingDSN+")")
	}
	if which&flagStripeAPIURL != 0 {
		fs.StringVar(&c.stripeAPIURL, "stripe-api-url", c.stripeAPIURL, "`URL` of Stripe's API or stripe-mock; empty: no provider calls "+
			"(env "+EnvStripeAPIURL+"; the key comes from "+EnvStripeAPIKey+" only)")
	}
	if which&flagBackupRoot != 0 {
		fs.StringVar(&c.backupRoot, "backup-root", c.backupRoot, "`DIR` of the backup snapshots and their catalog (env "+EnvBackupRoot+")")
	}
	if which&flagBackupsDSN != 0 {
		fs.StringVar(&c.backupsDSN, "backups-dsn", c.backupsDSN, "backups PostgreSQL database `DSN`, which holds the restore ledger (env "+EnvBackupsDSN+")")
	}
	if which&flagBackupRetention != 0 {
		fs.StringVar(&c.backupRetention, "retention", c.backupRetention, "how long snapshots are kept: `DAYS` like 35d, or a duration like 840h (env "+EnvBackupRetention+")")
	}
}

func (c *config) validate() error {
	switch c.output {
	case outputTable, outputJSON:
		return nil
	default:
		return fmt.Errorf("-o must be table or json, not %q", c.output)
	}
}

func (c *config) json() bool { return c.output == outputJSON }

// parseInterleaved parses fs from args where flags and positional arguments
// may be mixed ("request acct-1 --wait --reason x"); the standard flag package
// stops at the first positional argument. Everything after "--" is
// positional. It returns the positional arguments in order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// Parse consumed a "--" terminator when the argument just before
		// the rest is one: the rest is positional as it stands.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// redactURL removes the password from a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the configured address"
	}
	return u.Redacted()
}
