package cli

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
)

// Environment variables and their defaults.
const (
	EnvAPIURL = "LETHE_API_URL"
	// EnvAPIToken holds the API bearer token itself and EnvAPITokenFile
	// names a file that holds it (set one). Environment only: no flag
	// shows the token in the process list.
	EnvAPIToken     = "LETHE_API_TOKEN"
	EnvAPITokenFile = "LETHE_API_TOKEN_FILE"
	// EnvAPITokens is the coordinator's tokens file, which erasectl token
	// edits.
	EnvAPITokens   = "LETHE_API_TOKENS"
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
	apiURL string
	// apiToken (LETHE_API_TOKEN) or apiTokenFile (--token-file,
	// LETHE_API_TOKEN_FILE) is the bearer token sent to the API.
	apiToken     redact.String
	apiTokenFile string
	// apiTokensFile is the coordinator's tokens file (LETHE_API_TOKENS),
	// which erasectl token edits.
	apiTokensFile string
	natsURL       string
	// natsAuth is erasectl's broker identity (brokerauth.Erasectl), from
	// the LETHE_NATS_* variables only: no flag shows a secret's path or
	// value in the process list.
	natsAuth     natsconn.Auth
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
		apiURL:        or(EnvAPIURL, DefaultAPIURL),
		apiToken:      redact.New(or(EnvAPIToken, "")),
		apiTokenFile:  or(EnvAPITokenFile, ""),
		apiTokensFile: or(EnvAPITokens, ""),
		natsURL:       or(EnvNATSURL, DefaultNATSURL),
		natsAuth:      natsconn.AuthFromEnv(func(k string) string { return or(k, "") }),
		contactsDSN:   or(EnvContactsDSN, DefaultContactsDSN),
		logsRoot:      or(EnvLogsRoot, DefaultLogsRoot),
		billingDSN:    or(EnvBillingDSN, DefaultBillingDSN),
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
		fs.StringVar(&c.apiTokenFile, "token-file", c.apiTokenFile, "`FILE` holding the API token (env "+EnvAPITokenFile+"; or the token itself in "+EnvAPIToken+")")
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

// hasToken reports whether an API token is configured.
func (c *config) hasToken() bool { return c.apiTokenFile != "" || c.apiToken.Reveal() != "" }

// token returns the API token: from the --token-file / LETHE_API_TOKEN_FILE
// file, else LETHE_API_TOKEN; empty when neither is set (the coordinator
// then answers 401, which erasectl explains). A token that is not of the
// form the coordinator issues is an error here, before anything is sent.
func (c *config) token() (string, error) {
	tok, from := c.apiToken.Reveal(), EnvAPIToken
	if c.apiTokenFile != "" {
		if tok != "" {
			return "", fmt.Errorf("both %s and %s (or --token-file) are set: set one", EnvAPIToken, EnvAPITokenFile)
		}
		raw, err := os.ReadFile(c.apiTokenFile)
		if err != nil {
			return "", fmt.Errorf("read the API token: %w (set %s to the file erasectl token issue wrote)", err, EnvAPITokenFile)
		}
		tok, from = strings.TrimSpace(string(raw)), c.apiTokenFile
	}
	if tok == "" {
		return "", nil
	}
	if err := apiauth.CheckToken(tok); err != nil {
		return "", fmt.Errorf("the API token in %s is not one the coordinator issues (%v): copy it whole, as erasectl token issue printed it", from, err)
	}
	return tok, nil
}

// connectNATS connects as erasectl with the credentials and TLS files of
// the environment. The error says what to check and carries
// ExitUnavailable when NATS cannot be reached.
func (c *config) connectNATS() (*nats.Conn, error) {
	opts, err := c.natsAuth.Options(brokerauth.Erasectl)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name("erasectl"), nats.Timeout(3*time.Second))
	nc, err := nats.Connect(c.natsURL, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) {
			return nil, withCode(ExitUnavailable, fmt.Errorf(
				"NATS at %s refused erasectl's credentials (%v): set %s to erasectl's seed file (scripts/demo prints it)",
				redactURL(c.natsURL), err, natsconn.EnvNKeySeedFile))
		}
		return nil, withCode(ExitUnavailable, fmt.Errorf(
			"cannot reach NATS at %s (%v): is it running? start it with scripts/demo, or set %s",
			redactURL(c.natsURL), err, EnvNATSURL))
	}
	return nc, nil
}

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
