package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
)

var seedSpec = commandSpec{
	name:    "seed",
	summary: "fill the local stores with synthetic demo data",
	usage:   "seed ACCOUNT_ID... [--stores contacts,logs,billing] [--seed 1] [--contacts 5000] [--log-hours 72] [--invoices 60] [...]",
	description: `
Fills each store with synthetic data for the given accounts, straight into
the store (not through the coordinator), so that there is something to
erase: the contacts database and the billing database (their schemas are
migrated first), and the event-log segments under the logs root. The data is
generated from --seed: the same seed gives the same data. Every store adds
to what it holds; seeding an account again adds more.

Billing customers are created at the payment provider when
LETHE_STRIPE_API_URL names one (stripe-mock in the demo; the key comes from
LETHE_STRIPE_API_KEY only); without it their Stripe ids are invented.

Progress goes to stderr; the counts written per store and account go to
stdout, one table per store; with -o json:
{"accounts":[{"account_id":"…","stores":{"contacts":{"lists":N,…},"logs":{…},"billing":{…}}}]}.

Stores: ` + strings.Join(seederNames(), ", ") + ` (all by default).`,
	examples: `  erasectl seed demo-0001 demo-0002
  erasectl seed demo-0001 demo-0002 demo-0003 --contacts 20000 --lists 10 --log-hours 168
  erasectl seed demo-0001 --stores contacts --contacts-dsn postgres://lethe:lethe@db:5432/lethe_contacts -o json
  LETHE_STRIPE_API_URL=http://127.0.0.1:12111 erasectl seed demo-0001 --stores billing --invoices 120`,
	globals: flagContactsDSN | flagLogsRoot | flagBillingDSN | flagStripeAPIURL,
	new:     func() command { return newSeedCmd() },
}

// seeder fills one store with synthetic data. Each store erasectl can seed is
// one entry of seeders.
type seeder interface {
	// name is the store's name in --stores and the output.
	name() string
	// columns are the names of the counts seed returns, in table order.
	columns() []string
	// flags registers the seeder's own flags.
	flags(fs *flag.FlagSet)
	// validate checks the flags' values; its error is a usage error.
	validate() error
	// seed migrates the store and seeds each account in turn, reporting
	// progress, and returns one set of counts per account, in order.
	seed(ctx context.Context, p *program, accountIDs []string, seed int64, progress progressFunc) ([]seedCounts, error)
}

// seedPreparer is a seeder that checks its configuration before any store
// is seeded, so that a mistake fails the command before it wrote anything.
type seedPreparer interface {
	prepare(p *program) error
}

// progressFunc reports that done of total units of an account are written.
type progressFunc func(accountID, unit string, done, total int64)

// seedCounts are the items written to one store for one account, by kind.
type seedCounts map[string]int64

// seeders lists the stores erasectl seeds, in order.
var seeders = []func() seeder{
	func() seeder { return &contactsSeeder{contacts: 5000, lists: 5, properties: 3} },
	func() seeder { return &logsSeeder{hours: 72, recordsPerHour: 200} },
	func() seeder { return &billingSeeder{invoices: 60} },
}

func seederNames() []string {
	names := make([]string, len(seeders))
	for i, s := range seeders {
		names[i] = s().name()
	}
	return names
}

type seedCmd struct {
	accountIDs []string
	stores     string
	seed       int64
	all        []seeder
	// selected are the seeders --stores names, in seeders order.
	selected []seeder
}

func newSeedCmd() *seedCmd {
	c := &seedCmd{stores: strings.Join(seederNames(), ","), seed: 1}
	for _, s := range seeders {
		c.all = append(c.all, s())
	}
	return c
}

func (c *seedCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.stores, "stores", c.stores, "comma-separated `STORES` to seed")
	fs.Int64Var(&c.seed, "seed", c.seed, "random seed of the generated data")
	for _, s := range c.all {
		s.flags(fs)
	}
}

func (c *seedCmd) args(pos []string) error {
	if len(pos) == 0 {
		return errors.New("want at least one ACCOUNT_ID")
	}
	for _, id := range pos {
		if err := validateID("account id", id); err != nil {
			return err
		}
	}
	c.accountIDs = dedupe(pos)
	var names []string
	for _, n := range strings.Split(c.stores, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return errors.New("--stores names no store")
	}
	for _, n := range names {
		if !slices.Contains(seederNames(), n) {
			return fmt.Errorf("--stores: unknown store %q (known: %s)", n, strings.Join(seederNames(), ", "))
		}
	}
	c.selected = nil
	for _, s := range c.all {
		if slices.Contains(names, s.name()) {
			if err := s.validate(); err != nil {
				return err
			}
			c.selected = append(c.selected, s)
		}
	}
	return nil
}

// seedResult is what was written for one account.
type seedResult struct {
	AccountID string                `json:"account_id"`
	Stores    map[string]seedCounts `json:"stores"`
}

func (c *seedCmd) run(ctx context.Context, p *program) error {
	results := make([]seedResult, len(c.accountIDs))
	for i, id := range c.accountIDs {
		results[i] = seedResult{AccountID: id, Stores: map[string]seedCounts{}}
	}
	for _, s := range c.selected {
		if sp, ok := s.(seedPreparer); ok {
			if err := sp.prepare(p); err != nil {
				return err
			}
		}
	}
	pr := newProgressPrinter(p.stderr, 500*time.Millisecond)
	for _, s := range c.selected {
		counts, err := s.seed(ctx, p, c.accountIDs, c.seed, pr.report)
		if err != nil {
			return err
		}
		for i := range results {
			results[i].Stores[s.name()] = counts[i]
		}
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, struct {
			Accounts []seedResult `json:"accounts"`
		}{results})
	}
	return writeSeedTables(p.stdout, c.selected, results)
}

// writeSeedTables prints one table per store: the account and its counts.
func writeSeedTables(w io.Writer, stores []seeder, results []seedResult) error {
	for i, s := range stores {
		if len(stores) > 1 {
			if i > 0 {
				io.WriteString(w, "\n")
			}
			fmt.Fprintf(w, "%s:\n", s.name())
		}
		header := []string{"ACCOUNT"}
		for _, col := range s.columns() {
			header = append(header, strings.ToUpper(col))
		}
		t := newTable(header...)
		for _, r := range results {
			row := []string{r.AccountID}
			for _, col := range s.columns() {
				row = append(row, strconv.FormatInt(r.Stores[s.name()][col], 10))
			}
			t.add(row...)
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	return nil
}

// progressPrinter writes "seeding ACCOUNT: done/total unit" lines, at most
// one per interval and account, and always the last one.
type progressPrinter struct {
	w        io.Writer
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
}

func newProgressPrinter(w io.Writer, interval time.Duration) *progressPrinter {
	return &progressPrinter{w: w, interval: interval, last: map[string]time.Time{}}
}

func (pp *progressPrinter) report(accountID, unit string, done, total int64) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	key := accountID + "\x00" + unit
	now := time.Now()
	if done < total && now.Sub(pp.last[key]) < pp.interval {
		return
	}
	pp.last[key] = now
	fmt.Fprintf(pp.w, "seeding %s: %d/%d %s\n", accountID, done, total, unit)
}

// storeError gives an error of a store its exit code: 5 when the database
// cannot be reached, with what to do next. The DSN's password never appears:
// the stores' errors name host, port, database and user only.
func storeError(env string, err error) error {
	var (
		ce *pgconn.ConnectError
		ne net.Error
	)
	if errors.As(err, &ce) || errors.As(err, &ne) {
		return withCode(ExitUnavailable, fmt.Errorf(
			"%w; start PostgreSQL with scripts/demo, or point %s (or the matching flag) at it", err, env))
	}
	return err
}

// maxSeedProperties is how many property kinds the contacts store's seed
// knows.
const maxSeedProperties = 6

// contactsSeeder seeds the contacts store: lists, contacts, list memberships
// and contact properties.
type contactsSeeder struct {
	contacts   int
	lists      int
	properties int
}

var _ seeder = (*contactsSeeder)(nil)

func (s *contactsSeeder) name() string { return "contacts" }

func (s *contactsSeeder) columns() []string {
	return []string{"lists", "contacts", "members", "properties"}
}

func (s *contactsSeeder) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.contacts, "contacts", s.contacts, "contacts per account")
	fs.IntVar(&s.lists, "lists", s.lists, "contact lists per account")
	fs.IntVar(&s.properties, "properties", s.properties, "properties per contact")
}

func (s *contactsSeeder) validate() error {
	// The store takes a zero as "the default", so zero is refused here
	// rather than silently turned into thousands of contacts.
	switch {
	case s.contacts < 1:
		return errors.New("--contacts must be at least 1")
	case s.lists < 1:
		return errors.New("--lists must be at least 1")
	case s.properties < 1 || s.properties > maxSeedProperties:
		return fmt.Errorf("--properties must be between 1 and %d", maxSeedProperties)
	}
	return nil
}

func (s *contactsSeeder) seed(ctx context.Context, p *program, accountIDs []string, seed int64, progress progressFunc) ([]seedCounts, error) {
	st, err := contactstore.Open(ctx, p.cfg.contactsDSN)
	if err != nil {
		return nil, storeError(EnvContactsDSN, err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return nil, storeError(EnvContactsDSN, err)
	}
	opts := contactstore.SeedOptions{
		Contacts:             s.contacts,
		Lists:                s.lists,
		PropertiesPerContact: s.properties,
		Seed:                 seed,
	}
	out := make([]seedCounts, 0, len(accountIDs))
	for _, id := range accountIDs {
		res, err := st.Seed(ctx, id, opts, func(done, total int64) {
			progress(id, "contacts", done, total)
		})
		if err != nil {
			return nil, storeError(EnvContactsDSN, err)
		}
		out = append(out, seedCounts{
			"lists":      res.Lists,
			"contacts":   res.Contacts,
			"members":    res.Members,
			"properties": res.Properties,
		})
	}
	return out, nil
}
