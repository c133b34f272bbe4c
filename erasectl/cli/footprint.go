package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

var footprintSpec = commandSpec{
	name:    "footprint",
	summary: "ask the workers what is left of accounts",
	usage:   "footprint ACCOUNT_ID... [--categories contacts,logs,billing,backups] [--timeout 5s]",
	description: `
Asks each category's workers what they still hold of the accounts (a
FootprintRequest over NATS request-reply on erasure.v1.footprint.<category>)
and prints one row per account and category: the items left and their kinds.
All four categories are asked by default.

After an erasure every count should be 0, with two expected exceptions that
are not failures:
  - backups: in_ledger=1 and snapshots=N (ITEMS N). Snapshots cannot be
    edited; the account is in the restore ledger, so every restore re-applies
    its erasure, and the N snapshots that still hold it are gone when they
    rotate out (LETHE_BACKUP_RETENTION, 35 days by default). Only after that
    is snapshots=0.
  - billing: invoices_retained=N counts pseudonymised invoices kept for their
    legal retention period; they hold no personal data and are not in ITEMS.

A category whose workers do not answer within --timeout shows "no answer";
a worker that answers with an error shows it. Either makes erasectl exit 5.

With -o json: {"accounts":[{"account_id":"…","categories":{"contacts":
{"items":N,"detail":{"contacts":N,…}}}}]}; a category without an answer has
"error" instead of "items" and "detail".`,
	examples: `  erasectl footprint demo-0001
  erasectl footprint demo-0001 demo-0002 --categories contacts,logs --timeout 10s
  erasectl footprint demo-0001 -o json`,
	globals: flagNATSURL,
	new: func() command {
		return &footprintCmd{categories: strings.Join(footprintCategories(), ","), timeout: 5 * time.Second}
	},
}

// footprintCategories are the categories footprint asks by default.
func footprintCategories() []string {
	return []string{erasurev1.CategoryContacts, erasurev1.CategoryLogs, erasurev1.CategoryBilling, erasurev1.CategoryBackups}
}

// categoryPattern is what a category may look like: one NATS subject token.
var categoryPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

type footprintCmd struct {
	accountIDs []string
	categories string
	timeout    time.Duration

	// parsed from categories
	categoryList []string
}

func (c *footprintCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.categories, "categories", c.categories, "comma-separated `CATEGORIES` to ask: "+
		strings.Join(footprintCategories(), ", "))
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "how long to wait for the workers' answers")
}

func (c *footprintCmd) args(pos []string) error {
	if len(pos) == 0 {
		return errors.New("want at least one ACCOUNT_ID")
	}
	for _, id := range pos {
		if err := validateID("account id", id); err != nil {
			return err
		}
	}
	c.accountIDs = dedupe(pos)
	if c.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	c.categoryList = nil
	for _, cat := range strings.Split(c.categories, ",") {
		cat = strings.TrimSpace(cat)
		if cat == "" {
			continue
		}
		if !categoryPattern.MatchString(cat) {
			return fmt.Errorf("--categories: %q is not a category name", cat)
		}
		c.categoryList = append(c.categoryList, cat)
	}
	c.categoryList = dedupe(c.categoryList)
	if len(c.categoryList) == 0 {
		return errors.New("--categories names no category")
	}
	return nil
}

// categoryAnswer is what one category said, or why it said nothing.
type categoryAnswer struct {
	reply *erasurev1.FootprintReply
	// problem is set when the category gave no usable answer.
	problem string
}

func (c *footprintCmd) run(ctx context.Context, p *program) error {
	nc, err := p.cfg.connectNATS()
	if err != nil {
		return err
	}
	defer nc.Close()

	answers := askFootprints(ctx, nc, c.accountIDs, c.categoryList, c.timeout)
	if err := ctx.Err(); err != nil {
		return err
	}
	report := buildFootprintReport(c.accountIDs, c.categoryList, answers)
	if p.cfg.json() {
		if err := writeJSON(p.stdout, report.json()); err != nil {
			return err
		}
	} else if err := report.write(p.stdout); err != nil {
		return err
	}
	return report.err()
}

// askFootprints asks every category at once and waits for all answers or
// the timeout.
func askFootprints(ctx context.Context, nc *nats.Conn, accountIDs, categories []string, timeout time.Duration) map[string]categoryAnswer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	data, err := proto.Marshal(&erasurev1.FootprintRequest{AccountIds: accountIDs})
	answers := make(map[string]categoryAnswer, len(categories))
	if err != nil {
		for _, cat := range categories {
			answers[cat] = categoryAnswer{problem: "cannot encode the request: " + err.Error()}
		}
		return answers
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, cat := range categories {
		wg.Go(func() {
			a := askFootprint(ctx, nc, cat, data)
			mu.Lock()
			answers[cat] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	return answers
}

func askFootprint(ctx context.Context, nc *nats.Conn, category string, data []byte) categoryAnswer {
	msg, err := nc.RequestWithContext(ctx, erasurev1.FootprintSubject(category), data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return categoryAnswer{problem: noAnswer(category)}
		}
		return categoryAnswer{problem: fmt.Sprintf("no answer (%v)", err)}
	}
	var reply erasurev1.FootprintReply
	if err := proto.Unmarshal(msg.Data, &reply); err != nil {
		return categoryAnswer{problem: fmt.Sprintf("unreadable answer (%v): is the %s worker built from the same contract?", err, category)}
	}
	if reply.GetError() != "" {
		return categoryAnswer{problem: "worker error: " + reply.GetError()}
	}
	return categoryAnswer{reply: &reply}
}

func noAnswer(category string) string {
	return fmt.Sprintf("no answer (is the %s worker running?)", category)
}

// footprintCell is one account's footprint in one category, or why it is
// unknown.
type footprintCell struct {
	Items   *int64           `json:"items,omitzero"`
	Detail  map[string]int64 `json:"detail,omitzero"`
	Problem string           `json:"error,omitempty"`
}

type footprintAccount struct {
	AccountID  string                   `json:"account_id"`
	Categories map[string]footprintCell `json:"categories"`
}

type footprintReport struct {
	categories []string
	accounts   []footprintAccount
	// failed lists the categories that did not answer usably, in order.
	failed []string
	// incomplete lists categories whose answer left out an account.
	incomplete []string
}

func buildFootprintReport(accountIDs, categories []string, answers map[string]categoryAnswer) footprintReport {
	r := footprintReport{categories: categories}
	byCat := make(map[string]map[string]*erasurev1.AccountFootprint, len(categories))
	problems := make(map[string]string)
	for _, cat := range categories {
		a := answers[cat]
		if a.reply == nil {
			problems[cat] = a.problem
			if a.problem == "" {
				problems[cat] = noAnswer(cat)
			}
			r.failed = append(r.failed, cat)
			continue
		}
		m := make(map[string]*erasurev1.AccountFootprint, len(a.reply.GetAccounts()))
		for _, af := range a.reply.GetAccounts() {
			m[af.GetAccountId()] = af
		}
		byCat[cat] = m
	}
	for _, id := range accountIDs {
		acc := footprintAccount{AccountID: id, Categories: make(map[string]footprintCell, len(categories))}
		for _, cat := range categories {
			m, ok := byCat[cat]
			if !ok {
				acc.Categories[cat] = footprintCell{Problem: problems[cat]}
				continue
			}
			af, ok := m[id]
			if !ok {
				acc.Categories[cat] = footprintCell{Problem: "left out of the worker's answer"}
				if !slices.Contains(r.incomplete, cat) {
					r.incomplete = append(r.incomplete, cat)
				}
				continue
			}
			items := af.GetItems()
			detail := make(map[string]int64, len(af.GetDetail()))
			for k, v := range af.GetDetail() {
				detail[k] = v
			}
			acc.Categories[cat] = footprintCell{Items: &items, Detail: detail}
		}
		r.accounts = append(r.accounts, acc)
	}
	return r
}

func (r footprintReport) json() any {
	return struct {
		Accounts []footprintAccount `json:"accounts"`
	}{Accounts: r.accounts}
}

func (r footprintReport) write(w io.Writer) error {
	t := newTable("ACCOUNT", "CATEGORY", "ITEMS", "DETAIL")
	for _, acc := range r.accounts {
		for _, cat := range r.categories {
			cell := acc.Categories[cat]
			if cell.Items == nil {
				t.add(acc.AccountID, cat, "-", cell.Problem)
				continue
			}
			t.add(acc.AccountID, cat, strconv.FormatInt(*cell.Items, 10), formatDetail(cell.Detail))
		}
	}
	return t.write(w)
}

// err is the command's outcome: exit 5 when a category did not answer.
func (r footprintReport) err() error {
	if len(r.failed) > 0 {
		return withCode(ExitUnavailable, fmt.Errorf(
			"no usable answer from %s: start the workers (scripts/demo) or check their logs, then ask again",
			strings.Join(r.failed, ", ")))
	}
	if len(r.incomplete) > 0 {
		return fmt.Errorf("the answer of %s left out some accounts: the footprint of those accounts is unknown",
			strings.Join(r.incomplete, ", "))
	}
	return nil
}

// formatDetail prints a detail map as "k=v" pairs sorted by key.
func formatDetail(d map[string]int64) string {
	if len(d) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatInt(d[k], 10)
	}
	return strings.Join(parts, " ")
}

// dedupe drops repeated strings, keeping the first of each in order.
func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
