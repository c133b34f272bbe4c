package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var listSpec = commandSpec{
	name:    "list",
	summary: "list erasure jobs",
	usage:   "list [--account ACCOUNT_ID] [--status STATUS] [--limit N] [--all | --page-token TOKEN] | list --stuck | list (--at-risk [--within 72h] | --overdue)",
	description: `
Lists erasure jobs (GET /v1/erasures), one page of --limit jobs, or with --all
every page. When more pages remain, stderr says how to fetch the next one; in
JSON output, next_page_token holds it.

With --stuck it lists instead the tasks of running jobs that do not move —
due but not dispatched, or dispatched long ago without a report — and why
(GET /v1/erasures?stuck=true); see also 'erasectl reconcile'.

With --at-risk it lists the running jobs whose legal deadline (one month
after the request) falls within --within (default 72h), overdue ones
included, earliest deadline first; with --overdue only those already past
it.`,
	examples: `  erasectl list
  erasectl list --account demo-0001
  erasectl list --status failed --all -o json
  erasectl list --stuck
  erasectl list --at-risk --within 168h
  erasectl list --overdue -o json`,
	globals: flagAPIURL,
	new:     func() command { return &listCmd{limit: 50, within: 72 * time.Hour} },
}

// maxListPages guards --all against a coordinator that never ends a listing.
const maxListPages = 100000

type listCmd struct {
	accountID string
	status    string
	limit     int
	all       bool
	pageToken string
	stuck     bool
	atRisk    bool
	overdue   bool
	within    time.Duration
}

func (c *listCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.accountID, "account", c.accountID, "only jobs of `ACCOUNT_ID`")
	fs.StringVar(&c.status, "status", c.status, "only jobs with `STATUS`: running, completed or failed")
	fs.IntVar(&c.limit, "limit", c.limit, "jobs per page")
	fs.BoolVar(&c.all, "all", c.all, "follow the pages to the end")
	fs.StringVar(&c.pageToken, "page-token", c.pageToken, "start at the page of `TOKEN`, from an earlier listing")
	fs.BoolVar(&c.stuck, "stuck", c.stuck, "list the tasks of running jobs that do not move")
	fs.BoolVar(&c.atRisk, "at-risk", c.atRisk, "list running jobs whose deadline is within --within")
	fs.DurationVar(&c.within, "within", c.within, "with --at-risk: how close the deadline is")
	fs.BoolVar(&c.overdue, "overdue", c.overdue, "list running jobs past their deadline")
}

func (c *listCmd) args(pos []string) error {
	if len(pos) != 0 {
		return fmt.Errorf("takes no arguments, got %d (filter with --account and --status)", len(pos))
	}
	if c.limit <= 0 {
		return errors.New("--limit must be positive")
	}
	special := 0
	for _, b := range []bool{c.stuck, c.atRisk, c.overdue} {
		if b {
			special++
		}
	}
	if special > 1 || (special == 1 && (c.accountID != "" || c.status != "" || c.all || c.pageToken != "")) {
		return errors.New("--stuck, --at-risk and --overdue each stand alone")
	}
	if c.atRisk && c.within <= 0 {
		return errors.New("--within must be positive")
	}
	if c.accountID != "" {
		if err := validateID("account id", c.accountID); err != nil {
			return err
		}
	}
	return nil
}

func (c *listCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	if c.atRisk || c.overdue {
		list, err := client.ListByDeadline(ctx, c.within, c.overdue, 500)
		if err != nil {
			return p.apiError(err, "")
		}
		if p.cfg.json() {
			return writeJSON(p.stdout, list)
		}
		return writeJobList(p.stdout, list.Jobs)
	}
	if c.stuck {
		list, err := client.Stuck(ctx)
		if err != nil {
			return p.apiError(err, "")
		}
		if p.cfg.json() {
			return writeJSON(p.stdout, list)
		}
		return writeStuck(p, list.Stuck)
	}
	var out apiv1.JobList
	token := c.pageToken
	seen := map[string]bool{}
	for page := 0; ; page++ {
		list, err := client.ListErasures(ctx, c.accountID, c.status, c.limit, token)
		if err != nil {
			return p.apiError(err, "")
		}
		out.Jobs = append(out.Jobs, list.Jobs...)
		out.NextPageToken = list.NextPageToken
		if !c.all || list.NextPageToken == "" {
			break
		}
		if seen[list.NextPageToken] || page >= maxListPages {
			return fmt.Errorf("list erasures: the coordinator repeated page token %q; stopping", list.NextPageToken)
		}
		seen[list.NextPageToken] = true
		token = list.NextPageToken
	}
	if out.Jobs == nil {
		out.Jobs = []apiv1.Job{}
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, out)
	}
	if err := writeJobList(p.stdout, out.Jobs); err != nil {
		return err
	}
	if out.NextPageToken != "" {
		fmt.Fprintf(p.stderr, "more jobs: add --page-token %s for the next page, or --all for every page\n", out.NextPageToken)
	}
	return nil
}
