package billingstore

import (
	"context"
	"fmt"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
)

// The keys of worker.Footprint.Detail.
const (
	// KindCustomerFields counts the personal columns of the customer row
	// that hold a value: name, company, e-mail, address lines, postal code,
	// city, country, VAT id.
	KindCustomerFields = "customer_fields"
	// KindInvoicePersonalFields counts, over all the account's invoices, the
	// printed personal columns that hold a value: name, company, address
	// lines, postal code, city, VAT id.
	KindInvoicePersonalFields = "invoice_personal_fields"
	// KindInvoicesRetained counts the pseudonymised invoices kept for the
	// retention period. They are not personal data and not in Items.
	KindInvoicesRetained = "invoices_retained"
	// KindProviderCustomer is 1 while the customer may still exist at the
	// payment provider (its id is kept until the provider confirmed the
	// deletion), else 0.
	KindProviderCustomer = "provider_customer"
)

const footprintSQL = `
SELECT
	coalesce((SELECT num_nonnulls(c.name, c.company, c.email, c.address_line1, c.address_line2,
	                              c.postal_code, c.city, c.country, c.vat_id)
	          FROM customers c WHERE c.account_id = a.id), 0)::bigint,
	coalesce((SELECT sum(num_nonnulls(i.customer_name, i.customer_company, i.address_line1,
	                                  i.address_line2, i.postal_code, i.city, i.vat_id))
	          FROM invoices i WHERE i.account_id = a.id), 0)::bigint,
	(SELECT count(*) FROM invoices i WHERE i.account_id = a.id AND i.pseudonymised_at IS NOT NULL),
	(SELECT count(*) FROM customers c WHERE c.account_id = a.id AND c.provider_customer_id IS NOT NULL)
FROM unnest($1::text[]) WITH ORDINALITY AS a(id, n)
ORDER BY a.n`

// Footprint counts, for each of accountIDs, the personal data the store
// still holds of it: Items is the personal fields of the customer row and
// of the invoices, plus one while the customer may still exist at the
// payment provider. Detail has the four kinds (KindCustomerFields, ...),
// including the retained pseudonymised invoices, which are not personal
// data and so not in Items. It returns one entry per id in input order
// (repeated ids repeated), zeros for an unknown account, in one statement,
// and changes nothing.
func (s *Store) Footprint(ctx context.Context, accountIDs []string) ([]worker.Footprint, error) {
	out := make([]worker.Footprint, 0, len(accountIDs))
	if len(accountIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, footprintSQL, accountIDs)
	if err != nil {
		return nil, fmt.Errorf("count billing data of %d accounts: %w", len(accountIDs), err)
	}
	defer rows.Close()
	for rows.Next() {
		var customer, invoiceFields, retained, provider int64
		if err := rows.Scan(&customer, &invoiceFields, &retained, &provider); err != nil {
			return nil, fmt.Errorf("count billing data of %d accounts: %w", len(accountIDs), err)
		}
		if len(out) == len(accountIDs) {
			return nil, fmt.Errorf("count billing data of %d accounts: more rows than accounts", len(accountIDs))
		}
		out = append(out, worker.Footprint{
			AccountID: accountIDs[len(out)],
			Items:     customer + invoiceFields + provider,
			Detail: map[string]int64{
				KindCustomerFields:        customer,
				KindInvoicePersonalFields: invoiceFields,
				KindInvoicesRetained:      retained,
				KindProviderCustomer:      provider,
			},
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count billing data of %d accounts: %w", len(accountIDs), err)
	}
	if len(out) != len(accountIDs) {
		return nil, fmt.Errorf("count billing data of %d accounts: got %d rows", len(accountIDs), len(out))
	}
	return out, nil
}

// RetainedUntil returns the last retain_until among the account's
// pseudonymised invoices: from the day after it, a delete_retained task
// finds every one of them deletable. ok is false when the account has no
// retained invoices. The retention schedule can use it to date the
// delete_retained stage exactly instead of assuming the longest period.
func (s *Store) RetainedUntil(ctx context.Context, accountID string) (last time.Time, ok bool, err error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT max(retain_until) FROM invoices WHERE account_id = $1 AND pseudonymised_at IS NOT NULL`, accountID).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("read retention end of account %s: %w", accountID, err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}
