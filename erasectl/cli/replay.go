package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/apiclient"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var replaySpec = commandSpec{
	name:    "replay",
	summary: "run a job's failed tasks (or one category of it) again",
	usage:   "replay (JOB_ID | --status failed [--since 2h]) --reason WHY [--requested-by WHO] [--category C [--stage S]] [--dry-run] [--wait]",
	description: `
Schedules tasks of a job again as a new generation (POST
/v1/erasures/{id}/replay): every failed task, or with --category the tasks
of that category (with --stage, the one stage) even if they succeeded. A
replayed task's purge finds what is left, so nothing is counted twice. The
replay is recorded with who asked and why, and shows in the task's history.

It exits 7 when there is nothing to replay or a task is still under way.
With --wait it follows the job like 'request --wait'.

Bulk: with --status failed instead of a JOB_ID, every job that failed within
--since (default: any time) is replayed, or with --category only jobs whose
task of that category failed, and only those tasks. --dry-run lists what
would run and changes nothing. The real run shows progress on stderr and
ends with a summary; it exits 7 when some jobs could not be replayed.`,
	examples: `  erasectl replay 01a2…c9 --reason "contacts DB grants restored"
  erasectl replay 01a2…c9 --category logs --reason "verify" --wait
  erasectl replay --status failed --since 2h --category logs --dry-run
  erasectl replay --status failed --since 2h --reason "INC-311 fixed"`,
	globals: flagAPIURL,
	new:     func() command { return &replayCmd{timeout: 2 * time.Minute} },
}

type replayCmd struct {
	jobID       string
	category    string
	stage       string
	requestedBy string
	reason      string
	wait        bool
	timeout     time.Duration
	status      string
	since       time.Duration
	dryRun      bool
}

func (c *replayCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.category, "category", c.category, "replay this `CATEGORY`'s tasks (default: every failed task)")
	fs.StringVar(&c.stage, "stage", c.stage, "with --category: only this `STAGE`")
	fs.StringVar(&c.requestedBy, "requested-by", c.requestedBy, "`WHO` acts: optional, the coordinator records your API token's principal and refuses any other name")
	fs.StringVar(&c.reason, "reason", c.reason, "`WHY`, recorded in the audit trail (required)")
	fs.BoolVar(&c.wait, "wait", c.wait, "follow the job until it completes or fails")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "with --wait: how long to wait before giving up (exit 4)")
	fs.StringVar(&c.status, "status", c.status, "bulk: replay jobs in this `STATUS` (only \"failed\")")
	fs.DurationVar(&c.since, "since", c.since, "bulk: only jobs that failed within this long")
	fs.BoolVar(&c.dryRun, "dry-run", c.dryRun, "bulk: list what would be replayed, change nothing")
}

func (c *replayCmd) args(pos []string) error {
	if c.status != "" {
		switch {
		case c.status != "failed":
			return errors.New(`--status must be "failed"`)
		case len(pos) > 0:
			return errors.New("give a JOB_ID or --status, not both")
		case c.stage != "":
			return errors.New("--stage is for one job; bulk replays take --category")
		case c.wait:
			return errors.New("--wait is for one job; follow bulk replays with 'erasectl list --status running'")
		case c.since < 0:
			return errors.New("--since must be positive")
		case !c.dryRun && c.reason == "":
			return errors.New("--reason is required (or use --dry-run)")
		}
		return nil
	}
	if c.dryRun || c.since != 0 {
		return errors.New("--dry-run and --since go with --status failed")
	}
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one JOB_ID (or --status failed), got %d arguments", len(pos))
	}
	c.jobID = pos[0]
	if err := validateID("job id", c.jobID); err != nil {
		return err
	}
	switch {
	case c.reason == "":
		return errors.New("--reason is required")
	case c.stage != "" && c.category == "":
		return errors.New("--stage needs --category")
	case c.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

// runBulk selects the failed jobs with a dry run, then (unless --dry-run)
// replays them one by one so that progress can be shown.
func (c *replayCmd) runBulk(ctx context.Context, p *program, client *apiclient.Client) error {
	req := apiv1.BulkReplayRequest{Status: c.status, Category: c.category, DryRun: true}
	if c.since > 0 {
		req.Since = c.since.String()
	}
	sel, err := client.BulkReplay(ctx, req)
	if err != nil {
		return p.apiError(err, "")
	}
	if !c.dryRun {
		for i := range sel.Jobs {
			item := &sel.Jobs[i]
			fmt.Fprintf(p.stderr, "replaying %d/%d: job %s (%s)\n", i+1, len(sel.Jobs), item.JobID, strings.Join(item.Tasks, ", "))
			_, err := client.ReplayErasure(ctx, item.JobID, apiv1.ReplayRequest{Category: c.category, RequestedBy: c.requestedBy, Reason: c.reason})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				item.Result, item.Error = "conflict", p.apiError(err, item.JobID).Error()
				sel.Conflicts++
				continue
			}
			item.Result = "replayed"
			sel.Replayed++
		}
		sel.DryRun = false
	}
	if p.cfg.json() {
		if err := writeJSON(p.stdout, sel); err != nil {
			return err
		}
	} else {
		t := newTable("JOB", "ACCOUNT", "FAILED AT", "TASKS", "RESULT")
		for _, j := range sel.Jobs {
			res := j.Result
			if j.Error != "" {
				res += ": " + j.Error
			}
			t.add(j.JobID, j.AccountID, formatTime(j.FinishedAt), strings.Join(j.Tasks, ","), res)
		}
		if err := t.write(p.stdout); err != nil {
			return err
		}
		if c.dryRun {
			fmt.Fprintf(p.stdout, "\ndry run: %d jobs would be replayed; nothing changed\n", sel.Matched)
		} else {
			fmt.Fprintf(p.stdout, "\n%d matched, %d replayed, %d not replayed\n", sel.Matched, sel.Replayed, sel.Conflicts)
		}
	}
	if sel.Conflicts > 0 {
		return withCode(ExitConflict, fmt.Errorf("%d jobs could not be replayed; see the table", sel.Conflicts))
	}
	return nil
}

func (c *replayCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	if c.status != "" {
		return c.runBulk(ctx, p, client)
	}
	res, err := client.ReplayErasure(ctx, c.jobID, apiv1.ReplayRequest{
		Category: c.category, Stage: c.stage, RequestedBy: c.requestedBy, Reason: c.reason,
	})
	if err != nil {
		return p.apiError(err, c.jobID)
	}
	fmt.Fprintf(p.stderr, "replaying %s of job %s\n", strings.Join(res.Replayed, ", "), c.jobID)
	if !c.wait {
		return p.printJob(res.Job, true)
	}
	final, waitErr := p.waitForJob(ctx, client, res.Job, c.timeout)
	if errors.Is(waitErr, context.Canceled) {
		return waitErr
	}
	if err := p.printJob(final, true); err != nil {
		return err
	}
	if waitErr != nil {
		return waitErr
	}
	if final.Status == apiv1.JobFailed {
		return withCode(ExitJobFailed, fmt.Errorf("job %s failed again: %s; see 'erasectl status %s'", final.ID, orNoReason(final.Error), final.ID))
	}
	return nil
}
