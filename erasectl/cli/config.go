package cli

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
)

// Environment variables and their defaults.
const (
	EnvAPIURL      = "LETHE_API_URL"
	EnvNATSURL     = "LETHE_NATS_URL"
	EnvContactsDSN = "LETHE_CONTACTS_DSN"

	DefaultAPIURL      = "http://127.0.0.1:8080"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
	DefaultContactsDSN = "postgres://lethe:lethe@127.0.0.1:5432/lethe_contacts?sslmode=disable"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// config is erasectl's global configuration: the environment, overridden by
// flags given before or after the command name.
type config struct {
	apiURL      string
	natsURL     string
	contactsDSN string
	output      string
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
		output:      outputTable,
	}
}

// globalFlag is a set of global flags, for a command to say which apply to it.
type globalFlag uint8

const (
	flagAPIURL globalFlag = 1 << iota
	flagNATSURL
	flagContactsDSN

	allGlobals = flagAPIURL | flagNATSURL | flagContactsDSN
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
