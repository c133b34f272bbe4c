package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/apiclient"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var adminSpec = commandSpec{
	name:    "admin",
	summary: "operate the coordinator's state: rebuild it from the lifecycle stream",
	usage:   "admin rebuild [--timeout 30m]",
	description: `
  rebuild  rebuilds every job in Redis from the lifecycle stream
           (POST /v1/admin/rebuild), after Redis lost its data. Jobs,
           tasks, their histories, the account guards, dashboard event ids
           and the due index come back as they were; jobs the running
           coordinators changed meanwhile are kept. It reads every event
           ever recorded, so it takes time on a large stream; it waits for
           the end and prints the summary.

It exits 7 when a rebuild is already running (on any coordinator), 5 when
the coordinator cannot reach Redis or NATS. Events the rebuild could not
use are listed as problems and announced on stderr; the exit code is still
0, as every other event was applied.`,
	examples: `  erasectl admin rebuild
  erasectl admin rebuild -o json --timeout 2h`,
	globals: flagAPIURL,
	new:     func() command { return &adminCmd{timeout: 30 * time.Minute} },
}

type adminCmd struct {
	action  string
	timeout time.Duration
}

func (c *adminCmd) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "rebuild: how long to wait for the rebuild to finish")
}

func (c *adminCmd) args(pos []string) error {
	if len(pos) != 1 {
		return errors.New("want one action: rebuild")
	}
	c.action = pos[0]
	switch {
	case c.action != "rebuild":
		return fmt.Errorf("unknown action %q: want rebuild", c.action)
	case c.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

func (c *adminCmd) run(ctx context.Context, p *program) error {
	// The one exchange lasts as long as the rebuild: the usual 30 s
	// client timeout does not apply.
	hc := &http.Client{Timeout: c.timeout, Transport: p.httpClient.Transport}
	client, err := p.apiWith(hc)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stderr, "rebuilding the job state from the lifecycle stream (this reads every event; waiting up to %s)\n", c.timeout)
	sum, err := client.Rebuild(ctx)
	var ue *apiclient.UnreachableError
	if errors.As(err, &ue) && ctx.Err() == nil && errors.Is(ue.Err, context.DeadlineExceeded) {
		return withCode(ExitTimeout, fmt.Errorf("no answer within %s; the rebuild goes on in the coordinator, which logs its summary: raise --timeout next time", c.timeout))
	}
	if err != nil {
		return p.apiError(err, "")
	}
	if p.cfg.json() {
		err = writeJSON(p.stdout, sum)
	} else {
		err = writeRebuildSummary(p, sum)
	}
	if err != nil {
		return err
	}
	if n := sum.Unapplied + sum.Mismatches + sum.Undecodable; n > 0 {
		fmt.Fprintf(p.stderr, "warning: %d events or jobs were not rebuilt as recorded; see the problems listed (-o json for all fields)\n", n)
	}
	return nil
}

func writeRebuildSummary(p *program, s apiv1.RebuildSummary) error {
	rate := "-"
	if s.DurationSeconds > 0 {
		rate = strconv.FormatFloat(float64(s.Events)/s.DurationSeconds, 'f', 0, 64) + " events/s"
	}
	var statuses []string
	for _, st := range []string{apiv1.JobPending, apiv1.JobRunning, apiv1.JobHeld, apiv1.JobErased, apiv1.JobCompleted, apiv1.JobFailed, apiv1.JobCancelled} {
		// The usual three always, the others when there are any.
		if n := s.ByStatus[st]; n > 0 || st == apiv1.JobRunning || st == apiv1.JobCompleted || st == apiv1.JobFailed {
			statuses = append(statuses, fmt.Sprintf("%s %d", st, n))
		}
	}
	var skipped []string
	for typ, n := range s.Skipped {
		skipped = append(skipped, fmt.Sprintf("%s %d", strings.TrimPrefix(typ, "EVENT_TYPE_"), n))
	}
	sort.Strings(skipped)
	seqs := "-"
	if s.Events > 0 {
		seqs = fmt.Sprintf("%d to %d", s.FirstSeq, s.LastSeq)
	}
	if err := writeFields(p.stdout, [][2]string{
		{"events read", fmt.Sprintf("%d (stream sequences %s)", s.Events, seqs)},
		{"jobs rebuilt", fmt.Sprintf("%d (%s)", s.Jobs, strings.Join(statuses, ", "))},
		{"jobs written", fmt.Sprintf("%d (kept as they were, changed meanwhile: %d)", s.Written, s.KeptNewer)},
		{"events applied", strconv.FormatUint(s.Applied, 10)},
		{"job ends checked", strconv.FormatUint(s.Checked, 10)},
		{"duplicates dropped", strconv.FormatUint(s.Duplicates, 10)},
		{"no-ops", strconv.FormatUint(s.Ignored, 10)},
		{"skipped", orDash(strings.Join(skipped, ", "))},
		{"undecodable", strconv.FormatUint(s.Undecodable, 10)},
		{"unapplied", strconv.FormatUint(s.Unapplied, 10)},
		{"mismatches", strconv.FormatUint(s.Mismatches, 10)},
		{"took", fmt.Sprintf("%.1fs (reading %.1fs; %s)", s.DurationSeconds, s.ReadSeconds, rate)},
	}); err != nil {
		return err
	}
	if len(s.Problems) == 0 {
		return nil
	}
	fmt.Fprintln(p.stdout)
	t := newTable("JOB", "SEQ", "PROBLEM", "DETAIL")
	for _, pr := range s.Problems {
		seq := "-"
		if pr.Seq > 0 {
			seq = strconv.FormatUint(pr.Seq, 10)
		}
		t.add(pr.JobID, seq, pr.Kind, pr.Detail)
	}
	return t.write(p.stdout)
}
