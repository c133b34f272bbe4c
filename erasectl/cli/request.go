package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/apiclient"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var requestSpec = commandSpec{
	name:    "request",
	summary: "ask the coordinator to erase an account now (a forced erasure)",
	usage:   "request ACCOUNT_ID --reason WHY [--requested-by WHO] [--wait] [--timeout 2m]",
	description: `
Asks the coordinator to erase the data of ACCOUNT_ID in every category now,
without a grace period (POST /v1/erasures). The request is idempotent: when
the account already has an active job, that job is returned ("created: no").

With --wait, erasectl follows the job until it completes or fails, showing
progress on stderr, then prints the job with its tasks. It exits 3 when the
job failed and 4 when --timeout passed first; the job goes on either way.`,
	examples: `  erasectl request demo-0001 --reason "DSR ticket 4711"
  erasectl request demo-0001 --reason "regulator order" --wait --timeout 5m
  erasectl request demo-0001 --reason test -o json`,
	globals: flagAPIURL,
	new:     func() command { return &requestCmd{timeout: 2 * time.Minute} },
}

type requestCmd struct {
	accountID   string
	requestedBy string
	reason      string
	wait        bool
	timeout     time.Duration
}

func (c *requestCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.requestedBy, "requested-by", c.requestedBy, "`WHO` acts: optional, the coordinator records your API token's principal and refuses any other name")
	fs.StringVar(&c.reason, "reason", c.reason, "`WHY` the erasure is needed: the ticket or order, recorded in the audit trail (required)")
	fs.BoolVar(&c.wait, "wait", c.wait, "follow the job until it completes or fails")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "with --wait: how long to wait before giving up (exit 4)")
}

func (c *requestCmd) args(pos []string) error {
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one ACCOUNT_ID, got %d arguments", len(pos))
	}
	c.accountID = pos[0]
	if err := validateID("account id", c.accountID); err != nil {
		return err
	}
	if c.reason == "" {
		return errors.New("--reason is required")
	}
	if c.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	return nil
}

func (c *requestCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	job, err := client.CreateErasure(ctx, apiv1.CreateErasureRequest{
		AccountID:   c.accountID,
		RequestedBy: c.requestedBy,
		Reason:      c.reason,
	})
	if err != nil {
		return p.apiError(err, "")
	}
	if !c.wait {
		return p.printJob(job, false)
	}

	final, waitErr := p.waitForJob(ctx, client, job, c.timeout)
	final.Created = job.Created // only the POST answer says it
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
		return withCode(ExitJobFailed, fmt.Errorf("job %s failed: %s; see 'erasectl status %s'", final.ID, orNoReason(final.Error), final.ID))
	}
	return nil
}

// errWaitTimeout is the cause of the wait context's end when --timeout
// passed.
var errWaitTimeout = errors.New("wait timeout")

// waitForJob polls the job until it ends, ctx ends or timeout passes,
// printing progress on stderr. It returns the last job seen, and an error with
// exit code 4 when the timeout passed. Failed polls (coordinator briefly
// down or restarting) are reported and retried until the timeout.
func (p *program) waitForJob(ctx context.Context, client *apiclient.Client, job apiv1.Job, timeout time.Duration) (apiv1.Job, error) {
	waitCtx, cancel := context.WithTimeoutCause(ctx, timeout, errWaitTimeout)
	defer cancel()

	ticker := time.NewTicker(p.pollInterval)
	defer ticker.Stop()
	var lastLine, lastPollErr string
	for {
		if line := progressLine(job); line != lastLine {
			fmt.Fprintln(p.stderr, line)
			lastLine = line
		}
		if jobEnded(job) {
			return job, nil
		}
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				return job, ctx.Err()
			}
			done, total := taskCounts(job)
			return job, withCode(ExitTimeout, fmt.Errorf(
				"timed out after %s waiting for job %s (%s, %d/%d tasks done); it goes on: follow it with 'erasectl status %s'",
				timeout, job.ID, job.Status, done, total, job.ID))
		case <-ticker.C:
		}
		next, err := client.GetErasure(waitCtx, job.ID)
		switch {
		case err == nil:
			job = next
			lastPollErr = ""
		case waitCtx.Err() != nil:
			// Loop round to report the timeout or the interrupt.
		case apiclient.IsNotFound(err):
			return job, p.apiError(err, job.ID)
		default:
			// The coordinator may be restarting: say so once and keep
			// polling until the timeout.
			if msg := p.apiError(err, job.ID).Error(); msg != lastPollErr {
				fmt.Fprintf(p.stderr, "erasectl: polling job %s: %s (retrying)\n", job.ID, msg)
				lastPollErr = msg
			}
		}
	}
}

func progressLine(job apiv1.Job) string {
	done, total := taskCounts(job)
	return fmt.Sprintf("job %s: %s, %d/%d tasks done", job.ID, job.Status, done, total)
}

// printJob prints a job on stdout as a header (and task table) or JSON.
func (p *program) printJob(job apiv1.Job, tasks bool) error {
	if p.cfg.json() {
		return writeJSON(p.stdout, job)
	}
	return writeJob(p.stdout, job, tasks)
}

// orDash shows an empty cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// orNoReason shows an empty failure reason as such.
func orNoReason(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}
