package billingstore

import (
	"context"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
	"github.com/lethe-privacy/lethe/services/billing/stripemock"
)

// seedEnv is what the seed tests share: one migrated database (each test
// uses accounts of its own) and one stripe-mock.
type seedEnv struct {
	dsn        string
	stripeMock string
}

func TestSeed(t *testing.T) {
	t.Parallel()
	env := seedEnv{dsn: migratedDatabase(t), stripeMock: stripemock.Start(t).URL}
	tests := []struct {
		name string
		run  func(*testing.T, seedEnv)
	}{
		{"realistic data at stripe-mock", testSeedRealisticData},
		{"defaults", testSeedDefaults},
		{"invented provider ids", testSeedWithoutStripe},
		{"deterministic per seed and account", testSeedDeterministic},
		{"existing customer gets more invoices", testSeedExistingCustomer},
		{"after erasure", testSeedAfterErasure},
		{"rejects", testSeedRejects},
		{"cancelled writes nothing", testSeedCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, env)
		})
	}
}

type customerRow struct {
	Name, Company, Email, Line1, Line2, PostalCode, City, Country, VATID, Provider, ProviderID *string
}

func readCustomer(t *testing.T, s *Store, account string) customerRow {
	t.Helper()
	var c customerRow
	if err := s.pool.QueryRow(context.Background(), `
SELECT name, company, email, address_line1, address_line2, postal_code, city, country, vat_id, payment_provider, provider_customer_id
FROM customers WHERE account_id = $1`, account).Scan(&c.Name, &c.Company, &c.Email, &c.Line1, &c.Line2, &c.PostalCode,
		&c.City, &c.Country, &c.VATID, &c.Provider, &c.ProviderID); err != nil {
		t.Fatalf("read customer: %v", err)
	}
	return c
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

var (
	vatIDPatterns = map[string]*regexp.Regexp{
		"DE": regexp.MustCompile(`^DE[0-9]{9}$`),
		"AT": regexp.MustCompile(`^ATU[0-9]{8}$`),
		"NL": regexp.MustCompile(`^NL[0-9]{9}B[0-9]{2}$`),
		"FR": regexp.MustCompile(`^FR[0-9]{11}$`),
		"IT": regexp.MustCompile(`^IT[0-9]{11}$`),
		"ES": regexp.MustCompile(`^ESB[0-9]{8}$`),
		"PL": regexp.MustCompile(`^PL[0-9]{10}$`),
		"SE": regexp.MustCompile(`^SE[0-9]{10}01$`),
		"DK": regexp.MustCompile(`^DK[0-9]{8}$`),
		"IE": regexp.MustCompile(`^IE[0-9]{7}T$`),
		"BE": regexp.MustCompile(`^BE0[0-9]{9}$`),
	}
	emailPattern  = regexp.MustCompile(`^[a-z0-9-]+\.[a-z0-9-]+@[a-z0-9-]+(-[a-z]{2})?\.example$`)
	numberPattern = regexp.MustCompile(`^RE-([0-9]{4})-[0-9]{7}$`)
)

// checkSeeded checks the customer and invoices of a seeded account for
// realism and consistency, and returns how many invoices are past
// retention at today.
func checkSeeded(t *testing.T, s *Store, acct string, start, today time.Time) (invoices, pastRetention int) {
	t.Helper()
	c := readCustomer(t, s, acct)
	pattern, ok := vatIDPatterns[str(c.Country)]
	switch {
	case !ok:
		t.Errorf("country %q is not one of the demo's", str(c.Country))
	case c.VATID != nil && !pattern.MatchString(*c.VATID):
		t.Errorf("VAT id %q does not have the form of %s", *c.VATID, *c.Country)
	case c.VATID != nil && c.Company == nil:
		t.Error("a VAT id without a company")
	}
	if !emailPattern.MatchString(str(c.Email)) {
		t.Errorf("e-mail %q is not a personal address under .example", str(c.Email))
	}
	if str(c.Name) == "" || str(c.Line1) == "" || str(c.PostalCode) == "" || str(c.City) == "" {
		t.Errorf("customer lacks name or address: %+v", c)
	}
	if str(c.Provider) != ProviderStripe || !stripeapi.ValidCustomerID(str(c.ProviderID)) {
		t.Errorf("provider %q id well-formed %v", str(c.Provider), stripeapi.ValidCustomerID(str(c.ProviderID)))
	}
	rows := invoiceRows(t, s, acct)
	var last time.Time
	for _, r := range rows {
		m := numberPattern.FindStringSubmatch(r.Number)
		if m == nil || m[1] != strconv.Itoa(r.IssuedOn.Year()) {
			t.Errorf("invoice number %q does not name the year of issue %d", r.Number, r.IssuedOn.Year())
		}
		if r.IssuedOn.Before(start) || r.IssuedOn.After(today) || r.IssuedOn.Before(last) {
			t.Errorf("invoice %s issued %s: outside %s..%s or out of order", r.Number, r.IssuedOn.Format(time.DateOnly), start.Format(time.DateOnly), today.Format(time.DateOnly))
		}
		last = r.IssuedOn
		if !r.DueOn.Equal(r.IssuedOn.AddDate(0, 0, 14)) || r.Currency != "EUR" || r.Net <= 0 || r.Gross != r.Net+r.Tax {
			t.Errorf("invoice %s: due %s, %s %d + %d = %d", r.Number, r.DueOn.Format(time.DateOnly), r.Currency, r.Net, r.Tax, r.Gross)
		}
		wantTax := (r.Net*19 + 50) / 100
		if c.VATID != nil && str(c.Country) != "DE" {
			wantTax = 0 // reverse charge
		}
		if r.Tax != wantTax {
			t.Errorf("invoice %s: tax %d on %d, want %d", r.Number, r.Tax, r.Net, wantTax)
		}
		printed := [7]*string{c.Name, c.Company, c.Line1, c.Line2, c.PostalCode, c.City, c.VATID}
		if !reflect.DeepEqual(r.Personal, printed) || str(r.Country) != str(c.Country) || r.Pseudonym != nil || r.RetainUntil != nil {
			t.Errorf("invoice %s does not print the customer as stored", r.Number)
		}
		if RetainUntil(r.IssuedOn).Before(today) {
			pastRetention++
		}
	}
	return len(rows), pastRetention
}

func testSeedRealisticData(t *testing.T, env seedEnv) {
	acct := account(t, 1)
	const now = "2026-06-15T10:00:00Z"
	s := openStore(t, env.dsn, WithStripe(stripeClient(t, env.stripeMock)), WithClock(at(t, now)))
	var calls []int64
	res, err := s.Seed(context.Background(), acct, SeedOptions{Invoices: 2*seedChunk + 10, Seed: 3, StartYear: 2014}, func(done, total int64) {
		if total != 2*seedChunk+10 {
			t.Errorf("progress total = %d", total)
		}
		calls = append(calls, done)
	})
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if !reflect.DeepEqual(calls, []int64{seedChunk, 2 * seedChunk, 2*seedChunk + 10}) {
		t.Errorf("progress calls = %v", calls)
	}
	today := Today(at(t, now)())
	n, past := checkSeeded(t, s, acct, time.Date(2014, 1, 1, 0, 0, 0, 0, time.UTC), today)
	want := SeedResult{AccountID: acct, Customers: 1, ProviderCustomers: 1, Invoices: int64(n), PastRetention: int64(past)}
	if res != want || n != 2*seedChunk+10 || past == 0 {
		t.Errorf("Seed = %+v, want %+v with invoices past retention", res, want)
	}
	// 2014 to mid-2026, evenly: 2014 to 2017 are past retention.
	if frac := float64(past) / float64(n); frac < 0.28 || frac > 0.36 {
		t.Errorf("%.2f of the invoices are past retention, want about 4 of 12.5 years", frac)
	}
}

func testSeedDefaults(t *testing.T, env seedEnv) {
	acct := account(t, 1)
	s := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))
	res := seed(t, s, acct, SeedOptions{})
	if res.Invoices != defaultSeedInvoices || res.PastRetention == 0 {
		t.Errorf("Seed = %+v, want %d invoices, some past retention", res, defaultSeedInvoices)
	}
	rows := invoiceRows(t, s, acct)
	if first := rows[0].IssuedOn; first.Year() != 2016 {
		t.Errorf("first invoice issued %s, want in 2016, ten years back", first.Format(time.DateOnly))
	}
}

func testSeedWithoutStripe(t *testing.T, env seedEnv) {
	acct := account(t, 1)
	s := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))
	res := seed(t, s, acct, SeedOptions{Invoices: 3})
	if res.Customers != 1 || res.ProviderCustomers != 0 {
		t.Errorf("Seed = %+v, want a customer not created at Stripe", res)
	}
	checkSeeded(t, s, acct, time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC), Today(at(t, "2026-06-15T10:00:00Z")()))
}

// customerData is what Seed generates, without the parts that differ per
// run (invoice numbers, provider ids).
func customerData(t *testing.T, s *Store, acct string) []string {
	t.Helper()
	c := readCustomer(t, s, acct)
	out := []string{str(c.Name), str(c.Company), str(c.Email), str(c.Line1), str(c.Line2), str(c.PostalCode), str(c.City), str(c.Country), str(c.VATID)}
	for _, r := range invoiceRows(t, s, acct) {
		out = append(out, r.IssuedOn.Format(time.DateOnly), strconv.FormatInt(r.Gross, 10))
	}
	return out
}

func testSeedDeterministic(t *testing.T, env seedEnv) {
	s := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))
	acct, other := account(t, 1), account(t, 2)
	opts := SeedOptions{Invoices: 30, Seed: 11, StartYear: 2020}
	seed(t, s, acct, opts)
	first := customerData(t, s, acct)
	resetAccount(t, s, acct)
	seed(t, s, acct, opts)
	if again := customerData(t, s, acct); !reflect.DeepEqual(first, again) {
		t.Errorf("the same seed and account gave different data:\n%v\n%v", first, again)
	}
	seed(t, s, other, opts)
	if reflect.DeepEqual(first, customerData(t, s, other)) {
		t.Error("two accounts with the same seed got the same data")
	}
}

func testSeedExistingCustomer(t *testing.T, env seedEnv) {
	acct := account(t, 1)
	s := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))
	seed(t, s, acct, SeedOptions{Invoices: 5, StartYear: 2025})
	before := readCustomer(t, s, acct)
	res := seed(t, s, acct, SeedOptions{Invoices: 7, Seed: 99, StartYear: 2026})
	if res.Customers != 0 || res.Invoices != 7 {
		t.Errorf("second Seed = %+v, want 7 invoices for the existing customer", res)
	}
	if after := readCustomer(t, s, acct); !reflect.DeepEqual(before, after) {
		t.Error("second Seed changed the customer")
	}
	for _, r := range invoiceRows(t, s, acct) {
		if str(r.Personal[0]) != str(before.Name) {
			t.Errorf("invoice %s printed for %q", r.Number, str(r.Personal[0]))
		}
	}
}

// An erased account can be seeded again once its customer is deleted at
// the provider; before that, a new customer would overwrite the id the
// erasure still needs.
func testSeedAfterErasure(t *testing.T, env seedEnv) {
	ctx := context.Background()
	s := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))

	done := account(t, 1)
	seed(t, s, done, SeedOptions{Invoices: 4, StartYear: 2024})
	s.stripe = stripeClient(t, env.stripeMock)
	if _, err := purge(ctx, s, done); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	res := seed(t, s, done, SeedOptions{Invoices: 2, StartYear: 2026})
	if res.Customers != 1 || res.ProviderCustomers != 1 {
		t.Errorf("Seed after erasure = %+v, want a new customer", res)
	}
	fp := footprint(t, s, done)
	if fp.Detail[KindCustomerFields] == 0 || fp.Detail[KindInvoicesRetained] != 4 || fp.Detail[KindProviderCustomer] != 1 {
		t.Errorf("footprint = %v, want a live customer next to the 4 retained invoices", fp.Detail)
	}

	pending := account(t, 2)
	s2 := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))
	seed(t, s2, pending, SeedOptions{Invoices: 2, StartYear: 2025})
	if _, err := purge(ctx, s2, pending); err == nil {
		t.Fatal("Purge without a Stripe client succeeded")
	}
	if _, err := s2.Seed(ctx, pending, SeedOptions{Invoices: 2}, nil); !errors.Is(err, ErrErasurePending) {
		t.Errorf("Seed with the provider deletion pending = %v, want ErrErasurePending", err)
	}
}

func testSeedRejects(t *testing.T, env seedEnv) {
	s := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))
	acct := account(t, 1)
	tests := []struct {
		name    string
		account string
		opts    SeedOptions
		wantIs  error
	}{
		{name: "empty account", account: "", wantIs: ErrInvalidAccountID},
		{name: "e-mail as account", account: "jane@kunde.example", wantIs: ErrInvalidAccountID},
		{name: "negative invoices", account: acct, opts: SeedOptions{Invoices: -1}, wantIs: ErrInvalidSeedOptions},
		{name: "too many invoices", account: acct, opts: SeedOptions{Invoices: maxSeedInvoices + 1}, wantIs: ErrInvalidSeedOptions},
		{name: "start year in the future", account: acct, opts: SeedOptions{StartYear: 2027}, wantIs: ErrInvalidSeedOptions},
		{name: "start year too early", account: acct, opts: SeedOptions{StartYear: 1969}, wantIs: ErrInvalidSeedOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Seed(context.Background(), tt.account, tt.opts, nil)
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Seed = %v, want it to wrap %v", err, tt.wantIs)
			}
			if strings.Contains(tt.account, "@") && strings.Contains(err.Error(), tt.account) {
				t.Errorf("error %q repeats the address", err)
			}
		})
	}
	if fp := footprint(t, s, acct); fp.Items != 0 {
		t.Errorf("rejected seeds wrote %v", fp.Detail)
	}
}

// A Seed that fails half-way leaves no rows: it is one transaction.
func testSeedCancelled(t *testing.T, env seedEnv) {
	s := openStore(t, env.dsn, WithClock(at(t, "2026-06-15T10:00:00Z")))
	acct := account(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := s.Seed(ctx, acct, SeedOptions{Invoices: 3 * seedChunk}, func(done, total int64) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Seed = %v, want it to wrap context.Canceled", err)
	}
	if fp := footprint(t, s, acct); fp.Items != 0 {
		t.Errorf("cancelled Seed left %v", fp.Detail)
	}
}
