package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/lethe-privacy/lethe/lib/demodata"
	"github.com/lethe-privacy/lethe/services/billing/billingstore"
	"github.com/lethe-privacy/lethe/services/contacts/contactstore"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// seedLogHours is how many hourly segments the pipeline's log records are
// spread over: the accounts share them, as on the platform.
const seedLogHours = 6

// seedSizes is the data every account of a pipeline run gets.
type seedSizes struct {
	contacts, logRecords, invoices int
}

func (s seedSizes) empty() bool { return s.contacts == 0 && s.logRecords == 0 && s.invoices == 0 }

// seedAccounts writes the data of every account straight into the stores,
// before the workers start: contacts and billing through their stores' own
// seeders, event logs as shared hourly segments (appended, then sealed).
func seedAccounts(ctx context.Context, accounts []string, sz seedSizes, contactsDSN, billingDSN, logsRoot string, progress func(string)) error {
	if sz.contacts > 0 {
		st, err := contactstore.Open(ctx, contactsDSN)
		if err != nil {
			return fmt.Errorf("open the contacts database: %w", err)
		}
		defer st.Close()
		if err := st.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate the contacts database: %w", err)
		}
		for i, a := range accounts {
			if _, err := st.Seed(ctx, a, contactstore.SeedOptions{Contacts: sz.contacts, Lists: 5, PropertiesPerContact: 3, Seed: int64(i)}, nil); err != nil {
				return fmt.Errorf("seed contacts: %w", err)
			}
			progress(fmt.Sprintf("seeded contacts of %d/%d accounts", i+1, len(accounts)))
		}
	}
	if sz.invoices > 0 {
		st, err := billingstore.Open(ctx, billingDSN)
		if err != nil {
			return fmt.Errorf("open the billing database: %w", err)
		}
		defer st.Close()
		if err := st.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate the billing database: %w", err)
		}
		for i, a := range accounts {
			if _, err := st.Seed(ctx, a, billingstore.SeedOptions{Invoices: sz.invoices, Seed: int64(i)}, nil); err != nil {
				return fmt.Errorf("seed invoices: %w", err)
			}
			progress(fmt.Sprintf("seeded invoices of %d/%d accounts", i+1, len(accounts)))
		}
	}
	if sz.logRecords > 0 {
		perHour := (sz.logRecords + seedLogHours - 1) / seedLogHours
		start := time.Now().UTC().Truncate(time.Hour).Add(-(seedLogHours + 1) * time.Hour)
		if err := writeSegments(ctx, logsRoot, accounts, start, seedLogHours, perHour, 1); err != nil {
			return err
		}
		progress(fmt.Sprintf("seeded %d log records of each of %d accounts", perHour*seedLogHours, len(accounts)))
	}
	return nil
}

// writeSegments writes hours sealed hourly segments from start under root,
// each holding perHour records of every account, interleaved by time as
// the platform writes them.
func writeSegments(ctx context.Context, root string, accounts []string, start time.Time, hours, perHour int, seed uint64) error {
	st, err := logstore.Open(ctx, root)
	if err != nil {
		return fmt.Errorf("open the log segments at %s: %w", root, err)
	}
	defer st.Close()
	rnd := rand.New(rand.NewPCG(seed, 0x1e7e))
	const chunk = 20000
	for h := range hours {
		hour := start.Add(time.Duration(h) * time.Hour)
		recs := make([]logstore.Record, 0, len(accounts)*perHour)
		for _, a := range accounts {
			recs = appendRecords(recs, rnd, a, hour, perHour)
		}
		slices.SortFunc(recs, func(x, y logstore.Record) int { return x.Time.Compare(y.Time) })
		for i := 0; i < len(recs); i += chunk {
			if err := st.Append(ctx, hour, recs[i:min(i+chunk, len(recs))]); err != nil {
				return fmt.Errorf("write log segment: %w", err)
			}
		}
		if err := st.Seal(ctx, hour); err != nil {
			return fmt.Errorf("seal log segment: %w", err)
		}
	}
	return nil
}

// The kinds of records, about as often as the platform logs them.
var eventMix = []logstore.EventType{
	logstore.EventSent, logstore.EventDelivered, logstore.EventSent, logstore.EventDelivered,
	logstore.EventOpened, logstore.EventClicked, logstore.EventOpened, logstore.EventBounced,
}

// appendRecords appends n synthetic records of account within hour.
// Every address is under .example, so that nothing can reach a real
// mailbox.
func appendRecords(dst []logstore.Record, rnd *rand.Rand, account string, hour time.Time, n int) []logstore.Record {
	first, last, domains := demodata.FirstNames(), demodata.LastNames(), demodata.MailDomains()
	for i := range n {
		ev := eventMix[i%len(eventMix)]
		r := logstore.Record{
			Time:      hour.Add(time.Duration(rnd.Int64N(int64(time.Hour)))),
			AccountID: account,
			Event:     ev,
			MessageID: account + "." + strconv.FormatUint(rnd.Uint64(), 36) + "@mta.example",
			Recipient: demodata.ASCIILower(first[rnd.IntN(len(first))]) + "." +
				demodata.ASCIILower(last[rnd.IntN(len(last))]) + "@" + domains[rnd.IntN(len(domains))],
			Subject: subjects[rnd.IntN(len(subjects))],
		}
		switch ev {
		case logstore.EventClicked:
			r.URL = "https://shop.example/offers/" + strconv.Itoa(rnd.IntN(1000))
		case logstore.EventBounced:
			r.Bounce = "550 5.1.1 mailbox unavailable"
		}
		dst = append(dst, r)
	}
	return dst
}

var subjects = []string{
	"Your order has shipped", "Our spring collection is here", "Reset your password",
	"Newsletter: what is new this month", "Your invoice is ready", "Last chance: 20% off",
	"Welcome aboard", "Your subscription renews soon",
}
