package billingstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/demodata"
	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
)

// SeedOptions shapes the demo data Seed writes. Zero fields take the
// defaults; negative ones are an error.
type SeedOptions struct {
	// Invoices to create; default 60, at most 100000.
	Invoices int
	// Seed makes the data reproducible: the same Seed for the same account
	// gives the same customer, dates and amounts (invoice numbers and
	// provider ids aside).
	Seed int64
	// StartYear is the year of the first invoice; default ten years before
	// the current one, so that the oldest invoices are past their
	// retention. The invoices are spread evenly from 1 January of StartYear
	// to today. From 1970 to the current year.
	StartYear int
}

// SeedResult counts what Seed wrote.
type SeedResult struct {
	AccountID string
	// Customers is 1 when Seed created the customer, 0 when the account
	// already had one and Seed only added invoices.
	Customers int64
	// ProviderCustomers is 1 when Seed created the customer at the payment
	// provider (the store has a Stripe client), 0 when it invented the
	// provider id or the customer existed.
	ProviderCustomers int64
	// Invoices is the number of invoices written.
	Invoices int64
	// PastRetention counts the written invoices whose retention has
	// already ended: a purge deletes them instead of pseudonymising them.
	PastRetention int64
}

// Seed limits.
const (
	defaultSeedInvoices = 60
	maxSeedInvoices     = 100000
	// seedChunk is how many invoices one COPY writes, and so how often Seed
	// reports progress.
	seedChunk = 2000
)

// ErrErasurePending is wrapped by Seed's error for an account whose
// customer is erased but not yet deleted at the payment provider: a new
// customer would overwrite the id the erasure still needs.
var ErrErasurePending = errors.New("erasure of the account's customer is still pending at the payment provider")

const (
	lockSeedCustomerSQL = `
SELECT name, company, address_line1, address_line2, postal_code, city, country, vat_id,
       erased_at IS NOT NULL, provider_customer_id IS NOT NULL
FROM customers WHERE account_id = $1
FOR UPDATE`

	// A tombstone is replaced by the new customer; a live customer is left
	// alone (RowsAffected 0: another Seed created it meanwhile).
	upsertCustomerSQL = `
INSERT INTO customers (account_id, name, company, email, address_line1, address_line2,
                       postal_code, city, country, vat_id, payment_provider, provider_customer_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (account_id) DO UPDATE SET
	name = EXCLUDED.name, company = EXCLUDED.company, email = EXCLUDED.email,
	address_line1 = EXCLUDED.address_line1, address_line2 = EXCLUDED.address_line2,
	postal_code = EXCLUDED.postal_code, city = EXCLUDED.city, country = EXCLUDED.country,
	vat_id = EXCLUDED.vat_id, payment_provider = EXCLUDED.payment_provider,
	provider_customer_id = EXCLUDED.provider_customer_id, created_at = EXCLUDED.created_at,
	erased_at = NULL, provider_deleted_at = NULL
WHERE customers.erased_at IS NOT NULL AND customers.provider_customer_id IS NULL`
)

// Seed writes realistic demo billing data for one account: a customer
// (German or other EU, a person with or without a company, postal address,
// VAT id of the country's form, e-mail under the reserved .example domain;
// all invented) and opts.Invoices invoices spread from StartYear to today,
// each with a copy of the customer's name and address as printed, so that
// some are already past their retention.
//
// The customer is created at Stripe when the store has a Stripe client
// (stripe-mock in the demo; with a real test-mode key, a real test
// customer), else its Stripe id is invented: deleting an invented id later
// is a 404 at Stripe, which counts as already gone, and a 200 at
// stripe-mock.
//
// Seeding an account that has a customer adds invoices for that customer.
// An erased customer (a tombstone) is replaced by a new one, unless its
// deletion at the provider is still pending (ErrErasurePending). The
// database part is one transaction: a failed Seed leaves no rows, though a
// customer it created at the provider stays there. progress, when not nil,
// is called after every chunk of invoices with the invoices written and
// the total. Errors wrap ErrInvalidAccountID or ErrInvalidSeedOptions for
// bad arguments.
func (s *Store) Seed(ctx context.Context, accountID string, opts SeedOptions, progress func(done, total int64)) (SeedResult, error) {
	res := SeedResult{AccountID: accountID}
	if err := checkAccountID(accountID); err != nil {
		return res, fmt.Errorf("seed billing data: %w", err)
	}
	now := s.now()
	today := Today(now)
	opts, err := opts.withDefaults(today.Year())
	if err != nil {
		return res, fmt.Errorf("seed billing data of account %s: %w", accountID, err)
	}
	gen := newGenerator(opts.Seed, accountID)

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("seed billing data of account %s: begin: %w", accountID, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	cust, created, providerCreated, err := s.seedCustomer(ctx, tx, accountID, gen, now)
	if err != nil {
		return res, fmt.Errorf("seed billing data of account %s: %w", accountID, err)
	}
	if created {
		res.Customers = 1
	}
	if providerCreated {
		res.ProviderCustomers = 1
	}
	gen.pickPlan()

	numbers, err := reserveInvoiceNumbers(ctx, tx, opts.Invoices)
	if err != nil {
		return res, fmt.Errorf("seed invoices of account %s: %w", accountID, err)
	}
	dates := gen.issueDates(opts.Invoices, time.Date(opts.StartYear, time.January, 1, 0, 0, 0, 0, time.UTC), today)
	total := int64(opts.Invoices)
	for done := 0; done < opts.Invoices; {
		size := min(seedChunk, opts.Invoices-done)
		rows := make([][]any, 0, size)
		for i := done; i < done+size; i++ {
			inv := gen.invoice(cust, dates[i])
			if RetainUntil(inv.issued).Before(today) {
				res.PastRetention++
			}
			rows = append(rows, []any{
				invoiceNumber(dates[i].Year(), numbers[i]), accountID, inv.issued, inv.due, "EUR",
				inv.net, inv.tax, inv.net + inv.tax,
				cust.name, cust.company, cust.line1, cust.line2, cust.postalCode, cust.city, cust.vatID, cust.country,
			})
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"invoices"}, []string{
			"number", "account_id", "issued_on", "due_on", "currency",
			"net_amount", "tax_amount", "gross_amount",
			"customer_name", "customer_company", "address_line1", "address_line2", "postal_code", "city", "vat_id", "country",
		}, pgx.CopyFromRows(rows))
		if err != nil {
			return res, fmt.Errorf("seed invoices of account %s: %w", accountID, err)
		}
		res.Invoices += n
		done += size
		if progress != nil {
			progress(int64(done), total)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("seed billing data of account %s: commit: %w", accountID, err)
	}
	return res, nil
}

func (o SeedOptions) withDefaults(currentYear int) (SeedOptions, error) {
	if o.Invoices < 0 || o.StartYear < 0 {
		return o, fmt.Errorf("%w: negative invoices or start year", ErrInvalidSeedOptions)
	}
	if o.Invoices > maxSeedInvoices {
		return o, fmt.Errorf("%w: at most %d invoices", ErrInvalidSeedOptions, maxSeedInvoices)
	}
	if o.Invoices == 0 {
		o.Invoices = defaultSeedInvoices
	}
	if o.StartYear == 0 {
		o.StartYear = currentYear - 10
	}
	if o.StartYear < 1970 || o.StartYear > currentYear {
		return o, fmt.Errorf("%w: start year %d is not between 1970 and %d", ErrInvalidSeedOptions, o.StartYear, currentYear)
	}
	return o, nil
}

// seedCustomer returns the customer the invoices are printed for: the
// account's live customer, or a new one written to the database (and
// created at the provider when the store has a client).
func (s *Store) seedCustomer(ctx context.Context, tx pgx.Tx, accountID string, gen *generator, now time.Time) (c customer, created, providerCreated bool, err error) {
	var name, company, line1, line2, postal, city, country, vatID *string
	var erased, providerPending bool
	err = tx.QueryRow(ctx, lockSeedCustomerSQL, accountID).Scan(&name, &company, &line1, &line2, &postal, &city, &country, &vatID, &erased, &providerPending)
	switch {
	case err == nil && !erased:
		return customer{
			name: deref(name), company: company, line1: deref(line1), line2: line2,
			postalCode: deref(postal), city: deref(city), country: deref(country), vatID: vatID,
		}, false, false, nil
	case err == nil && providerPending:
		return c, false, false, ErrErasurePending
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return c, false, false, fmt.Errorf("lock customer: %w", err)
	}

	c = gen.customer()
	customerID := gen.fakeCustomerID()
	if s.stripe != nil {
		params := stripeapi.CustomerParams{
			Name:     c.name,
			Email:    c.email,
			Address:  stripeapi.Address{Line1: c.line1, PostalCode: c.postalCode, City: c.city, Country: c.country},
			Metadata: map[string]string{"account_id": accountID, "source": "lethe-seed"},
		}
		if c.company != nil {
			params.Name = *c.company
		}
		if c.line2 != nil {
			params.Address.Line2 = *c.line2
		}
		if c.vatID != nil {
			params.EUVATID = *c.vatID
		}
		cust, err := s.stripe.CreateCustomer(ctx, params, seedKey())
		if err != nil {
			return c, false, false, fmt.Errorf("create the customer at Stripe: %w", err)
		}
		customerID = cust.ID
		providerCreated = true
	}
	tag, err := tx.Exec(ctx, upsertCustomerSQL, accountID, c.name, c.company, c.email, c.line1, c.line2,
		c.postalCode, c.city, c.country, c.vatID, ProviderStripe, customerID, now)
	if err != nil {
		return c, false, false, fmt.Errorf("write customer: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return c, false, false, errors.New("write customer: another seed created it meanwhile; seed again")
	}
	return c, true, providerCreated, nil
}

// seedKey is the idempotency key of one customer creation: random, because
// a key derived from the account would make Stripe return the customer a
// previous seed created (and an erasure deleted) for 24 hours.
func seedKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand aborts the process instead
	return "lethe-seed-" + hex.EncodeToString(b[:])
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// reserveInvoiceNumbers takes n numbers from the invoice number sequence.
func reserveInvoiceNumbers(ctx context.Context, tx pgx.Tx, n int) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT nextval('invoice_number_seq') FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, fmt.Errorf("reserve %d invoice numbers: %w", n, err)
	}
	nums, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("reserve %d invoice numbers: %w", n, err)
	}
	return nums, nil
}

func invoiceNumber(year int, n int64) string {
	return fmt.Sprintf("RE-%d-%07d", year, n)
}

// customer is one generated (or stored) customer as printed on invoices.
type customer struct {
	name, email, line1, postalCode, city, country string
	company, line2, vatID                         *string
}

type invoice struct {
	issued, due time.Time
	net, tax    int64
}

// generator makes the demo rows. Its random source is seeded from the Seed
// and the account id, so that two accounts seeded alike still differ.
type generator struct {
	rnd  *mrand.Rand
	plan int64
}

func newGenerator(seed int64, accountID string) *generator {
	h := fnv.New64a()
	_, _ = h.Write([]byte(accountID)) // never fails
	return &generator{rnd: mrand.New(mrand.NewPCG(uint64(seed), h.Sum64()))}
}

func (g *generator) pick(list []string) string { return list[g.rnd.IntN(len(list))] }

func (g *generator) digits(n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(byte('0' + g.rnd.IntN(10)))
	}
	return b.String()
}

// customer invents a customer of one of the countries in countries().
func (g *generator) customer() customer {
	cs := countries()
	weights := 0
	for _, c := range cs {
		weights += c.weight
	}
	w := g.rnd.IntN(weights)
	var ct country
	for _, c := range cs {
		if w < c.weight {
			ct = c
			break
		}
		w -= c.weight
	}
	first, last := g.pick(demodata.FirstNames()), g.pick(demodata.LastNames())
	street, no := g.pick(ct.streets), strconv.Itoa(1+g.rnd.IntN(180))
	line1 := street + " " + no
	if ct.numberFirst {
		line1 = no + " " + street
	}
	city := ct.cities[g.rnd.IntN(len(ct.cities))]
	c := customer{
		name:       first + " " + last,
		line1:      line1,
		postalCode: city.postalCode,
		city:       city.name,
		country:    ct.code,
	}
	if g.rnd.IntN(5) == 0 {
		l2 := g.pick([]string{"3. OG", "Hinterhaus", "c/o Coworking Space", "Etage 2", "Apt. 4", "Gebäude B"})
		c.line2 = &l2
	}
	domain := "webmail.example"
	if g.rnd.IntN(10) < 7 { // a business
		word := g.pick(companyWords())
		co := word + " " + g.pick(ct.legalForms)
		c.company = &co
		domain = demodata.ASCIILower(word) + "-" + strings.ToLower(ct.code) + ".example"
		if g.rnd.IntN(10) < 9 {
			v := ct.vatID(g)
			c.vatID = &v
		}
	}
	c.email = demodata.ASCIILower(first) + "." + demodata.ASCIILower(last) + "@" + domain
	return c
}

// pickPlan chooses the monthly price (cents) the invoices are based on.
func (g *generator) pickPlan() {
	g.plan = []int64{900, 2900, 2900, 7900, 7900, 14900, 29900, 49900}[g.rnd.IntN(8)]
}

// vatRate is the VAT percentage an invoice to the customer charges: none
// for a business elsewhere in the EU (reverse charge, it has a VAT id),
// German VAT otherwise. (Sales to consumers in other EU countries would
// carry their country's rate under the OSS scheme; the demo keeps 19.)
func vatRate(country string, vatID *string) int64 {
	if vatID != nil && country != "DE" {
		return 0
	}
	return 19
}

// fakeCustomerID invents a Stripe customer id of the usual shape.
func (g *generator) fakeCustomerID() string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := []byte("cus_")
	for range 14 {
		b = append(b, alnum[g.rnd.IntN(len(alnum))])
	}
	return string(b)
}

// issueDates spreads n dates from start to end (both included), ascending.
func (g *generator) issueDates(n int, start, end time.Time) []time.Time {
	days := int(end.Sub(start).Hours()/24) + 1
	out := make([]time.Time, n)
	for i := range n {
		lo, hi := days*i/n, days*(i+1)/n
		d := lo
		if hi > lo {
			d += g.rnd.IntN(hi - lo)
		}
		out[i] = start.AddDate(0, 0, d)
	}
	return out
}

// invoice invents the amounts of one invoice: the customer's plan, now
// and then with extra sending volume.
func (g *generator) invoice(c customer, issued time.Time) invoice {
	plan := g.plan
	if plan == 0 {
		plan = 2900
	}
	net := plan
	if g.rnd.IntN(4) == 0 {
		net += int64(1+g.rnd.IntN(40)) * 500 // extra volume, in 5-euro steps
	}
	return invoice{
		issued: issued,
		due:    issued.AddDate(0, 0, 14),
		net:    net,
		tax:    (net*vatRate(c.country, c.vatID) + 50) / 100,
	}
}

// The word lists are functions, not package variables, so that no caller can
// change them.

type city struct{ name, postalCode string }

type country struct {
	code        string
	weight      int
	streets     []string
	numberFirst bool
	cities      []city
	legalForms  []string
	vatID       func(g *generator) string
}

// countries are where the demo customers live; the VAT ids have each
// country's format but are invented (no check digits).
func countries() []country {
	return []country{
		{
			code: "DE", weight: 60,
			streets: []string{"Hauptstraße", "Bahnhofstraße", "Lindenallee", "Schillerstraße", "Goethestraße",
				"Am Markt", "Gartenweg", "Friedrichstraße", "Hafenstraße", "Kastanienweg", "Bergstraße", "Mühlenweg"},
			cities: []city{{"Berlin", "10115"}, {"Hamburg", "20095"}, {"München", "80331"}, {"Köln", "50667"},
				{"Frankfurt am Main", "60311"}, {"Leipzig", "04109"}, {"Stuttgart", "70173"}, {"Düsseldorf", "40213"},
				{"Bremen", "28195"}, {"Dresden", "01067"}, {"Hannover", "30159"}, {"Nürnberg", "90402"}, {"Freiburg im Breisgau", "79098"}},
			legalForms: []string{"GmbH", "GmbH", "UG (haftungsbeschränkt)", "KG", "AG", "e.K.", "GmbH & Co. KG"},
			vatID:      func(g *generator) string { return "DE" + g.digits(9) },
		},
		{
			code: "AT", weight: 10,
			streets:    []string{"Mariahilfer Straße", "Herrengasse", "Landstraßer Hauptstraße", "Getreidegasse"},
			cities:     []city{{"Wien", "1010"}, {"Graz", "8010"}, {"Linz", "4020"}, {"Salzburg", "5020"}, {"Innsbruck", "6020"}},
			legalForms: []string{"GmbH", "OG", "KG"},
			vatID:      func(g *generator) string { return "ATU" + g.digits(8) },
		},
		{
			code: "NL", weight: 6,
			streets:    []string{"Keizersgracht", "Prinsengracht", "Damrak", "Oudegracht"},
			cities:     []city{{"Amsterdam", "1012 AB"}, {"Rotterdam", "3011 AD"}, {"Utrecht", "3511 AA"}},
			legalForms: []string{"B.V."},
			vatID:      func(g *generator) string { return "NL" + g.digits(9) + "B" + g.digits(2) },
		},
		{
			code: "FR", weight: 6, numberFirst: true,
			streets:    []string{"rue de Rivoli", "avenue Victor Hugo", "rue de la République", "boulevard Voltaire"},
			cities:     []city{{"Paris", "75002"}, {"Lyon", "69002"}, {"Bordeaux", "33000"}, {"Strasbourg", "67000"}},
			legalForms: []string{"SARL", "SAS"},
			vatID:      func(g *generator) string { return "FR" + g.digits(2) + g.digits(9) },
		},
		{
			code: "IT", weight: 4,
			streets:    []string{"Via Roma", "Corso Buenos Aires", "Via Garibaldi"},
			cities:     []city{{"Milano", "20121"}, {"Roma", "00186"}, {"Torino", "10121"}},
			legalForms: []string{"S.r.l.", "S.p.A."},
			vatID:      func(g *generator) string { return "IT" + g.digits(11) },
		},
		{
			code: "ES", weight: 4,
			streets:    []string{"Calle Mayor", "Gran Vía", "Passeig de Gràcia"},
			cities:     []city{{"Madrid", "28013"}, {"Barcelona", "08007"}, {"Valencia", "46002"}},
			legalForms: []string{"S.L.", "S.A."},
			vatID:      func(g *generator) string { return "ESB" + g.digits(8) },
		},
		{
			code: "PL", weight: 4,
			streets:    []string{"ul. Marszałkowska", "ul. Floriańska", "ul. Piotrkowska"},
			cities:     []city{{"Warszawa", "00-001"}, {"Kraków", "31-001"}, {"Łódź", "90-001"}},
			legalForms: []string{"Sp. z o.o."},
			vatID:      func(g *generator) string { return "PL" + g.digits(10) },
		},
		{
			code: "SE", weight: 3,
			streets:    []string{"Drottninggatan", "Kungsgatan", "Storgatan"},
			cities:     []city{{"Stockholm", "111 52"}, {"Göteborg", "411 06"}, {"Malmö", "211 20"}},
			legalForms: []string{"AB"},
			vatID:      func(g *generator) string { return "SE" + g.digits(10) + "01" },
		},
		{
			code: "DK", weight: 3,
			streets:    []string{"Vesterbrogade", "Nørrebrogade", "Amagertorv"},
			cities:     []city{{"København", "1620"}, {"Aarhus", "8000"}},
			legalForms: []string{"ApS", "A/S"},
			vatID:      func(g *generator) string { return "DK" + g.digits(8) },
		},
		{
			code: "IE", weight: 2, numberFirst: true,
			streets:    []string{"Grafton Street", "Dame Street", "Patrick Street"},
			cities:     []city{{"Dublin", "D02 X285"}, {"Cork", "T12 R2NC"}},
			legalForms: []string{"Ltd."},
			vatID:      func(g *generator) string { return "IE" + g.digits(7) + "T" },
		},
		{
			code: "BE", weight: 2,
			streets:    []string{"Rue Neuve", "Meir", "Avenue Louise"},
			cities:     []city{{"Bruxelles", "1000"}, {"Antwerpen", "2000"}, {"Gent", "9000"}},
			legalForms: []string{"BV", "SRL", "NV"},
			vatID:      func(g *generator) string { return "BE0" + g.digits(9) },
		},
	}
}

func companyWords() []string {
	return []string{"Nordlicht", "Hafenblick", "Bergmann", "Lindenhof", "Elbe Digital", "Rheinwerk", "Alpenglühen",
		"Kontor 24", "Brieftaube", "Fjordlys", "Tulpenveld", "Atelier Moreau", "Studio Lindgren", "Sonnendeck",
		"Blauwasser", "Weitblick", "Morgenrot", "Sternwarte", "Kastanie", "Leuchtturm"}
}
