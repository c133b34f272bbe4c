package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

var deadLettersSpec = commandSpec{
	name:    "dead-letters",
	summary: "list, show and replay tasks that failed for good",
	usage:   "dead-letters list [--category C] [--limit 50] | show SEQ | replay (SEQ... | --all [--category C]) --reason WHY [--requested-by WHO]",
	description: `
A task that failed permanently, ran out of attempts, or whose worker crashed
on every delivery is kept in the dead-letter stream with the reason, the
error class and the number of attempts; its job shows the task failed.

  list     the oldest dead letters first, with how many there are in all
  show     one dead letter
  replay   run the letters' tasks again (through their jobs' replay) and
           remove the letters; --all drains the queue (of one category).
           A letter whose task already succeeded is removed as "resolved".

Replay shows progress on stderr and ends with a summary; it exits 7 when a
letter could not be replayed (its job's state forbids it).`,
	examples: `  erasectl dead-letters list
  erasectl dead-letters show 12
  erasectl dead-letters replay 12 13 --reason "billing API key rotated"
  erasectl dead-letters replay --all --category logs --reason "disk replaced"`,
	globals: flagAPIURL,
	new:     func() command { return &deadLettersCmd{limit: 50} },
}

type deadLettersCmd struct {
	action      string
	seqs        []uint64
	category    string
	limit       int
	all         bool
	requestedBy string
	reason      string
}

func (c *deadLettersCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.category, "category", c.category, "only this `CATEGORY`")
	fs.IntVar(&c.limit, "limit", c.limit, "list: at most this many letters (1-500)")
	fs.BoolVar(&c.all, "all", c.all, "replay: every letter (of --category)")
	fs.StringVar(&c.requestedBy, "requested-by", c.requestedBy, "replay: `WHO` acts: optional, the coordinator records your API token's principal and refuses any other name")
	fs.StringVar(&c.reason, "reason", c.reason, "replay: `WHY` (required)")
}

func (c *deadLettersCmd) args(pos []string) error {
	if len(pos) == 0 {
		return errors.New("want an action: list, show or replay")
	}
	c.action = pos[0]
	for _, a := range pos[1:] {
		seq, err := strconv.ParseUint(a, 10, 64)
		if err != nil || seq == 0 {
			return fmt.Errorf("%q is not a dead letter's sequence number (see 'erasectl dead-letters list')", a)
		}
		c.seqs = append(c.seqs, seq)
	}
	switch c.action {
	case "list":
		if len(c.seqs) > 0 {
			return errors.New("list takes no arguments")
		}
		if c.limit < 1 || c.limit > 500 {
			return errors.New("--limit must be from 1 to 500")
		}
	case "show":
		if len(c.seqs) != 1 {
			return errors.New("show takes exactly one SEQ")
		}
	case "replay":
		switch {
		case c.all == (len(c.seqs) > 0):
			return errors.New("replay takes SEQ arguments or --all, not both and not neither")
		case c.reason == "":
			return errors.New("--reason is required")
		}
	default:
		return fmt.Errorf("unknown action %q: want list, show or replay", c.action)
	}
	return nil
}

func (c *deadLettersCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	switch c.action {
	case "list":
		list, err := client.ListDeadLetters(ctx, c.category, c.limit)
		if err != nil {
			return p.apiError(err, "")
		}
		if p.cfg.json() {
			return writeJSON(p.stdout, list)
		}
		if err := writeDeadLetters(p, list.DeadLetters); err != nil {
			return err
		}
		if list.Total > len(list.DeadLetters) {
			fmt.Fprintf(p.stderr, "%d of %d dead letters shown; raise --limit to see more\n", len(list.DeadLetters), list.Total)
		}
		return nil
	case "show":
		l, err := client.GetDeadLetter(ctx, c.seqs[0])
		if err != nil {
			return p.apiError(err, "")
		}
		if p.cfg.json() {
			return writeJSON(p.stdout, l)
		}
		return writeDeadLetters(p, []apiv1.DeadLetter{l})
	}

	seqs := c.seqs
	remaining := 0
	if c.all {
		list, err := client.ListDeadLetters(ctx, c.category, 500)
		if err != nil {
			return p.apiError(err, "")
		}
		for _, l := range list.DeadLetters {
			seqs = append(seqs, l.Seq)
		}
		remaining = list.Total - len(list.DeadLetters)
	}
	var results []apiv1.DeadLetterReplay
	var failed []string
	for i, seq := range seqs {
		fmt.Fprintf(p.stderr, "replaying dead letter %d (%d/%d)\n", seq, i+1, len(seqs))
		res, err := client.ReplayDeadLetter(ctx, seq, c.requestedBy, c.reason)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed = append(failed, fmt.Sprintf("%d: %v", seq, p.apiError(err, "")))
			continue
		}
		results = append(results, res)
	}
	if p.cfg.json() {
		if err := writeJSON(p.stdout, struct {
			Replayed []apiv1.DeadLetterReplay `json:"replayed"`
			Failed   []string                 `json:"failed"`
		}{results, failed}); err != nil {
			return err
		}
	} else {
		t := newTable("SEQ", "CATEGORY", "JOB", "RESULT")
		for _, r := range results {
			t.add(strconv.FormatUint(r.DeadLetter.Seq, 10), r.DeadLetter.Category, r.DeadLetter.JobID, r.Result)
		}
		if err := t.write(p.stdout); err != nil {
			return err
		}
		fmt.Fprintf(p.stdout, "\n%d replayed or resolved, %d failed\n", len(results), len(failed))
	}
	if remaining > 0 {
		fmt.Fprintf(p.stderr, "%d more dead letters remain: run the same command again\n", remaining)
	}
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintln(p.stderr, "  "+f)
		}
		return withCode(ExitConflict, fmt.Errorf("%d dead letters not replayed; see above", len(failed)))
	}
	return nil
}

func writeDeadLetters(p *program, list []apiv1.DeadLetter) error {
	t := newTable("SEQ", "CATEGORY", "STAGE", "JOB", "ACCOUNT", "CODE", "ATTEMPTS", "STORED AT", "REASON")
	for _, l := range list {
		t.add(strconv.FormatUint(l.Seq, 10), l.Category, l.Stage, orDash(l.JobID), orDash(l.AccountID), orDash(l.Code),
			strconv.Itoa(l.Attempts), formatTime(l.StoredAt), orDash(l.Reason))
	}
	return t.write(p.stdout)
}
