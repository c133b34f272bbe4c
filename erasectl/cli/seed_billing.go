package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/lethe-privacy/lethe/lib/redact"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
)

// demoStripeKey is the key seed sends to a Stripe API on loopback
// (stripe-mock, which accepts any test key) when LETHE_STRIPE_API_KEY is
// unset; the billing worker does the same.
const demoStripeKey = "sk_test_LetheDemo"

// maxSeedInvoices is billingstore's limit.
const maxSeedInvoices = 100000

// billingSeeder seeds the billing database: one customer per account (and
// at the payment provider, when LETHE_STRIPE_API_URL names one) and its
// invoices, some of them past their retention.
type billingSeeder struct {
	invoices  int
	startYear int

	// stripe is the provider client prepare made, nil without
	// LETHE_STRIPE_API_URL.
	stripe *stripeapi.Client
}

var (
	_ seeder       = (*billingSeeder)(nil)
	_ seedPreparer = (*billingSeeder)(nil)
)

func (s *billingSeeder) name() string { return "billing" }

func (s *billingSeeder) columns() []string {
	return []string{"customers", "provider_customers", "invoices", "past_retention"}
}

func (s *billingSeeder) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.invoices, "invoices", s.invoices, "invoices per account")
	fs.IntVar(&s.startYear, "invoice-start-year", s.startYear, "`YEAR` of the first invoice (0: ten years ago, so that some are past their retention)")
}

func (s *billingSeeder) validate() error {
	switch {
	case s.invoices < 1 || s.invoices > maxSeedInvoices:
		return fmt.Errorf("--invoices must be between 1 and %d", maxSeedInvoices)
	case s.startYear != 0 && (s.startYear < 1970 || s.startYear > time.Now().Year()):
		return fmt.Errorf("--invoice-start-year must be between 1970 and %d, or 0", time.Now().Year())
	}
	return nil
}

// prepare makes the Stripe client when LETHE_STRIPE_API_URL names an API.
func (s *billingSeeder) prepare(p *program) error {
	if p.cfg.stripeAPIURL == "" {
		return nil
	}
	client, err := stripeClient(p.cfg)
	if err != nil {
		return err
	}
	s.stripe = client
	return nil
}

func (s *billingSeeder) seed(ctx context.Context, p *program, accountIDs []string, seed int64, progress progressFunc) ([]seedCounts, error) {
	var opts []billingstore.Option
	if s.stripe != nil {
		opts = append(opts, billingstore.WithStripe(s.stripe))
	}
	st, err := billingstore.Open(ctx, p.cfg.billingDSN, opts...)
	if err != nil {
		return nil, storeError(EnvBillingDSN, err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return nil, storeError(EnvBillingDSN, err)
	}
	so := billingstore.SeedOptions{Invoices: s.invoices, StartYear: s.startYear, Seed: seed}
	out := make([]seedCounts, 0, len(accountIDs))
	for _, id := range accountIDs {
		res, err := st.Seed(ctx, id, so, func(done, total int64) {
			progress(id, "invoices", done, total)
		})
		if errors.Is(err, billingstore.ErrErasurePending) {
			return nil, withCode(ExitConflict, fmt.Errorf("%w: let the billing worker finish the erasure, then seed again", err))
		}
		if err != nil {
			return nil, storeError(EnvBillingDSN, err)
		}
		out = append(out, seedCounts{
			"customers":          res.Customers,
			"provider_customers": res.ProviderCustomers,
			"invoices":           res.Invoices,
			"past_retention":     res.PastRetention,
		})
	}
	return out, nil
}

// stripeClient is the client of the Stripe API cfg names. The key comes
// from LETHE_STRIPE_API_KEY; a stripe-mock on loopback needs none. Its
// errors never contain the key.
func stripeClient(cfg config) (*stripeapi.Client, error) {
	key := cfg.stripeAPIKey
	if key.Reveal() == "" {
		if !loopbackURL(cfg.stripeAPIURL) {
			return nil, usageErrorf("%s is not set: give a Stripe test key (sk_test_...) to create customers at %s, "+
				"or unset %s to invent their ids", EnvStripeAPIKey, redactURL(cfg.stripeAPIURL), EnvStripeAPIURL)
		}
		key = redact.New(demoStripeKey)
	}
	client, err := stripeapi.New(stripeapi.Config{BaseURL: cfg.stripeAPIURL, APIKey: key})
	if err != nil {
		return nil, usageErrorf("%s or %s: %v", EnvStripeAPIURL, EnvStripeAPIKey, err)
	}
	return client, nil
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
