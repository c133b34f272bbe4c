package contactstore

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-privacy/lethe/lib/demodata"
)

// SeedOptions shapes the demo data Seed writes. Zero fields take the
// defaults; negative ones are an error.
type SeedOptions struct {
	// Contacts to create; default 5000.
	Contacts int
	// Lists to create; default 5. Every contact joins the first list with
	// probability 0.7 and each other one with 0.25.
	Lists int
	// PropertiesPerContact is how many properties each contact gets, in the
	// order city, plan, signup_source, language, timezone, company; default
	// 3, at most 6.
	PropertiesPerContact int
	// Seed makes the data reproducible: the same Seed for the same account
	// gives the same names, addresses, memberships and properties.
	Seed int64
}

// SeedResult counts the rows Seed wrote.
type SeedResult struct {
	AccountID  string
	Lists      int64
	Contacts   int64
	Members    int64
	Properties int64
}

// seedChunk is how many contacts Seed writes per round of COPY statements,
// and so how often it reports progress.
const seedChunk = 2000

// Seed writes realistic demo data for one account: lists, contacts with
// names and e-mail addresses built from word lists, their memberships and
// properties. All addresses are under the reserved .example top-level domain
// (RFC 2606), so demo data can never reach a real mailbox.
//
// Seed adds: seeding an account again adds another set of lists and
// contacts next to the existing ones (with the same Seed, the same names and
// addresses again; the schema does not require addresses to be unique). To
// start over, Purge the account first.
//
// Everything is written in one transaction with COPY, so a failed or
// cancelled Seed leaves nothing behind. progress, when not nil, is called
// after every chunk of contacts with the contacts written so far and the
// total. Errors wrap ErrInvalidAccountID or ErrInvalidSeedOptions for bad
// arguments.
func (s *Store) Seed(ctx context.Context, accountID string, opts SeedOptions, progress func(done, total int64)) (SeedResult, error) {
	res := SeedResult{AccountID: accountID}
	if err := checkAccountID(accountID); err != nil {
		return res, fmt.Errorf("seed contacts: %w", err)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return res, fmt.Errorf("seed contacts of account %s: %w", accountID, err)
	}
	gen := newGenerator(opts.Seed, accountID)

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("seed contacts of account %s: begin: %w", accountID, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	listIDs, err := reserveIDs(ctx, tx, "contact_lists", opts.Lists)
	if err != nil {
		return res, fmt.Errorf("seed contact lists of account %s: %w", accountID, err)
	}
	listRows := make([][]any, len(listIDs))
	for i, id := range listIDs {
		listRows[i] = []any{id, accountID, listName(i)}
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"contact_lists"}, []string{"id", "account_id", "name"}, pgx.CopyFromRows(listRows))
	if err != nil {
		return res, fmt.Errorf("seed contact lists of account %s: %w", accountID, err)
	}
	res.Lists = n

	total := int64(opts.Contacts)
	for done := 0; done < opts.Contacts; {
		size := min(seedChunk, opts.Contacts-done)
		ids, err := reserveIDs(ctx, tx, "contacts", size)
		if err != nil {
			return res, fmt.Errorf("seed contacts of account %s: %w", accountID, err)
		}
		chunk := gen.chunk(accountID, done, ids, listIDs, opts.PropertiesPerContact)
		for _, c := range []struct {
			table string
			cols  []string
			rows  [][]any
			count *int64
		}{
			{"contacts", []string{"id", "account_id", "email", "name"}, chunk.contacts, &res.Contacts},
			{"contact_list_members", []string{"list_id", "contact_id", "account_id"}, chunk.members, &res.Members},
			{"contact_properties", []string{"contact_id", "account_id", "key", "value"}, chunk.properties, &res.Properties},
		} {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows))
			if err != nil {
				return res, fmt.Errorf("seed %s of account %s: %w", c.table, accountID, err)
			}
			*c.count += n
		}
		done += size
		if progress != nil {
			progress(int64(done), total)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("seed contacts of account %s: commit: %w", accountID, err)
	}
	return res, nil
}

func (o SeedOptions) withDefaults() (SeedOptions, error) {
	if o.Contacts < 0 || o.Lists < 0 || o.PropertiesPerContact < 0 {
		return o, fmt.Errorf("%w: negative count", ErrInvalidSeedOptions)
	}
	if o.PropertiesPerContact > len(propertyKeys()) {
		return o, fmt.Errorf("%w: at most %d properties per contact", ErrInvalidSeedOptions, len(propertyKeys()))
	}
	if o.Contacts == 0 {
		o.Contacts = 5000
	}
	if o.Lists == 0 {
		o.Lists = 5
	}
	if o.PropertiesPerContact == 0 {
		o.PropertiesPerContact = 3
	}
	return o, nil
}

// reserveIDs takes n ids from table's id sequence. COPY cannot return the
// ids it generates, and memberships and properties need them.
func reserveIDs(ctx context.Context, tx pgx.Tx, table string, n int) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)`, table, n)
	if err != nil {
		return nil, fmt.Errorf("reserve %d ids: %w", n, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("reserve %d ids: %w", n, err)
	}
	return ids, nil
}

// generator makes the demo rows. Its random source is seeded from the Seed
// and the account id, so that two accounts seeded alike still differ.
type generator struct {
	rnd *rand.Rand
}

func newGenerator(seed int64, accountID string) *generator {
	h := fnv.New64a()
	_, _ = h.Write([]byte(accountID)) // never fails
	return &generator{rnd: rand.New(rand.NewPCG(uint64(seed), h.Sum64()))}
}

type seedRows struct {
	contacts, members, properties [][]any
}

// chunk builds the rows of the contacts with the given ids; offset is the
// number of contacts generated before, which keeps addresses distinct.
func (g *generator) chunk(accountID string, offset int, ids, listIDs []int64, props int) seedRows {
	firsts, lasts, domains := demodata.FirstNames(), demodata.LastNames(), demodata.MailDomains()
	keys := propertyKeys()
	out := seedRows{
		contacts:   make([][]any, 0, len(ids)),
		members:    make([][]any, 0, len(ids)*2),
		properties: make([][]any, 0, len(ids)*props),
	}
	for i, id := range ids {
		first := firsts[g.rnd.IntN(len(firsts))]
		last := lasts[g.rnd.IntN(len(lasts))]
		email := g.localPart(demodata.ASCIILower(first), demodata.ASCIILower(last)) +
			strconv.Itoa(offset+i+1) + "@" + domains[g.rnd.IntN(len(domains))]
		out.contacts = append(out.contacts, []any{id, accountID, email, first + " " + last})
		for l, listID := range listIDs {
			p := 0.25
			if l == 0 {
				p = 0.7
			}
			if g.rnd.Float64() < p {
				out.members = append(out.members, []any{listID, id, accountID})
			}
		}
		for _, k := range keys[:props] {
			out.properties = append(out.properties, []any{id, accountID, k.key, k.values[g.rnd.IntN(len(k.values))]})
		}
	}
	return out
}

// localPart picks one of the usual shapes of a personal address.
func (g *generator) localPart(first, last string) string {
	switch g.rnd.IntN(5) {
	case 0:
		return first + "." + last
	case 1:
		return first[:1] + "." + last
	case 2:
		return first + last
	case 3:
		return first + "_" + last
	default:
		return last + "." + first
	}
}

func listName(i int) string {
	names := []string{"Newsletter", "Customers", "Leads", "Product updates", "Webinar attendees",
		"Beta testers", "Trade fair 2025", "Inactive", "VIP", "Partners"}
	if i < len(names) {
		return names[i]
	}
	return names[i%len(names)] + " " + strconv.Itoa(i/len(names)+1)
}

// The word lists are functions, not package variables, so that no caller can
// change them.

type propertyKey struct {
	key    string
	values []string
}

func propertyKeys() []propertyKey {
	return []propertyKey{
		{"city", []string{"Berlin", "Hamburg", "München", "Köln", "Frankfurt am Main", "Leipzig", "Wien", "Zürich",
			"Amsterdam", "Paris", "Lyon", "Madrid", "Lisboa", "Milano", "Stockholm", "København", "Warszawa", "Praha", "Dublin"}},
		{"plan", []string{"free", "free", "free", "starter", "starter", "pro", "enterprise"}},
		{"signup_source", []string{"website", "landing_page", "import", "api", "referral", "trade_fair", "webinar"}},
		{"language", []string{"de", "de", "en", "en", "fr", "es", "it", "nl", "pl", "sv"}},
		{"timezone", []string{"Europe/Berlin", "Europe/Vienna", "Europe/Zurich", "Europe/Paris", "Europe/Madrid",
			"Europe/London", "Europe/Stockholm", "Europe/Warsaw"}},
		{"company", []string{"Nordlicht GmbH", "Bergmann & Söhne KG", "Hafenblick AG", "Studio Lindgren",
			"Atelier Moreau", "Rossi S.r.l.", "Kowalski Sp. z o.o.", "Fjord Consulting AB", "Elbe Digital UG"}},
	}
}
