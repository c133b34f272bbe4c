// Package billingstore is the PostgreSQL store of the e-mail platform's
// billing data — customers (name, company, e-mail, postal address, VAT id,
// payment provider reference) and their invoices — and the billing
// category's purger. It exists so that the billing worker can erase a
// deleted account's billing data while keeping what the law makes us keep:
//
//   - "pseudonymise" (the erase stage): in one transaction, invoices whose
//     retention has ended are deleted, the other invoices get a random
//     pseudonym in place of the customer's name and address together with
//     the date until which they must be kept, and the customer row is
//     cleared to a tombstone; then the customer is deleted at the payment
//     provider (Stripe).
//   - "delete_retained" (the later stage): invoices whose retention has
//     ended are deleted.
//
// Store implements worker.Purger. It also owns the schema (Migrate) and can
// fill an account with realistic demo data (Seed).
//
// Billing data is personal data: no name, address, e-mail, VAT id or
// provider customer id ever appears in an error this package returns.
package billingstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-privacy/lethe/lib/pgstore"
	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
)

// ProviderStripe is the payment_provider of customers held at Stripe, the
// only provider this store can delete at.
const ProviderStripe = "stripe"

// versionTable records the applied schema version. It is not schema
// qualified so that an operator can place the store in a schema of their
// choice with search_path in the DSN.
const versionTable = "billingstore_schema_version"

//go:embed migrations/*.sql
var migrationFiles embed.FS

var _ worker.Purger = (*Store)(nil)

// PaymentProvider is the part of a payment provider's API the store uses;
// *stripeapi.Client implements it.
//
// DeleteCustomer reports deleted=false with a nil error when the customer
// was already gone. Its errors are classified so: an error wrapping a
// *stripeapi.Error whose Temporary method is false, or wrapping
// stripeapi.ErrInvalidCustomerID, is permanent; every other error
// (transport, timeouts, 429, 5xx) is worth a retry.
type PaymentProvider interface {
	CreateCustomer(ctx context.Context, p stripeapi.CustomerParams, idempotencyKey string) (stripeapi.Customer, error)
	DeleteCustomer(ctx context.Context, customerID, idempotencyKey string) (deleted bool, err error)
}

// Store is the billing database and, optionally, the payment provider. It
// is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	stripe PaymentProvider
	now    func() time.Time
	// noProvider: the provider step is another store's (WithoutProvider).
	noProvider bool
	// afterProviderDelete, when set, is called after the provider deleted a
	// customer and before the store clears its reference. Tests use it to
	// fail at that point, as a crash would.
	afterProviderDelete func() error
}

type options struct {
	stripe     PaymentProvider
	now        func() time.Time
	noProvider bool
}

// Option configures a Store. Options validate their arguments: Open returns
// an error wrapping ErrInvalidOption for a bad one.
type Option func(*options) error

// WithStripe sets the client the store deletes (and, in Seed, creates)
// customers with. Without it, Purge fails permanently with the code
// "provider_not_configured" for an account that still has a Stripe
// customer, and Seed invents customer ids.
func WithStripe(p PaymentProvider) Option {
	return func(o *options) error {
		if p == nil {
			return fmt.Errorf("%w: nil payment provider", ErrInvalidOption)
		}
		o.stripe = p
		return nil
	}
}

// WithClock sets the clock that decides which retention periods have
// ended, and stamps erased_at and pseudonymised_at; default time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		o.now = now
		return nil
	}
}

// Open connects to the billing database at dsn (a PostgreSQL URL or
// key=value string; pool settings such as pool_max_conns go there too) and
// checks that it answers. It does not migrate: call Migrate.
//
// The error says what to check when the database is unreachable. It wraps
// ErrInvalidOption when an option is invalid.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.noProvider && o.stripe != nil {
		return nil, fmt.Errorf("%w: WithoutProvider and WithStripe exclude each other", ErrInvalidOption)
	}
	pool, err := pgstore.Open(ctx, dsn, "billing")
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool, stripe: o.stripe, now: o.now, noProvider: o.noProvider}, nil
}

// Close closes every connection. Running calls fail once it returns.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers, for readiness probes. It does not
// call the payment provider: a provider outage delays erasures (they are
// retried) but must not take the worker out of service.
func (s *Store) Ping(ctx context.Context) error { return pgstore.Ping(ctx, s.pool, "billing") }

// Migrate brings the schema up to the newest version this binary embeds. It
// is idempotent, and safe when several replicas start at once (see
// pgstore.Migrate).
//
// It fails with an error wrapping pgstore.ErrSchemaNewer when the database
// is at a newer version than this binary knows (a newer release migrated
// it): this binary must not run against it.
func (s *Store) Migrate(ctx context.Context) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate billing database: open embedded migrations: %w", err)
	}
	if err := pgstore.Migrate(ctx, s.pool, files, versionTable); err != nil {
		return fmt.Errorf("migrate billing database: %w", err)
	}
	return nil
}
