package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lethe-privacy/lethe/erasectl/apiclient"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
)

// ExitAuditFailed: audit verify found that the trail does not verify. It
// is the certificate's code: a signature (here, a MAC) check failed.
const ExitAuditFailed = ExitBadCertificate

var auditSpec = commandSpec{
	name:    "audit",
	summary: "check that the lifecycle stream's audit trail was not tampered with",
	usage:   "audit verify [--from-seq N] [--limit N] [--timeout 1h] | audit verify --key FILE [--stream NAME] [--nats-url URL]",
	description: `
  verify   walks the lifecycle stream, the audit trail of every job
           transition, and checks its chain: every entry carries a MAC
           (HMAC-SHA256 under the coordinators' audit key) over its content,
           its position and a link to the entry before it. It names the
           first entry that was changed ("edited"), removed ("removed"),
           moved ("reordered"), swapped for an entry of another trail
           ("replaced"), written without the key ("unsigned") or signed
           with a key the check does not hold ("key_changed"), and says what
           to do (docs/runbook.md, "Audit verify failed").

           By default the coordinator walks the stream with its own keys
           (GET /v1/audit/verify); progress goes to stderr. With --key FILE
           erasectl walks the stream itself over NATS with the keys in FILE
           (the coordinator's key file: one key a line, 64 hex digits), from
           --stream (default the lifecycle stream; a mirror or a restored
           copy under another name works too).

           The head (the last entry that verified: position and link) is
           printed: keep it. The chain cannot show entries cut off the end
           of the trail; a later check whose entry at that position has
           another link, or that ends before it, shows it.

It exits 0 when the trail verifies, 9 when it does not, 5 when the
coordinator or NATS cannot be reached, 7 when a check already runs on that
coordinator. With --limit the check stops early and says where to go on
(--from-seq); a check from the middle tests the chain from there only.`,
	examples: `  erasectl audit verify
  erasectl audit verify -o json > audit-2026-06-15.json
  erasectl audit verify --key /etc/lethe/audit.key --nats-url nats://127.0.0.1:4222
  erasectl audit verify --key audit.key --stream ERASURE_V1_LIFECYCLE_BACKUP`,
	globals: flagAPIURL | flagNATSURL,
	new:     func() command { return &auditCmd{timeout: time.Hour, progressEvery: 10000} },
}

type auditCmd struct {
	fromSeq, limit uint64
	timeout        time.Duration
	keyFile        string
	stream         string
	progressEvery  uint64
}

func (c *auditCmd) flags(fs *flag.FlagSet) {
	fs.Uint64Var(&c.fromSeq, "from-seq", 0, "start at this stream `SEQUENCE` (default: the first)")
	fs.Uint64Var(&c.limit, "limit", 0, "check at most `N` entries (default: all)")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "how long the check may take")
	fs.StringVar(&c.keyFile, "key", "", "walk the stream here, over NATS, with the audit keys in `FILE` instead of asking the coordinator")
	fs.StringVar(&c.stream, "stream", "", "with --key: the stream `NAME` to check (default "+erasurev1.LifecycleStream+")")
}

func (c *auditCmd) args(pos []string) error {
	switch {
	case len(pos) != 1 || pos[0] != "verify":
		return errors.New("want one action: verify")
	case c.timeout <= 0:
		return errors.New("--timeout must be positive")
	case c.stream != "" && c.keyFile == "":
		return errors.New("--stream needs --key FILE: the coordinator checks its own lifecycle stream")
	}
	return nil
}

func (c *auditCmd) run(ctx context.Context, p *program) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var (
		rep apiv1.AuditReport
		err error
	)
	start := time.Now()
	if c.keyFile != "" {
		rep, err = c.local(ctx, p)
	} else {
		rep, err = c.remote(ctx, p)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return withCode(ExitTimeout, fmt.Errorf("the check did not finish within %s: raise --timeout, or check in parts with --limit and --from-seq", c.timeout))
		}
		return err
	}
	if rep.DurationSeconds == 0 {
		rep.DurationSeconds = time.Since(start).Seconds()
	}
	if p.cfg.json() {
		err = writeJSON(p.stdout, rep)
	} else {
		err = writeAuditReport(p, rep)
	}
	if err != nil {
		return err
	}
	if !rep.Complete && rep.NextSeq > 0 {
		fmt.Fprintf(p.stderr, "stopped after %d entries (--limit); go on with --from-seq %d\n", rep.Checked, rep.NextSeq)
	}
	if !rep.OK {
		first := rep.Problems[0]
		return withCode(ExitAuditFailed, fmt.Errorf("INVALID: the audit trail in %s does not verify: %d problem(s), the first %s at entry %d (stream sequence %d); see docs/runbook.md, \"Audit verify failed\"",
			rep.Stream, rep.ProblemCount, first.Kind, first.Seq, first.StreamSeq))
	}
	return nil
}

// remote has the coordinator walk the stream.
func (c *auditCmd) remote(ctx context.Context, p *program) (apiv1.AuditReport, error) {
	// The one exchange lasts as long as the walk: the usual 30 s client
	// timeout does not apply (ctx carries --timeout).
	hc := &http.Client{Transport: p.httpClient.Transport}
	client, err := p.apiWith(hc)
	if err != nil {
		return apiv1.AuditReport{}, err
	}
	rep, err := client.VerifyAudit(ctx, c.fromSeq, c.limit, func(pr apiv1.AuditProgress) {
		c.showProgress(p, pr.Checked, pr.Seq, pr.LastSeq, pr.Problems)
	})
	var ae *apiclient.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return rep, err
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		return rep, withCode(ExitUnavailable, fmt.Errorf("%s does not serve GET /v1/audit/verify (%v): the coordinator runs without an audit key (-audit-key), or %s is not its address; with the key file, check over NATS: --key FILE",
			redactURL(p.cfg.apiURL), err, EnvAPIURL))
	case err != nil:
		return rep, p.apiError(err, "")
	}
	return rep, nil
}

// local walks the stream over NATS with the key file.
func (c *auditCmd) local(ctx context.Context, p *program) (apiv1.AuditReport, error) {
	keys, err := audit.LoadKeys(c.keyFile)
	if err != nil {
		return apiv1.AuditReport{}, usageErrorf("--key: %v", err)
	}
	nc, err := p.cfg.connectNATS()
	if err != nil {
		return apiv1.AuditReport{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return apiv1.AuditReport{}, fmt.Errorf("open jetstream: %w", err)
	}
	stream := c.stream
	if stream == "" {
		stream = erasurev1.LifecycleStream
	}
	rep, err := audit.Walk(ctx, js, keys, audit.WalkOptions{Stream: stream, FromSeq: c.fromSeq, Limit: c.limit, ProgressEvery: c.progressEvery},
		func(pr audit.Progress) { c.showProgress(p, pr.Checked, pr.Seq, pr.LastSeq, pr.Problems) })
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return apiv1.AuditReport{}, err
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return apiv1.AuditReport{}, withCode(ExitNotFound, fmt.Errorf("NATS at %s has no stream %s: check --stream and --nats-url", redactURL(p.cfg.natsURL), stream))
	case err != nil:
		return apiv1.AuditReport{}, withCode(ExitUnavailable, fmt.Errorf("read the stream over NATS at %s (%w): check that erasectl's NATS credentials may read it", redactURL(p.cfg.natsURL), err))
	}
	return httpapi.AuditReportView(rep), nil
}

func (c *auditCmd) showProgress(p *program, checked, seq, last, problems uint64) {
	fmt.Fprintf(p.stderr, "checked %d entries, at stream sequence %d of %d, %d problem(s) so far\n", checked, seq, last, problems)
}

// writeAuditReport prints a report for people.
func writeAuditReport(p *program, r apiv1.AuditReport) error {
	result := fmt.Sprintf("OK: %d entries checked, %d verified", r.Checked, r.Verified)
	if !r.OK {
		result = fmt.Sprintf("DOES NOT VERIFY: %d problem(s) in %d entries checked", r.ProblemCount, r.Checked)
	}
	span := "-"
	if r.Checked > 0 {
		span = fmt.Sprintf("%d to %d", r.FirstSeq, r.LastSeq)
	}
	if !r.Complete && r.NextSeq > 0 {
		span += fmt.Sprintf(" (stopped early; next %d)", r.NextSeq)
	}
	fields := [][2]string{
		{"stream", r.Stream},
		{"result", result},
		{"stream sequences", span},
	}
	if r.UnsignedBeforeFirstSigned > 0 {
		fields = append(fields, [2]string{"unsigned before the key", strconv.FormatUint(r.UnsignedBeforeFirstSigned, 10) + " entries (written before the coordinators had an audit key; not protected)"})
	}
	for _, k := range r.Keys {
		known := "held"
		if !k.Known {
			known = "NOT HELD"
		}
		fields = append(fields, [2]string{"key " + k.ID, fmt.Sprintf("%d entries from entry %d (%s)", k.Entries, k.FirstSeq, known)})
	}
	head := "-"
	if r.Head != nil {
		head = fmt.Sprintf("entry %d (stream sequence %d), link %s", r.Head.Seq, r.Head.StreamSeq, r.Head.Link)
	}
	fields = append(fields, [2]string{"head", head}, [2]string{"took", fmt.Sprintf("%.1fs", r.DurationSeconds)})
	if err := writeFields(p.stdout, fields); err != nil {
		return err
	}
	if len(r.Problems) == 0 {
		return nil
	}
	fmt.Fprintln(p.stdout)
	t := newTable("PROBLEM", "ENTRY", "STREAM SEQ", "EVENT")
	for _, pr := range r.Problems {
		t.add(pr.Kind, strconv.FormatUint(pr.Seq, 10), strconv.FormatUint(pr.StreamSeq, 10), pr.EventID)
	}
	if err := t.write(p.stdout); err != nil {
		return err
	}
	if n := r.ProblemCount - uint64(len(r.Problems)); n > 0 {
		fmt.Fprintf(p.stdout, "... and %d more\n", n)
	}
	fmt.Fprintln(p.stdout, "\nfirst problem: "+cell(r.Problems[0].Message))
	return nil
}
