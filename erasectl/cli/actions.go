package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// The privacy team's actions on a job share one command type; each spec
// says what its action needs.
var (
	cancelSpec = actionSpec(apiv1.ActionCancel,
		"undo a deletion during its grace period (nothing is erased)",
		`
Cancels a job that is still in its grace period (status pending): no stage
has run, and none will. A customer who deleted their account from the
dashboard can change their mind for 14 days (the retention policy's grace
period). Once a stage has run it exits 7: the erasure has started.`,
		`  erasectl cancel 01a2…c9 --reason "customer restored the account"`)
	forceSpec = actionSpec(apiv1.ActionForce,
		"skip a job's grace period and run its stages now (privacy team)",
		`
Runs a pending job now instead of at the end of its grace period: every
stage moves earlier by the grace that is skipped. Needs a reason and the
privacy team's ticket. It exits 7 when the job is not pending.`,
		`  erasectl force 01a2…c9 --reason "DSR by e-mail" --ticket PRIV-1234`)
	holdSpec = actionSpec(apiv1.ActionHold,
		"put a job under legal hold: no stage runs until release",
		`
Stops a pending, running or erased job: no stage is dispatched while it is
held (a stage already with its worker finishes). The deadline still counts:
extend it if the hold will outlast it. It exits 7 when the job has ended or
is already held.`,
		`  erasectl hold 01a2…c9 --reason "tax audit 2026-17" --ticket LEGAL-88`)
	releaseSpec = actionSpec(apiv1.ActionRelease,
		"lift a legal hold: the job resumes where it stopped",
		`
Releases a held job: it returns to the status it had, and every stage whose
time came during the hold runs at once. It exits 7 when the job is not held.`,
		`  erasectl release 01a2…c9 --reason "audit closed" --ticket LEGAL-88`)
	extendSpec = actionSpec(apiv1.ActionExtend,
		"move a job's deadline by one or two months (GDPR Art. 12(3))",
		`
Extends the legal deadline by --months (1 or 2; two further months in all,
as GDPR Art. 12(3) allows for complex or numerous requests). Remember that
the data subject must be told of the extension and why within the first
month. It exits 7 when the job has erased the data or ended, and 2 when the
extension would pass two months.`,
		`  erasectl extend 01a2…c9 --months 1 --reason "numerous requests" --ticket PRIV-1234`)
)

func actionSpec(action, summary, description, examples string) commandSpec {
	usage := action + " JOB_ID --reason WHY [--requested-by WHO]"
	switch action {
	case apiv1.ActionForce:
		usage += " --ticket REF"
	case apiv1.ActionExtend:
		usage += " --months N [--ticket REF]"
	default:
		usage += " [--ticket REF]"
	}
	return commandSpec{
		name: action, summary: summary, usage: usage, description: description, examples: examples,
		globals: flagAPIURL,
		new:     func() command { return &actionCmd{action: action} },
	}
}

type actionCmd struct {
	action      string
	jobID       string
	requestedBy string
	reason      string
	ticket      string
	months      int
}

func (c *actionCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.requestedBy, "requested-by", c.requestedBy, "`WHO` acts: optional, the coordinator records your API token's principal and refuses any other name")
	fs.StringVar(&c.reason, "reason", c.reason, "`WHY`, recorded in the audit trail (required)")
	fs.StringVar(&c.ticket, "ticket", c.ticket, "the privacy team's case `REF`erence (required for force)")
	if c.action == apiv1.ActionExtend {
		fs.IntVar(&c.months, "months", c.months, "extend the deadline by `N` months: 1 or 2")
	}
}

func (c *actionCmd) args(pos []string) error {
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one JOB_ID, got %d arguments", len(pos))
	}
	c.jobID = pos[0]
	if err := validateID("job id", c.jobID); err != nil {
		return err
	}
	switch {
	case c.reason == "":
		return errors.New("--reason is required")
	case c.action == apiv1.ActionForce && c.ticket == "":
		return errors.New("--ticket is required for force (the privacy team's case reference)")
	case c.action == apiv1.ActionExtend && (c.months < 1 || c.months > 2):
		return errors.New("--months must be 1 or 2")
	}
	return nil
}

func (c *actionCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	job, err := client.Act(ctx, c.jobID, c.action, apiv1.ActionRequest{
		RequestedBy: c.requestedBy, Reason: c.reason, Ticket: c.ticket, Months: c.months,
	})
	if err != nil {
		return p.apiError(err, c.jobID)
	}
	if !p.cfg.json() {
		fmt.Fprintf(p.stderr, "%s: job %s is now %s\n", c.action, job.ID, job.Status)
	}
	return p.printJob(job, true)
}
