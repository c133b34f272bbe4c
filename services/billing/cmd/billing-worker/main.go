// Command billing-worker erases a deleted account's billing data on the
// shared worker runtime: it pseudonymises the invoices the law makes us
// keep, clears the customer record, deletes the customer at Stripe, and
// later deletes the invoices whose retention has ended. Configuration comes
// from LETHE_* environment variables and flags (-h); the Stripe API key
// from LETHE_STRIPE_API_KEY only, never a flag, which other users of the
// machine could read in the process list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/lib/logging"
	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/lib/worker"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
)

// Defaults.
const (
	defaultHTTPAddr = "127.0.0.1:9103"
	defaultDSN      = "postgres://lethe:lethe@127.0.0.1:5432/lethe_billing?sslmode=disable"
	// demoStripeKey is used when LETHE_STRIPE_API_KEY is unset and the API
	// is on loopback (stripe-mock in the demo, which accepts any test key).
	demoStripeKey = "sk_test_LetheDemo"
)

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "billing-worker:", err)
		os.Exit(1)
	}
}

// config is everything the worker is configured with.
type config struct {
	service worker.ServiceConfig
	dsn     string
	stripe  stripeapi.Config
}

// loadConfig reads flags from args and LETHE_* variables from getenv, and
// validates. Its errors never contain the API key.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	var c config
	fs := flag.NewFlagSet("billing-worker", flag.ContinueOnError)
	c.service.RegisterFlags(fs, getenv, erasurev1.CategoryBilling, defaultHTTPAddr)
	fs.StringVar(&c.dsn, "billing-dsn", env("LETHE_BILLING_DSN", defaultDSN), "PostgreSQL URL of the billing database (env LETHE_BILLING_DSN)")
	fs.StringVar(&c.stripe.BaseURL, "stripe-api-url", env("LETHE_STRIPE_API_URL", stripeapi.DefaultBaseURL),
		"base URL of Stripe's API, or of stripe-mock (env LETHE_STRIPE_API_URL); the key comes from LETHE_STRIPE_API_KEY")
	fs.DurationVar(&c.stripe.Timeout, "stripe-timeout", stripeapi.DefaultTimeout, "bound of one request to Stripe")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := c.service.Validate(); err != nil {
		return c, err
	}
	key := getenv("LETHE_STRIPE_API_KEY")
	if key == "" {
		if !loopbackURL(c.stripe.BaseURL) {
			return c, errors.New("LETHE_STRIPE_API_KEY is not set: give a Stripe secret key (sk_...) or a restricted key (rk_...) " +
				"that may delete customers; only a stripe-mock on loopback needs none")
		}
		key = demoStripeKey
	}
	c.stripe.APIKey = redact.New(key)
	if err := c.stripe.Validate(); err != nil {
		return c, fmt.Errorf("LETHE_STRIPE_API_URL or LETHE_STRIPE_API_KEY: %w", err)
	}
	return c, nil
}

func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func run() error {
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if err != nil {
		return err
	}
	log, err := logging.New("billing-worker", logging.Format(cfg.service.LogFormat), cfg.service.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	stripe, err := stripeapi.New(cfg.stripe)
	if err != nil {
		return err
	}
	host := cfg.stripe.BaseURL
	if u, err := url.Parse(cfg.stripe.BaseURL); err == nil {
		host = u.Host
	}
	log.Info("stripe client ready", zap.String("stripe_host", host), zap.Bool("stripe_livemode", stripe.Livemode()))

	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := billingstore.Open(openCtx, cfg.dsn, billingstore.WithStripe(stripe))
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(openCtx); err != nil {
		return fmt.Errorf("migrate the billing database: %w", err)
	}
	cancel()
	return worker.Serve(ctx, cfg.service, store, store.Ping, log)
}
