package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var replaySpec = commandSpec{
	name:    "replay",
	summary: "run a job's failed tasks (or one category of it) again",
	usage:   "replay JOB_ID --requested-by WHO --reason WHY [--category C [--stage S]] [--wait] [--timeout 2m]",
	description: `
Schedules tasks of a job again as a new generation (POST
/v1/erasures/{id}/replay): every failed task, or with --category the tasks
of that category (with --stage, the one stage) even if they succeeded. A
replayed task's purge finds what is left, so nothing is counted twice. The
replay is recorded with who asked and why, and shows in the task's history.

It exits 7 when there is nothing to replay or a task is still under way.
With --wait it follows the job like 'request --wait'.`,
	examples: `  erasectl replay 01a2…c9 --requested-by sre:kim --reason "contacts DB grants restored"
  erasectl replay 01a2…c9 --category logs --requested-by sre:kim --reason "verify" --wait`,
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
}

func (c *replayCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.category, "category", c.category, "replay this `CATEGORY`'s tasks (default: every failed task)")
	fs.StringVar(&c.stage, "stage", c.stage, "with --category: only this `STAGE`")
	fs.StringVar(&c.requestedBy, "requested-by", c.requestedBy, "`WHO` asks: a principal id, recorded in the audit trail (required)")
	fs.StringVar(&c.reason, "reason", c.reason, "`WHY`, recorded in the audit trail (required)")
	fs.BoolVar(&c.wait, "wait", c.wait, "follow the job until it completes or fails")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "with --wait: how long to wait before giving up (exit 4)")
}

func (c *replayCmd) args(pos []string) error {
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one JOB_ID, got %d arguments", len(pos))
	}
	c.jobID = pos[0]
	if err := validateID("job id", c.jobID); err != nil {
		return err
	}
	switch {
	case c.requestedBy == "":
		return errors.New("--requested-by is required")
	case c.reason == "":
		return errors.New("--reason is required")
	case c.stage != "" && c.category == "":
		return errors.New("--stage needs --category")
	case c.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

func (c *replayCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
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
		return withCode(ExitJobFailed, fmt.Errorf("job %s failed again: %s; see 'erasectl status %s'", final.ID, orDash(final.Error), final.ID))
	}
	return nil
}
