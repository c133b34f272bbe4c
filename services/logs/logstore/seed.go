package logstore

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/lib/demodata"
)

// SeedOptions shapes the demo records Seed writes. Zero fields take the
// defaults; negative ones are an error.
type SeedOptions struct {
	// Hours to fill, one segment each; default 72, at most 100000.
	Hours int
	// RecordsPerHour is how many records the account gets in each hour;
	// default 200, at most 1000000.
	RecordsPerHour int
	// Start is the first hour (truncated to the hour, UTC). Default: Hours
	// before the current hour, so that the seeded hours end where the
	// current hour, the one a live writer would have open, begins.
	Start time.Time
	// Seed makes the data reproducible: the same Seed, Start and account
	// give the same records.
	Seed int64
}

// SeedResult counts what Seed wrote.
type SeedResult struct {
	AccountID string
	// Records written, and Segments (hours) they went to.
	Records  int64
	Segments int
	// Events counts the records by event type.
	Events map[EventType]int64
}

const (
	defaultSeedHours          = 72
	defaultSeedRecordsPerHour = 200
	maxSeedHours              = 100000
	maxSeedRecordsPerHour     = 1000000
)

// Seed writes realistic demo records of one account into Hours hourly
// segments from Start: messages sent to a pool of recipients, most of them
// delivered, some bounced, a share opened (some more than once) and
// clicked, with subjects of newsletters and transactional mail. All
// addresses are under the reserved .example top-level domain (RFC 2606),
// so demo data can never reach a real mailbox.
//
// Seed adds to what is there, and seeding several accounts over the same
// hours puts their records into the same segments, as the platform does.
// An hour with an open segment gets the records appended (the platform's
// writer seals it); any other hour gets them in its sealed segment, which
// is created, or rewritten with everything it held plus the new records,
// under the hour's lock and with the index sidecar grown first. Each hour
// is crash-safe on its own; a failed or cancelled Seed leaves the hours
// before the failing one seeded. Seeding again adds the same records again.
//
// progress, when not nil, is called after every hour with the records
// written so far and the total. Errors wrap ErrInvalidAccountID,
// ErrInvalidSeedOptions or ErrInvalidHour for bad arguments.
func (s *Store) Seed(ctx context.Context, accountID string, opts SeedOptions, progress func(done, total int64)) (SeedResult, error) {
	res := SeedResult{AccountID: accountID, Events: make(map[EventType]int64)}
	if err := checkAccountID(accountID); err != nil {
		return res, fmt.Errorf("seed event logs: %w", err)
	}
	opts, err := opts.withDefaults(time.Now())
	if err != nil {
		return res, fmt.Errorf("seed event logs of account %s: %w", accountID, err)
	}
	start := hourOf(opts.Start)
	if !validHour(start) || !validHour(start+hourID(opts.Hours-1)) {
		return res, fmt.Errorf("seed event logs of account %s: %w", accountID, ErrInvalidHour)
	}
	gen := newGenerator(opts.Seed, accountID)
	total := int64(opts.Hours) * int64(opts.RecordsPerHour)
	var buf []byte
	for i := range opts.Hours {
		h := start + hourID(i)
		recs := gen.hour(h, opts.RecordsPerHour)
		buf = buf[:0]
		for j := range recs {
			buf = appendLine(buf, &recs[j])
			res.Events[recs[j].Event]++
		}
		if _, err := s.addLines(ctx, h, accountID, buf); err != nil {
			for j := range recs {
				res.Events[recs[j].Event]--
			}
			return res, fmt.Errorf("seed event logs of account %s into segment %s: %w", accountID, h, err)
		}
		res.Records += int64(len(recs))
		res.Segments++
		if progress != nil {
			progress(res.Records, total)
		}
	}
	return res, nil
}

func (o SeedOptions) withDefaults(now time.Time) (SeedOptions, error) {
	switch {
	case o.Hours < 0 || o.RecordsPerHour < 0:
		return o, fmt.Errorf("%w: negative count", ErrInvalidSeedOptions)
	case o.Hours > maxSeedHours:
		return o, fmt.Errorf("%w: at most %d hours", ErrInvalidSeedOptions, maxSeedHours)
	case o.RecordsPerHour > maxSeedRecordsPerHour:
		return o, fmt.Errorf("%w: at most %d records per hour", ErrInvalidSeedOptions, maxSeedRecordsPerHour)
	}
	if o.Hours == 0 {
		o.Hours = defaultSeedHours
	}
	if o.RecordsPerHour == 0 {
		o.RecordsPerHour = defaultSeedRecordsPerHour
	}
	if o.Start.IsZero() {
		o.Start = now.UTC().Truncate(time.Hour).Add(-time.Duration(o.Hours) * time.Hour)
	}
	return o, nil
}

// generator makes the demo records of one account. Its random source is
// seeded from the Seed and the account id, so that two accounts seeded
// alike still differ.
type generator struct {
	account    string
	rnd        *rand.Rand
	recipients []string
	campaigns  []string
	mta        string
	serial     uint64
}

func newGenerator(seed int64, accountID string) *generator {
	h := fnv.New64a()
	_, _ = h.Write([]byte(accountID)) // never fails
	g := &generator{account: accountID, rnd: rand.New(rand.NewPCG(uint64(seed), h.Sum64()))}
	firsts, lasts, domains := demodata.FirstNames(), demodata.LastNames(), demodata.MailDomains()
	// A customer mails the same few hundred people again and again.
	g.recipients = make([]string, 150+g.rnd.IntN(350))
	for i := range g.recipients {
		first := demodata.ASCIILower(firsts[g.rnd.IntN(len(firsts))])
		last := demodata.ASCIILower(lasts[g.rnd.IntN(len(lasts))])
		var local string
		switch g.rnd.IntN(4) {
		case 0:
			local = first + "." + last
		case 1:
			local = first[:1] + last
		case 2:
			local = first + "_" + last + strconv.Itoa(g.rnd.IntN(90)+10)
		default:
			local = last + "." + first
		}
		g.recipients[i] = local + "@" + domains[g.rnd.IntN(len(domains))]
	}
	subjects := campaignSubjects()
	g.rnd.Shuffle(len(subjects), func(i, j int) { subjects[i], subjects[j] = subjects[j], subjects[i] })
	g.campaigns = subjects[:4+g.rnd.IntN(5)]
	g.mta = "mta" + strconv.Itoa(1+g.rnd.IntN(8)) + ".lethe-mail.example"
	return g
}

// hour returns exactly n records of the hour, in time order: whole
// messages (sent, then delivered or bounced, then opens and clicks) until
// n is reached. The ratios are those of a typical newsletter platform:
// about 3% bounced, a third of the delivered mail opened, one opener in
// six clicking.
func (g *generator) hour(h hourID, n int) []Record {
	out := make([]Record, 0, n+8)
	t0 := h.Time()
	end := t0.Add(time.Hour - time.Second)
	at := func(t time.Time) time.Time {
		if t.After(end) {
			return end
		}
		return t
	}
	for len(out) < n {
		sent := t0.Add(time.Duration(g.rnd.Int64N(int64(50 * time.Minute))))
		g.serial++
		msg := "<" + sent.Format("20060102150405") + "." + strconv.FormatUint(g.rnd.Uint64()&0xffffffffff, 16) +
			"." + strconv.FormatUint(g.serial, 10) + "@" + g.mta + ">"
		rec := Record{
			AccountID: g.account,
			MessageID: msg,
			Recipient: g.recipients[g.rnd.IntN(len(g.recipients))],
			Subject:   g.subject(),
		}
		add := func(ev EventType, t time.Time, url, bounce string) {
			r := rec
			r.Event, r.Time, r.URL, r.Bounce = ev, at(t).Truncate(time.Millisecond), url, bounce
			out = append(out, r)
		}
		add(EventSent, sent, "", "")
		if g.rnd.Float64() < 0.03 {
			add(EventBounced, sent.Add(time.Duration(1+g.rnd.IntN(90))*time.Second), "", bounceReasons()[g.rnd.IntN(len(bounceReasons()))])
			continue
		}
		delivered := sent.Add(time.Duration(200+g.rnd.IntN(20000)) * time.Millisecond)
		add(EventDelivered, delivered, "", "")
		if g.rnd.Float64() >= 0.34 {
			continue
		}
		opened := delivered
		for {
			opened = opened.Add(time.Duration(5+g.rnd.IntN(1200)) * time.Second)
			add(EventOpened, opened, "", "")
			if g.rnd.Float64() < 0.17 {
				urls := clickURLs()
				add(EventClicked, opened.Add(time.Duration(2+g.rnd.IntN(60))*time.Second), urls[g.rnd.IntN(len(urls))], "")
			}
			if g.rnd.Float64() >= 0.3 {
				break
			}
		}
	}
	out = out[:n]
	slices.SortStableFunc(out, func(a, b Record) int { return a.Time.Compare(b.Time) })
	return out
}

// subject picks a campaign subject, or a transactional one with a number.
func (g *generator) subject() string {
	if g.rnd.IntN(4) == 0 {
		t := transactionalSubjects()
		return strings.ReplaceAll(t[g.rnd.IntN(len(t))], "#", strconv.Itoa(100000+g.rnd.IntN(900000)))
	}
	return g.campaigns[g.rnd.IntN(len(g.campaigns))]
}

// The word lists are functions, not package variables, so that no caller can
// change them.

func campaignSubjects() []string {
	return []string{
		"Unser Newsletter im November", "Neu im Sortiment: Winterkollektion", "Nur heute: 20 % auf alles",
		"Ihre Einladung zum Webinar am Donnerstag", "Was gibt's Neues? Das Produkt-Update", "Frohe Feiertage vom ganzen Team",
		"Letzte Chance: Frühbucherrabatt endet morgen", "Your monthly product digest", "Invitation: Customer Day 2026",
		"Black Week – die besten Angebote", "Wir vermissen Sie! Hier ist ein Gutschein", "Tipps & Tricks für den Jahresabschluss",
		"Jetzt anmelden: Messe-Tickets kostenlos", "Nouveautés de la saison", "Le offerte della settimana",
	}
}

func transactionalSubjects() []string {
	return []string{
		"Ihre Bestellung # wurde versandt", "Rechnung # zu Ihrer Bestellung", "Bitte bestätigen Sie Ihre E-Mail-Adresse",
		"Ihr Passwort wurde geändert", "Your order # has shipped", "Termin bestätigt: Beratung #",
		"Zahlungserinnerung zu Rechnung #",
	}
}

func clickURLs() []string {
	return []string{"https://shop.lethe-demo.example/angebote", "https://shop.lethe-demo.example/winter",
		"https://www.lethe-demo.example/webinar/anmeldung", "https://www.lethe-demo.example/blog/jahresabschluss",
		"https://shop.lethe-demo.example/warenkorb", "https://www.lethe-demo.example/newsletter/abmelden"}
}

func bounceReasons() []string {
	return []string{"550 5.1.1 user unknown", "552 5.2.2 mailbox full", "421 4.7.0 try again later",
		"550 5.7.1 message rejected as spam", "554 5.7.1 relay access denied"}
}
