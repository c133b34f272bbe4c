package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var reconcileSpec = commandSpec{
	name:    "reconcile",
	summary: "prove every running job's tasks are accounted for, and repair what is lost",
	usage:   "reconcile [--dry-run]",
	description: `
Checks every task of every running job (/v1/reconciliation) and counts it
as done, failed, in flight (its message is in the work queue), scheduled or
waiting. A dispatched task whose message is gone without a report (lost by
the broker) is published again, and a scheduled task missing from the due
index is put back; --dry-run only says what would be done. Tasks that do not
move are listed as stuck, with why. The coordinator also runs this every
minute by itself.`,
	examples: `  erasectl reconcile --dry-run
  erasectl reconcile -o json`,
	globals: flagAPIURL,
	new:     func() command { return &reconcileCmd{} },
}

type reconcileCmd struct{ dryRun bool }

func (c *reconcileCmd) flags(fs *flag.FlagSet) {
	fs.BoolVar(&c.dryRun, "dry-run", c.dryRun, "report only, repair nothing")
}

func (c *reconcileCmd) args(pos []string) error {
	if len(pos) != 0 {
		return errors.New("takes no arguments")
	}
	return nil
}

func (c *reconcileCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	rep, err := client.Reconcile(ctx, c.dryRun)
	if err != nil {
		return p.apiError(err, "")
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, rep)
	}
	fmt.Fprintf(p.stdout, "checked %d running jobs at %s", rep.JobsChecked, formatTime(rep.At))
	if rep.Truncated {
		fmt.Fprint(p.stdout, " (stopped at the scan limit)")
	}
	fmt.Fprintln(p.stdout)
	t := newTable("TASKS", "COUNT")
	for _, s := range []string{"done", "failed", "in_flight", "scheduled", "waiting"} {
		t.add(s, strconv.Itoa(rep.Tasks[s]))
	}
	if err := t.write(p.stdout); err != nil {
		return err
	}
	verb := "repaired"
	if rep.DryRun {
		verb = "would repair"
	}
	var actions []string
	for a := range rep.Actions {
		actions = append(actions, a)
	}
	sort.Strings(actions)
	for _, a := range actions {
		fmt.Fprintf(p.stdout, "%s: %s %d\n", verb, a, rep.Actions[a])
	}
	if len(rep.Stuck) > 0 {
		fmt.Fprintln(p.stdout)
		return writeStuck(p, rep.Stuck)
	}
	return nil
}

func writeStuck(p *program, list []apiv1.StuckTask) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(p.stdout, "no stuck tasks")
		return err
	}
	t := newTable("JOB", "ACCOUNT", "TASK", "STATUS", "SINCE", "WHY")
	for _, s := range list {
		t.add(s.JobID, s.AccountID, s.Task, s.Status, formatTime(s.Since), s.Why)
	}
	return t.write(p.stdout)
}
