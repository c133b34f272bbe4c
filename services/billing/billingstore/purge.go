package billingstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
)

// The classes of the transient errors of the provider step (see
// worker.ErrorClass), which an operator can list in LETHE_NEVER_RETRY.
const (
	// ClassProviderRateLimited: Stripe answered 429.
	ClassProviderRateLimited = "provider_rate_limited"
	// ClassProviderUnavailable: Stripe answered 5xx, 409 (a concurrent
	// request with the same idempotency key) or asked to retry.
	ClassProviderUnavailable = "provider_unavailable"
	// ClassProviderUnreachable: no answer (connection refused or reset,
	// TLS or DNS failure).
	ClassProviderUnreachable = "provider_unreachable"
)

// The actions Purge runs.
const (
	// ActionPseudonymise erases the account's billing data except the
	// invoices the law makes us keep, which it pseudonymises; it also
	// deletes the customer at the payment provider. The erase stage runs
	// it; an empty action means it too.
	ActionPseudonymise = "pseudonymise"
	// ActionDeleteRetained deletes the account's invoices whose retention
	// has ended. The retention stage runs it once they have.
	ActionDeleteRetained = "delete_retained"
)

// retentionEndSQL is an invoice's last day of retention: the one recorded
// at pseudonymisation, else computed from the date of issue as RetainUntil
// does ($2 is RetentionYears). A recorded date wins so that what the
// footprint and the audit were shown is what is applied.
const retentionEndSQL = `coalesce(retain_until, make_date(extract(year FROM issued_on)::int + $2, 12, 31))`

const (
	lockCustomerSQL = `
SELECT payment_provider, provider_customer_id
FROM customers WHERE account_id = $1
FOR UPDATE`

	// $3 is Today: an invoice is deletable once its last day is past.
	deleteExpiredSQL = `
DELETE FROM invoices
WHERE account_id = $1 AND ` + retentionEndSQL + ` < $3`

	existingPseudonymSQL = `
SELECT customer_pseudonym FROM invoices
WHERE account_id = $1 AND customer_pseudonym IS NOT NULL
LIMIT 1`

	pseudonymiseInvoicesSQL = `
UPDATE invoices SET
	customer_name = NULL, customer_company = NULL,
	address_line1 = NULL, address_line2 = NULL, postal_code = NULL, city = NULL,
	vat_id = NULL,
	customer_pseudonym = $2,
	pseudonymised_at = $3,
	retain_until = make_date(extract(year FROM issued_on)::int + $4, 12, 31)
WHERE account_id = $1 AND pseudonymised_at IS NULL`

	eraseCustomerSQL = `
UPDATE customers SET
	name = NULL, company = NULL, email = NULL,
	address_line1 = NULL, address_line2 = NULL, postal_code = NULL, city = NULL, country = NULL,
	vat_id = NULL,
	erased_at = $2
WHERE account_id = $1 AND erased_at IS NULL`

	clearProviderSQL = `
UPDATE customers SET provider_customer_id = NULL, provider_deleted_at = $3
WHERE account_id = $1 AND provider_customer_id = $2`
)

// Purge runs task.Action for task.AccountID: ActionPseudonymise (also for
// an empty action) or ActionDeleteRetained. It is idempotent: a repeated
// task finishes what an interrupted one left and otherwise finds nothing
// to do, which is a success with zero items.
//
// ItemsPurged counts the rows changed or deleted and the provider's
// customer when this call deleted it.
//
// Errors: an account id that cannot be one is a worker.PermanentError
// "bad_task" wrapping ErrInvalidAccountID; an unknown action is
// "unsupported_action". For the provider step: Stripe refusing for good
// (400, 401, 403, a 404 that is not "already gone") is "provider_refused",
// a malformed stored customer id "bad_provider_reference", a customer at a
// provider this store has no client for "provider_not_configured". Stripe
// answering 429 is a worker.TransientError of class
// ClassProviderRateLimited, 409 and 5xx ClassProviderUnavailable, no answer
// ClassProviderUnreachable; database errors and timeouts are returned
// wrapped. All of those are retried. No error carries personal data.
func (s *Store) Purge(ctx context.Context, task worker.Task) (worker.Result, error) {
	if err := checkAccountID(task.AccountID); err != nil {
		return worker.Result{}, worker.Permanentf("bad_task", "purge billing data: %w", err)
	}
	switch task.Action {
	case ActionPseudonymise, "":
		return s.pseudonymise(ctx, task)
	case ActionDeleteRetained:
		n, err := s.deleteRetained(ctx, task.AccountID)
		if err != nil {
			return worker.Result{}, fmt.Errorf("delete retained invoices of account %s: %w", task.AccountID, err)
		}
		return worker.Result{ItemsPurged: n}, nil
	default:
		return worker.Result{}, worker.Permanentf("unsupported_action",
			"purge billing data of account %s: action %q is not supported (only %q and %q)",
			task.AccountID, task.Action, ActionPseudonymise, ActionDeleteRetained)
	}
}

// providerRef is a customer still to be deleted at its payment provider.
type providerRef struct {
	provider   string
	customerID string
}

// pseudonymise runs the local transaction, then the provider deletion.
//
// Crash windows: the provider's customer id is kept (not personal in this
// row any more, but the key to what the provider still holds) until the
// provider confirmed the deletion. A crash after the transaction leaves it
// in place; the repeated task finds nothing left to change locally and
// deletes at the provider. A crash after the provider's deletion and before
// the id is cleared makes the repeated task delete again: Stripe answers
// 404 resource_missing, which counts as done.
func (s *Store) pseudonymise(ctx context.Context, task worker.Task) (worker.Result, error) {
	var res worker.Result
	ref, n, err := s.pseudonymiseRows(ctx, task.AccountID)
	res.ItemsPurged += n
	if err != nil {
		return res, fmt.Errorf("pseudonymise billing data of account %s: %w", task.AccountID, err)
	}
	// The latest issue date among the invoices kept dates the stage that
	// deletes them (the retention policy's calendar rule): reported with
	// the result, read after the commit so that a repeated task reports
	// it too.
	var latest *time.Time
	if err := s.pool.QueryRow(ctx, latestRetainedSQL, task.AccountID).Scan(&latest); err != nil {
		return res, fmt.Errorf("read the latest retained invoice date of account %s: %w", task.AccountID, err)
	}
	if latest != nil {
		res.Anchors = map[string]time.Time{AnchorInvoiceIssued: latest.UTC()}
	}
	if ref == nil || s.noProvider {
		return res, nil
	}
	n, err = s.deleteAtProvider(ctx, task, *ref)
	res.ItemsPurged += n
	return res, err
}

// AnchorInvoiceIssued names the date Purge reports for the retention
// policy's calendar rule (policy.AnchorInvoiceIssued).
const AnchorInvoiceIssued = "invoice_issued"

const latestRetainedSQL = `select max(issued_on)::timestamptz from invoices where account_id = $1`

// pseudonymiseRows is the local part of ActionPseudonymise, one
// transaction: it deletes the account's invoices whose retention has ended,
// pseudonymises the others, clears the customer to a tombstone, and returns
// the provider customer still to delete (nil when there is none) and the
// rows it changed or deleted.
//
// One transaction, not batches: an account has at most some thousands of
// invoices, and one statement pseudonymises 10,000 in about 0.4 s even
// under the race detector (TestPurge/large_account); all-or-nothing keeps
// the pseudonym the same on every invoice of the account and never leaves
// a half-erased account behind. The customer row is locked first, so that
// two deliveries of the same task run one after the other.
func (s *Store) pseudonymiseRows(ctx context.Context, accountID string) (*providerRef, int64, error) {
	now := s.now()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var provider, customerID *string
	err = tx.QueryRow(ctx, lockCustomerSQL, accountID).Scan(&provider, &customerID)
	if errors.Is(err, pgx.ErrNoRows) {
		// No customer, and so (foreign key) no invoices: nothing here.
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("lock customer: %w", err)
	}

	var items int64
	tag, err := tx.Exec(ctx, deleteExpiredSQL, accountID, RetentionYears, Today(now))
	if err != nil {
		return nil, 0, fmt.Errorf("delete invoices past retention: %w", err)
	}
	items += tag.RowsAffected()

	pseudonym, err := accountPseudonym(ctx, tx, accountID)
	if err != nil {
		return nil, 0, err
	}
	tag, err = tx.Exec(ctx, pseudonymiseInvoicesSQL, accountID, pseudonym, now, RetentionYears)
	if err != nil {
		return nil, 0, fmt.Errorf("pseudonymise invoices: %w", err)
	}
	items += tag.RowsAffected()

	tag, err = tx.Exec(ctx, eraseCustomerSQL, accountID, now)
	if err != nil {
		return nil, 0, fmt.Errorf("erase customer: %w", err)
	}
	items += tag.RowsAffected()

	if err := tx.Commit(ctx); err != nil {
		return nil, 0, fmt.Errorf("commit: %w", err)
	}
	if customerID == nil {
		return nil, items, nil
	}
	ref := &providerRef{customerID: *customerID}
	if provider != nil {
		ref.provider = *provider
	}
	return ref, items, nil
}

// accountPseudonym returns the pseudonym the account's invoices already
// carry, or a new one.
//
// The pseudonym is 128 random bits, not a function of anything: a hash or
// an HMAC of the name could be recomputed from a list of candidate names
// (or with the key), which would make it reversible in practice, while a
// random token is linked to the person by nothing but the rows it
// replaced. It is stored only in the account's invoices, never logged or
// returned, and reused for invoices pseudonymised later so that the books
// still group one customer's invoices.
func accountPseudonym(ctx context.Context, tx pgx.Tx, accountID string) (string, error) {
	var existing string
	err := tx.QueryRow(ctx, existingPseudonymSQL, accountID).Scan(&existing)
	switch {
	case err == nil:
		return existing, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("read pseudonym: %w", err)
	}
	return newPseudonym(), nil
}

var pseudonymEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newPseudonym returns "psn_" and 128 random bits in lower-case base32.
func newPseudonym() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand aborts the process instead
	return "psn_" + strings.ToLower(pseudonymEncoding.EncodeToString(b[:]))
}

// deleteAtProvider deletes the customer at its payment provider and then
// clears the reference. It returns 1 when this call deleted the customer.
func (s *Store) deleteAtProvider(ctx context.Context, task worker.Task, ref providerRef) (int64, error) {
	if ref.provider != ProviderStripe {
		return 0, worker.Permanentf("provider_not_configured",
			"pseudonymise billing data of account %s: no client for payment provider %q", task.AccountID, providerName(ref.provider))
	}
	if s.stripe == nil {
		return 0, worker.Permanentf("provider_not_configured",
			"pseudonymise billing data of account %s: no Stripe client configured to delete the customer", task.AccountID)
	}
	deleted, err := s.stripe.DeleteCustomer(ctx, ref.customerID, deleteKey(task, ref.customerID))
	if err != nil {
		var apiErr *stripeapi.Error
		switch {
		case errors.Is(err, stripeapi.ErrInvalidCustomerID):
			return 0, worker.Permanentf("bad_provider_reference",
				"pseudonymise billing data of account %s: the stored Stripe customer id is malformed: %w", task.AccountID, err)
		case errors.As(err, &apiErr) && !apiErr.Temporary():
			return 0, worker.Permanentf("provider_refused",
				"pseudonymise billing data of account %s: Stripe refused to delete the customer: %w", task.AccountID, err)
		}
		err = fmt.Errorf("pseudonymise billing data of account %s: delete the customer at Stripe: %w", task.AccountID, err)
		switch {
		case apiErr != nil && apiErr.StatusCode == http.StatusTooManyRequests:
			return 0, worker.Transient(ClassProviderRateLimited, err)
		case apiErr != nil:
			return 0, worker.Transient(ClassProviderUnavailable, err)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			return 0, err // the runtime's "timeout", or shutdown
		default:
			return 0, worker.Transient(ClassProviderUnreachable, err)
		}
	}
	var n int64
	if deleted {
		n = 1
	}
	if s.afterProviderDelete != nil {
		if err := s.afterProviderDelete(); err != nil {
			return n, err
		}
	}
	if _, err := s.pool.Exec(ctx, clearProviderSQL, task.AccountID, ref.customerID, s.now()); err != nil {
		return n, fmt.Errorf("pseudonymise billing data of account %s: clear the deleted Stripe customer: %w", task.AccountID, err)
	}
	return n, nil
}

// providerName quotes a stored provider name only when it is a plain word.
func providerName(p string) string {
	if p == "" {
		return "(none)"
	}
	for _, r := range p {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return "(not a provider name)"
		}
	}
	if len(p) > 32 {
		return "(not a provider name)"
	}
	return p
}

// deleteKey is the Idempotency-Key of the provider deletion: a hash of the
// job, account, stage, generation and customer. Every delivery and
// in-process retry of one task sends the same key; a replay of the task (a
// new generation) sends a new one, so that an answer the provider saved for
// a key (Stripe replays even a saved 500 for 24 hours) cannot block it.
func deleteKey(task worker.Task, customerID string) string {
	h := sha256.New()
	for _, part := range []string{
		"lethe/billing/delete-customer/v1", task.JobID, task.AccountID, task.Stage,
		strconv.FormatUint(uint64(task.Generation), 10), customerID,
	} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return "lethe-" + hex.EncodeToString(h.Sum(nil))
}

// deleteRetained deletes the account's invoices whose retention has ended
// as of the store's clock, in one statement (an account has at most some
// thousands), and returns how many. It does not touch the customer's
// tombstone.
func (s *Store) deleteRetained(ctx context.Context, accountID string) (int64, error) {
	tag, err := s.pool.Exec(ctx, deleteExpiredSQL, accountID, RetentionYears, Today(s.now()))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
