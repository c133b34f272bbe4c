package billingstore

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/billing/stripemock"
)

// invoiceRow is one invoice as stored.
type invoiceRow struct {
	Number          string
	IssuedOn, DueOn time.Time
	Currency        string
	Net, Tax, Gross int64
	Country         *string
	Personal        [7]*string // name, company, line1, line2, postal code, city, VAT id
	Pseudonym       *string
	PseudonymisedAt *time.Time
	RetainUntil     *time.Time
}

func invoiceRows(t *testing.T, s *Store, account string) []invoiceRow {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `
SELECT number, issued_on, due_on, currency, net_amount, tax_amount, gross_amount, country,
       customer_name, customer_company, address_line1, address_line2, postal_code, city, vat_id,
       customer_pseudonym, pseudonymised_at, retain_until
FROM invoices WHERE account_id = $1 ORDER BY number`, account)
	if err != nil {
		t.Fatalf("read invoices: %v", err)
	}
	defer rows.Close()
	var out []invoiceRow
	for rows.Next() {
		var r invoiceRow
		p := &r.Personal
		if err := rows.Scan(&r.Number, &r.IssuedOn, &r.DueOn, &r.Currency, &r.Net, &r.Tax, &r.Gross, &r.Country,
			&p[0], &p[1], &p[2], &p[3], &p[4], &p[5], &p[6], &r.Pseudonym, &r.PseudonymisedAt, &r.RetainUntil); err != nil {
			t.Fatalf("read invoices: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read invoices: %v", err)
	}
	return out
}

// personalValues are the personal strings stored for an account: the
// customer's fields, the invoices' printed fields and the provider id.
func personalValues(t *testing.T, s *Store, account string) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `
SELECT v FROM (
	SELECT unnest(ARRAY[name, company, email, address_line1, address_line2, postal_code, city, vat_id, provider_customer_id]) AS v
	FROM customers WHERE account_id = $1
	UNION
	SELECT unnest(ARRAY[customer_name, customer_company, address_line1, address_line2, postal_code, city, vat_id])
	FROM invoices WHERE account_id = $1) x
WHERE v IS NOT NULL
ORDER BY v`, account)
	if err != nil {
		t.Fatalf("read personal values: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// dump returns every row of the account, both tables, as JSON values.
func dump(t *testing.T, s *Store, account string) []string {
	t.Helper()
	var customers, invoices []byte
	err := s.pool.QueryRow(context.Background(), `
SELECT coalesce((SELECT json_agg(c) FROM customers c WHERE c.account_id = $1), '[]'),
       coalesce((SELECT json_agg(i) FROM invoices i WHERE i.account_id = $1), '[]')`, account).Scan(&customers, &invoices)
	if err != nil {
		t.Fatalf("dump account: %v", err)
	}
	var values []string
	for _, doc := range [][]byte{customers, invoices} {
		var rows []map[string]any
		if err := json.Unmarshal(doc, &rows); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			for _, v := range r {
				if v != nil {
					values = append(values, strings.TrimSpace(jsonString(v)))
				}
			}
		}
	}
	return values
}

func jsonString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

var hasLetter = regexp.MustCompile(`\pL`)

// assertNoneLeft fails when any of the original personal values is left in
// the account's rows: values with letters anywhere in them, digit-only
// values (postal codes) as a whole value.
func assertNoneLeft(t *testing.T, s *Store, account string, originals []string) {
	t.Helper()
	values := dump(t, s, account)
	all := strings.Join(values, "\x00")
	for _, o := range originals {
		if hasLetter.MatchString(o) && len(o) >= 3 {
			if strings.Contains(all, o) {
				t.Errorf("a value of the account still contains %q", o)
			}
			continue
		}
		for _, v := range values {
			if v == o {
				t.Errorf("a value of the account still is %q", o)
			}
		}
	}
}

func pseudonymOf(t *testing.T, s *Store, account string) string {
	t.Helper()
	var ps []string
	rows, err := s.pool.Query(context.Background(), `SELECT DISTINCT customer_pseudonym FROM invoices WHERE account_id = $1 AND customer_pseudonym IS NOT NULL`, account)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) != 1 {
		t.Fatalf("account %s has %d distinct pseudonyms, want 1", account, len(ps))
	}
	return ps[0]
}

var pseudonymPattern = regexp.MustCompile(`^psn_[a-z2-7]{26}$`)

var zeroFootprint = func(retained int64) map[string]int64 {
	return map[string]int64{KindCustomerFields: 0, KindInvoicePersonalFields: 0, KindInvoicesRetained: retained, KindProviderCustomer: 0}
}

// purgeEnv is what the purge tests share: one migrated database, in which
// every test uses accounts of its own, and one stripe-mock. (A database per
// test would cost about a second each on a busy machine.)
type purgeEnv struct {
	dsn        string
	stripeMock string
}

// store opens a store on the shared database.
func (e purgeEnv) store(t *testing.T, opts ...Option) *Store {
	t.Helper()
	return openStore(t, e.dsn, opts...)
}

func TestPurge(t *testing.T) {
	t.Parallel()
	env := purgeEnv{dsn: migratedDatabase(t), stripeMock: stripemock.Start(t).URL}
	tests := []struct {
		name string
		run  func(*testing.T, purgeEnv)
	}{
		{"pseudonymise against stripe-mock", testPseudonymise},
		{"pseudonyms are random", testPseudonymsAreRandom},
		{"pseudonym reused for later invoices", testPseudonymReusedForLaterInvoices},
		{"provider fails then succeeds", testPseudonymiseProviderFailsThenSucceeds},
		{"crash after provider delete", testPseudonymiseCrashAfterProviderDelete},
		{"provider answers", testPseudonymiseProviderAnswers},
		{"without stripe client", testPseudonymiseWithoutStripeClient},
		{"without provider customer", testPseudonymiseWithoutProviderCustomer},
		{"concurrently", testPseudonymiseConcurrently},
		{"unknown account", testPurgeUnknownAccount},
		{"rejects", testPurgeRejects},
		{"delete_retained boundary", testDeleteRetainedBoundary},
		{"pseudonymise deletes what is past retention", testPseudonymiseDeletesWhatIsPastRetention},
		{"large account", testPseudonymiseLargeAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, env)
		})
	}
}

// The whole erase stage against the real stripe-mock: three accounts, one
// erased; its invoices past retention deleted, the others pseudonymised
// with numbers, dates and amounts kept; nothing personal left; the others
// untouched; a second run changes nothing.
func testPseudonymise(t *testing.T, env purgeEnv) {
	const now = "2026-06-15T10:00:00Z"
	s := env.store(t, WithStripe(stripeClient(t, env.stripeMock)), WithClock(at(t, now)))
	ctx := context.Background()
	ids := []string{account(t, 1), account(t, 2), account(t, 3)}
	for i, id := range ids {
		res := seed(t, s, id, SeedOptions{Invoices: 40, Seed: int64(i + 1), StartYear: 2015})
		if res.ProviderCustomers != 1 || res.PastRetention == 0 || res.PastRetention == res.Invoices {
			t.Fatalf("Seed %s = %+v, want a Stripe customer and invoices on both sides of retention", id, res)
		}
	}
	victim := ids[1]
	before := map[string][]invoiceRow{}
	for _, id := range ids {
		before[id] = invoiceRows(t, s, id)
	}
	fpBefore, err := s.Footprint(ctx, ids)
	if err != nil {
		t.Fatalf("Footprint: %v", err)
	}
	for _, fp := range fpBefore {
		if fp.Detail[KindCustomerFields] < 6 || fp.Detail[KindInvoicePersonalFields] < 40*4 || fp.Detail[KindProviderCustomer] != 1 || fp.Detail[KindInvoicesRetained] != 0 {
			t.Fatalf("footprint of seeded %s = %v", fp.AccountID, fp.Detail)
		}
	}
	originals := personalValues(t, s, victim)
	// The check after the purge must be able to fail: every value is in
	// the dump now.
	all := strings.Join(dump(t, s, victim), "\x00")
	for _, o := range originals {
		if !strings.Contains(all, o) {
			t.Fatalf("dump before the purge lacks %q", o)
		}
	}

	res, err := purge(ctx, s, victim)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if want := int64(len(before[victim])) + 2; res.ItemsPurged != want {
		t.Errorf("ItemsPurged = %d, want %d (every invoice deleted or pseudonymised, the customer, the Stripe customer)", res.ItemsPurged, want)
	}

	today := Today(at(t, now)())
	var kept []invoiceRow
	for _, r := range before[victim] {
		if !RetainUntil(r.IssuedOn).Before(today) {
			kept = append(kept, r)
		}
	}
	after := invoiceRows(t, s, victim)
	if len(after) != len(kept) || len(kept) == 0 {
		t.Fatalf("%d invoices left, want the %d still in retention", len(after), len(kept))
	}
	// The result dates the stage that deletes the kept invoices: the
	// latest issue date among them.
	var latest time.Time
	for _, r := range kept {
		if r.IssuedOn.After(latest) {
			latest = r.IssuedOn
		}
	}
	if got, ok := res.Anchors[AnchorInvoiceIssued]; !ok || !got.Equal(latest.UTC()) {
		t.Errorf("anchor %s = %v (present %v), want the latest kept invoice's issue date %s", AnchorInvoiceIssued, got, ok, latest)
	}
	pseudonym := pseudonymOf(t, s, victim)
	if !pseudonymPattern.MatchString(pseudonym) {
		t.Errorf("pseudonym %q is not psn_ and 26 base32 characters", pseudonym)
	}
	pseudonymisedAt := at(t, now)()
	for i, got := range after {
		want := kept[i]
		if got.Number != want.Number || !got.IssuedOn.Equal(want.IssuedOn) || !got.DueOn.Equal(want.DueOn) ||
			got.Currency != want.Currency || got.Net != want.Net || got.Tax != want.Tax || got.Gross != want.Gross ||
			*got.Country != *want.Country {
			t.Errorf("invoice %s changed its accounting data: %+v, was %+v", want.Number, got, want)
		}
		if got.Personal != [7]*string{} {
			t.Errorf("invoice %s still has personal fields", got.Number)
		}
		if got.RetainUntil == nil || !got.RetainUntil.Equal(RetainUntil(got.IssuedOn)) || got.RetainUntil.Year() != got.IssuedOn.Year()+8 {
			t.Errorf("invoice %s issued %s: retain_until %v, want %s", got.Number, got.IssuedOn.Format(time.DateOnly), got.RetainUntil, RetainUntil(got.IssuedOn).Format(time.DateOnly))
		}
		if got.PseudonymisedAt == nil || !got.PseudonymisedAt.Equal(pseudonymisedAt) {
			t.Errorf("invoice %s: pseudonymised_at %v, want %v", got.Number, got.PseudonymisedAt, pseudonymisedAt)
		}
	}
	assertNoneLeft(t, s, victim, originals)

	var erasedAt, providerDeletedAt *time.Time
	var provider, providerID *string
	if err := s.pool.QueryRow(ctx, `SELECT erased_at, provider_deleted_at, payment_provider, provider_customer_id FROM customers WHERE account_id = $1`, victim).
		Scan(&erasedAt, &providerDeletedAt, &provider, &providerID); err != nil {
		t.Fatalf("read tombstone: %v", err)
	}
	if erasedAt == nil || providerDeletedAt == nil || providerID != nil || provider == nil || *provider != ProviderStripe {
		t.Errorf("tombstone: erased_at %v, provider_deleted_at %v, provider %v, id kept %v", erasedAt, providerDeletedAt, provider, providerID != nil)
	}

	fpAfter, err := s.Footprint(ctx, ids)
	if err != nil {
		t.Fatalf("Footprint: %v", err)
	}
	if fp := fpAfter[1]; fp.Items != 0 || !maps.Equal(fp.Detail, zeroFootprint(int64(len(kept)))) {
		t.Errorf("footprint of the erased account = %d %v, want no personal data and %d retained invoices", fp.Items, fp.Detail, len(kept))
	}
	for _, i := range []int{0, 2} {
		if fpAfter[i].Items != fpBefore[i].Items || !maps.Equal(fpAfter[i].Detail, fpBefore[i].Detail) {
			t.Errorf("footprint of %s changed: %v, was %v", ids[i], fpAfter[i].Detail, fpBefore[i].Detail)
		}
		if got := invoiceRows(t, s, ids[i]); !reflect.DeepEqual(got, before[ids[i]]) {
			t.Errorf("invoices of %s changed", ids[i])
		}
	}

	last, ok, err := s.RetainedUntil(ctx, victim)
	if want := RetainUntil(kept[len(kept)-1].IssuedOn); err != nil || !ok || !last.Equal(want) {
		t.Errorf("RetainedUntil = %v, %v, %v; want %s", last, ok, err, want.Format(time.DateOnly))
	}
	if _, ok, err := s.RetainedUntil(ctx, ids[0]); ok || err != nil {
		t.Errorf("RetainedUntil of an account not erased = %v, %v; want none", ok, err)
	}

	again, err := purge(ctx, s, victim)
	if err != nil || again.ItemsPurged != 0 {
		t.Errorf("second Purge = %d, %v; want 0, nil", again.ItemsPurged, err)
	}
	if p := pseudonymOf(t, s, victim); p != pseudonym {
		t.Error("second Purge changed the pseudonym")
	}
	if got := invoiceRows(t, s, victim); !reflect.DeepEqual(got, after) {
		t.Error("second Purge changed the invoices")
	}
}

// The pseudonym is random: the same data of the same account erased twice
// (reset and seeded again in between) gets two different pseudonyms, and
// two accounts get different ones.
func testPseudonymsAreRandom(t *testing.T, env purgeEnv) {
	s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
	useStripe(t, s, newStatefulStripe(t).URL)
	ctx := context.Background()
	acct, other := account(t, 1), account(t, 2)
	opts := SeedOptions{Invoices: 10, Seed: 7, StartYear: 2022}
	run := func(id string) (pseudonym string, data []string) {
		t.Helper()
		resetAccount(t, s, id)
		s.stripe = nil // invent a fresh customer id, then delete it at the fake
		seed(t, s, id, opts)
		useStripe(t, s, newStatefulStripe(t).URL)
		data = personalValues(t, s, id)
		if _, err := purge(ctx, s, id); err != nil {
			t.Fatalf("Purge: %v", err)
		}
		return pseudonymOf(t, s, id), data
	}
	p1, data1 := run(acct)
	p2, data2 := run(acct)
	p3, _ := run(other)
	if !reflect.DeepEqual(data1, data2) {
		t.Fatal("the same seed gave different data in the two runs")
	}
	if p1 == p2 {
		t.Error("the same account and data got the same pseudonym in two runs: it is derived, not random")
	}
	if p1 == p3 || p2 == p3 {
		t.Error("two accounts got the same pseudonym")
	}
}

// Invoices added after an account was pseudonymised get the same pseudonym
// on the next run, so that the books still group the customer's invoices.
func testPseudonymReusedForLaterInvoices(t *testing.T, env purgeEnv) {
	acct := account(t, 1)
	s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
	ctx := context.Background()
	seed(t, s, acct, SeedOptions{Invoices: 5, StartYear: 2024})
	useStripe(t, s, newStatefulStripe(t).URL)
	if _, err := purge(ctx, s, acct); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	first := pseudonymOf(t, s, acct)
	insertInvoice(t, s, acct, "LATE-1", "2026-06-01")
	res, err := purge(ctx, s, acct)
	if err != nil || res.ItemsPurged != 1 {
		t.Fatalf("Purge = %d, %v; want the late invoice pseudonymised", res.ItemsPurged, err)
	}
	if p := pseudonymOf(t, s, acct); p != first {
		t.Error("the late invoice got another pseudonym")
	}
}

// A crash (or a transient Stripe failure) between the committed database
// transaction and the provider call: the erasure is done locally, the
// footprint shows the customer still at Stripe, and the repeated task
// finishes with the same idempotency key.
func testPseudonymiseProviderFailsThenSucceeds(t *testing.T, env purgeEnv) {
	for _, status := range []int{503, 429} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			acct := account(t, 1)
			proxy := newFaultyStripe(t, env.stripeMock, 1, status)
			s := env.store(t, WithStripe(stripeClient(t, proxy.URL)), WithClock(at(t, "2026-06-15T10:00:00Z")))
			seed(t, s, acct, SeedOptions{Invoices: 12, StartYear: 2023})
			ctx := context.Background()

			first, err := purge(ctx, s, acct)
			if err == nil || worker.IsPermanent(err) {
				t.Fatalf("Purge with Stripe failing = %v, want a transient error", err)
			}
			if first.ItemsPurged != 12+1 {
				t.Errorf("first ItemsPurged = %d, want the 12 invoices and the customer", first.ItemsPurged)
			}
			fp := footprint(t, s, acct)
			if fp.Items != 1 || fp.Detail[KindProviderCustomer] != 1 || fp.Detail[KindCustomerFields] != 0 || fp.Detail[KindInvoicePersonalFields] != 0 {
				t.Errorf("footprint between the two = %d %v, want only the Stripe customer left", fp.Items, fp.Detail)
			}

			second, err := purge(ctx, s, acct)
			if err != nil || second.ItemsPurged != 1 {
				t.Fatalf("retried Purge = %d, %v; want the Stripe customer deleted", second.ItemsPurged, err)
			}
			if fp := footprint(t, s, acct); fp.Items != 0 || fp.Detail[KindInvoicesRetained] != 12 {
				t.Errorf("footprint after the retry = %d %v", fp.Items, fp.Detail)
			}
			keys := proxy.deleteKeys()
			if len(keys) != 2 || keys[0] != keys[1] || keys[0] == "" {
				t.Errorf("idempotency keys of the two deletes = %q, want the same one twice", keys)
			}
		})
	}
}

// A crash between Stripe's deletion and clearing the stored id: the
// repeated task deletes again, Stripe answers 404 resource_missing, and
// that counts as done.
func testPseudonymiseCrashAfterProviderDelete(t *testing.T, env purgeEnv) {
	acct := account(t, 1)
	s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
	seed(t, s, acct, SeedOptions{Invoices: 3, StartYear: 2025})
	useStripe(t, s, newStatefulStripe(t).URL)
	crash := true
	s.afterProviderDelete = func() error {
		if crash {
			crash = false
			return errors.New("worker killed")
		}
		return nil
	}
	ctx := context.Background()
	if _, err := purge(ctx, s, acct); err == nil {
		t.Fatal("Purge survived the crash")
	}
	if fp := footprint(t, s, acct); fp.Detail[KindProviderCustomer] != 1 {
		t.Fatalf("footprint after the crash = %v, want the id kept", fp.Detail)
	}
	res, err := purge(ctx, s, acct)
	if err != nil || res.ItemsPurged != 0 {
		t.Fatalf("repeated Purge = %d, %v; want 0, nil (Stripe: already gone)", res.ItemsPurged, err)
	}
	if fp := footprint(t, s, acct); fp.Items != 0 {
		t.Errorf("footprint = %v, want nothing personal left", fp.Detail)
	}
}

// What Stripe answers to the delete decides the task's outcome: 404
// resource_missing is success; 409, 429 and 5xx are retried; other 4xx fail
// the task for good with "provider_refused" and a reason free of personal
// data. The local erasure is done in every case.
func testPseudonymiseProviderAnswers(t *testing.T, env purgeEnv) {
	tests := []struct {
		name          string
		status        int // 0: nothing listens
		body          string
		wantErr       bool
		wantPermanent bool
		wantClass     string // worker.ErrorClass of the error
	}{
		{name: "404 already gone", status: 404, body: `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: 'cus_x'"}}`},
		{name: "429", status: 429, body: `{"error":{"type":"invalid_request_error","code":"rate_limit"}}`, wantErr: true, wantClass: ClassProviderRateLimited},
		{name: "500", status: 500, body: `{"error":{"type":"api_error"}}`, wantErr: true, wantClass: ClassProviderUnavailable},
		{name: "409", status: 409, body: `{"error":{"type":"idempotency_error"}}`, wantErr: true, wantClass: ClassProviderUnavailable},
		{name: "unreachable", status: 0, wantErr: true, wantClass: ClassProviderUnreachable},
		{name: "400", status: 400, body: `{"error":{"type":"invalid_request_error","code":"parameter_unknown","message":"Received unknown parameter: Jürgen"}}`, wantErr: true, wantPermanent: true, wantClass: "provider_refused"},
		{name: "401", status: 401, body: `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_LetheStripeMock"}}`, wantErr: true, wantPermanent: true, wantClass: "provider_refused"},
		{name: "403", status: 403, body: `{"error":{"type":"invalid_request_error","code":"secret_key_required"}}`, wantErr: true, wantPermanent: true, wantClass: "provider_refused"},
		{name: "404 wrong URL", status: 404, body: `{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}`, wantErr: true, wantPermanent: true, wantClass: "provider_refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := account(t, 1)
			s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
			seed(t, s, acct, SeedOptions{Invoices: 4, StartYear: 2024})
			srv := cannedStripe(t, tt.status, tt.body)
			if tt.status == 0 {
				srv.Close()
			}
			useStripe(t, s, srv.URL)
			originals := personalValues(t, s, acct)
			res, err := purge(context.Background(), s, acct)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Purge = %v, want error %v", err, tt.wantErr)
			}
			if res.ItemsPurged != 5 {
				t.Errorf("ItemsPurged = %d, want 5 (4 invoices, the customer; the Stripe customer was not deleted by this call)", res.ItemsPurged)
			}
			fp := footprint(t, s, acct)
			if fp.Detail[KindCustomerFields] != 0 || fp.Detail[KindInvoicePersonalFields] != 0 {
				t.Errorf("local data not erased: %v", fp.Detail)
			}
			if !tt.wantErr {
				if fp.Items != 0 {
					t.Errorf("footprint = %v, want nothing left", fp.Detail)
				}
				return
			}
			if fp.Detail[KindProviderCustomer] != 1 {
				t.Errorf("footprint = %v, want the Stripe customer kept for the retry", fp.Detail)
			}
			if worker.IsPermanent(err) != tt.wantPermanent || worker.ErrorClass(err) != tt.wantClass {
				t.Errorf("Purge = %v (permanent %v, class %q), want permanent %v class %q",
					err, worker.IsPermanent(err), worker.ErrorClass(err), tt.wantPermanent, tt.wantClass)
			}
			for _, o := range append(originals, "Jürgen", "sk_test_", "Unrecognized", "cus_") {
				if strings.Contains(err.Error(), o) {
					t.Errorf("error %q contains %q", err, o)
				}
			}
			if !strings.Contains(err.Error(), acct) {
				t.Errorf("error %q does not name the account", err)
			}
			if tt.status != 0 && !strings.Contains(err.Error(), "stripe answered "+strconv.Itoa(tt.status)) {
				t.Errorf("error %q does not give the status", err)
			}
		})
	}
}

func testPseudonymiseWithoutStripeClient(t *testing.T, env purgeEnv) {
	acct := account(t, 1)
	s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
	seed(t, s, acct, SeedOptions{Invoices: 3, StartYear: 2025})
	_, err := purge(context.Background(), s, acct)
	var pe *worker.PermanentError
	if !errors.As(err, &pe) || pe.Code != "provider_not_configured" {
		t.Fatalf("Purge = %v, want a permanent provider_not_configured error", err)
	}
	if fp := footprint(t, s, acct); fp.Items != 1 || fp.Detail[KindProviderCustomer] != 1 {
		t.Errorf("footprint = %v, want only the Stripe customer left", fp.Detail)
	}
}

// A customer that never had a payment provider is done after the database
// transaction.
func testPseudonymiseWithoutProviderCustomer(t *testing.T, env purgeEnv) {
	acct := account(t, 1)
	s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
	seed(t, s, acct, SeedOptions{Invoices: 3, StartYear: 2025})
	if _, err := s.pool.Exec(context.Background(), `UPDATE customers SET provider_customer_id = NULL, payment_provider = NULL WHERE account_id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	res, err := purge(context.Background(), s, acct)
	if err != nil || res.ItemsPurged != 4 {
		t.Fatalf("Purge = %d, %v; want 4, nil", res.ItemsPurged, err)
	}
	if fp := footprint(t, s, acct); fp.Items != 0 {
		t.Errorf("footprint = %v", fp.Detail)
	}
}

// Two deliveries of the same task at once (a redelivery while the first
// still runs): the customer row lock makes them run one after the other,
// and the account ends with one pseudonym.
func testPseudonymiseConcurrently(t *testing.T, env purgeEnv) {
	acct := account(t, 1)
	s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
	seed(t, s, acct, SeedOptions{Invoices: 200, StartYear: 2019})
	useStripe(t, s, newStatefulStripe(t).URL)
	var wg sync.WaitGroup
	var items [4]int64
	var errs [4]error
	for i := range items {
		wg.Go(func() {
			res, err := purge(context.Background(), s, acct)
			items[i], errs[i] = res.ItemsPurged, err
		})
	}
	wg.Wait()
	var total int64
	for i := range items {
		if errs[i] != nil {
			t.Errorf("Purge %d: %v", i, errs[i])
		}
		total += items[i]
	}
	if total != 200+1+1 {
		t.Errorf("items over all runs = %d, want each invoice, the customer and the Stripe customer once", total)
	}
	pseudonymOf(t, s, acct)
	if fp := footprint(t, s, acct); fp.Items != 0 {
		t.Errorf("footprint = %v", fp.Detail)
	}
}

func testPurgeUnknownAccount(t *testing.T, env purgeEnv) {
	s := env.store(t)
	for _, action := range []string{ActionPseudonymise, "", ActionDeleteRetained} {
		res, err := s.Purge(context.Background(), task(account(t, 404), action))
		if err != nil || res.ItemsPurged != 0 {
			t.Errorf("Purge %q of an unknown account = %d, %v; want 0, nil", action, res.ItemsPurged, err)
		}
	}
	fps, err := s.Footprint(context.Background(), []string{account(t, 404), account(t, 405), account(t, 404)})
	if err != nil || len(fps) != 3 || fps[2].AccountID != account(t, 404) || fps[0].Items != 0 || len(fps[0].Detail) != 4 {
		t.Errorf("Footprint of unknown accounts = %+v, %v; want three zero entries in order", fps, err)
	}
}

func testPurgeRejects(t *testing.T, env purgeEnv) {
	s := env.store(t)
	tests := []struct {
		name     string
		give     worker.Task
		wantCode string
		wantIs   error
	}{
		{name: "empty account", give: task("", ActionPseudonymise), wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "e-mail as account", give: task("jane.doe@kunde.example", ActionPseudonymise), wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "white space", give: task("acc 1", ActionDeleteRetained), wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "too long", give: task(strings.Repeat("a", maxAccountIDLen+1), ActionPseudonymise), wantCode: "bad_task", wantIs: ErrInvalidAccountID},
		{name: "delete", give: task("acc-1", "delete"), wantCode: "unsupported_action"},
		{name: "suppress", give: task("acc-1", "suppress"), wantCode: "unsupported_action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Purge(context.Background(), tt.give)
			var pe *worker.PermanentError
			if !errors.As(err, &pe) || pe.Code != tt.wantCode {
				t.Fatalf("Purge = %v, want a permanent %q error", err, tt.wantCode)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Purge = %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.wantCode == "bad_task" && tt.give.AccountID != "" && strings.Contains(err.Error(), tt.give.AccountID) {
				t.Errorf("error %q repeats the rejected id", err)
			}
		})
	}
}

// insertInvoice adds an invoice issued on the given day, with personal
// fields, numbered account/label, and the account's customer if missing.
func insertInvoice(t *testing.T, s *Store, account, label, issued string) {
	t.Helper()
	if _, err := s.pool.Exec(context.Background(), `
INSERT INTO customers (account_id, name, city) VALUES ($1, 'Erika Mustermann', 'Köln')
ON CONFLICT DO NOTHING`, account); err != nil {
		t.Fatalf("insert customer: %v", err)
	}
	if _, err := s.pool.Exec(context.Background(), `
INSERT INTO invoices (number, account_id, issued_on, due_on, currency, net_amount, tax_amount, gross_amount, customer_name, city, country)
VALUES ($1, $2, $3::date, $3::date + 14, 'EUR', 2900, 551, 3451, 'Erika Mustermann', 'Köln', 'DE')`, account+"/"+label, account, issued); err != nil {
		t.Fatalf("insert invoice: %v", err)
	}
}

// invoiceLabels are the labels (see insertInvoice) of the account's
// invoices, in order.
func invoiceLabels(t *testing.T, s *Store, account string) []string {
	t.Helper()
	var out []string
	for _, r := range invoiceRows(t, s, account) {
		out = append(out, strings.TrimPrefix(r.Number, account+"/"))
	}
	return out
}

// delete_retained deletes an invoice from the first day after its
// retain_until, counted in German time: invoices of 2017, issued on 1
// January or on 31 December, are kept until 31 December 2025 and deleted
// from 1 January 2026 00:00 in Berlin (2025-12-31 23:00 UTC); one of 2018
// a year later. It works on pseudonymised invoices (recorded retain_until)
// and on ones never pseudonymised (computed from the date of issue).
func testDeleteRetainedBoundary(t *testing.T, env purgeEnv) {
	for _, pseudonymised := range []bool{true, false} {
		name := "never pseudonymised"
		if pseudonymised {
			name = "pseudonymised"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clock := &settableClock{}
			clock.set(t, "2025-06-01T12:00:00Z")
			s := env.store(t, WithClock(clock.now))
			acct, other := account(t, 1), account(t, 2)
			insertInvoice(t, s, acct, "RE-2017-JAN01", "2017-01-01")
			insertInvoice(t, s, acct, "RE-2017-DEC31", "2017-12-31")
			insertInvoice(t, s, acct, "RE-2018-JAN01", "2018-01-01")
			insertInvoice(t, s, other, "RE-2016-OTHER", "2016-05-05")
			if pseudonymised {
				if _, err := purge(context.Background(), s, acct); err != nil {
					t.Fatalf("Purge: %v", err)
				}
				for _, r := range invoiceRows(t, s, acct) {
					if r.RetainUntil == nil || !r.RetainUntil.Equal(RetainUntil(r.IssuedOn)) {
						t.Fatalf("invoice %s: retain_until %v", r.Number, r.RetainUntil)
					}
				}
			}
			steps := []struct {
				now      string
				want     []string
				wantGone int64
			}{
				{now: "2025-12-31T22:59:59Z", want: []string{"RE-2017-DEC31", "RE-2017-JAN01", "RE-2018-JAN01"}},
				{now: "2025-12-31T23:00:00Z", want: []string{"RE-2018-JAN01"}, wantGone: 2},
				{now: "2026-12-31T22:59:59Z", want: []string{"RE-2018-JAN01"}},
				{now: "2026-12-31T23:00:00Z", want: nil, wantGone: 1},
			}
			for _, st := range steps {
				clock.set(t, st.now)
				res, err := s.Purge(context.Background(), task(acct, ActionDeleteRetained))
				if err != nil || res.ItemsPurged != st.wantGone {
					t.Fatalf("at %s: delete_retained = %d, %v; want %d", st.now, res.ItemsPurged, err, st.wantGone)
				}
				if got := invoiceLabels(t, s, acct); !reflect.DeepEqual(got, st.want) {
					t.Errorf("at %s: invoices left %v, want %v", st.now, got, st.want)
				}
			}
			if got := invoiceLabels(t, s, other); len(got) != 1 {
				t.Errorf("another account's invoice, long past retention, was deleted: %v", got)
			}
		})
	}
}

// Pseudonymise deletes what is already past retention instead of keeping
// it pseudonymised, on the same boundary as delete_retained.
func testPseudonymiseDeletesWhatIsPastRetention(t *testing.T, env purgeEnv) {
	tests := []struct {
		now  string
		want []string
	}{
		{now: "2025-12-31T22:59:59Z", want: []string{"RE-2017-DEC31", "RE-2017-JAN01", "RE-2018-JAN01"}},
		{now: "2025-12-31T23:00:00Z", want: []string{"RE-2018-JAN01"}},
	}
	for _, tt := range tests {
		t.Run(tt.now, func(t *testing.T) {
			t.Parallel()
			acct := account(t, 1)
			s := env.store(t, WithClock(at(t, tt.now)))
			insertInvoice(t, s, acct, "RE-2017-JAN01", "2017-01-01")
			insertInvoice(t, s, acct, "RE-2017-DEC31", "2017-12-31")
			insertInvoice(t, s, acct, "RE-2018-JAN01", "2018-01-01")
			if _, err := purge(context.Background(), s, acct); err != nil {
				t.Fatalf("Purge: %v", err)
			}
			if got := invoiceLabels(t, s, acct); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("invoices left %v, want %v", got, tt.want)
			}
			if fp := footprint(t, s, acct); fp.Items != 0 || fp.Detail[KindInvoicesRetained] != int64(len(tt.want)) {
				t.Errorf("footprint = %v", fp.Detail)
			}
		})
	}
}

// An account at the upper end of the expected size is erased in one
// transaction quickly enough that batching is not needed.
func testPseudonymiseLargeAccount(t *testing.T, env purgeEnv) {
	acct := account(t, 1)
	s := env.store(t, WithClock(at(t, "2026-06-15T10:00:00Z")))
	const n = 10000
	seed(t, s, acct, SeedOptions{Invoices: n, StartYear: 2019})
	useStripe(t, s, newStatefulStripe(t).URL)
	start := time.Now()
	res, err := purge(context.Background(), s, acct)
	took := time.Since(start)
	if err != nil || res.ItemsPurged != n+2 {
		t.Fatalf("Purge = %d, %v", res.ItemsPurged, err)
	}
	t.Logf("pseudonymised %d invoices in %s", n, took)
	if took > 20*time.Second {
		t.Errorf("pseudonymising %d invoices took %s: batch it", n, took)
	}
}
