package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/lethe-privacy/lethe/erasectl/apiclient"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// maxIDLen bounds account and job ids given on the command line, as the
// contacts store does.
const maxIDLen = 200

// validateID checks an account or job id given on the command line: present,
// not absurdly long, free of spaces and control characters, and not an e-mail
// address. The error never repeats the id: a mistyped one may be personal
// data (a name, an address).
func validateID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty %s", what)
	case len(id) > maxIDLen:
		return fmt.Errorf("%s longer than %d bytes", what, maxIDLen)
	case strings.ContainsRune(id, '@'):
		return fmt.Errorf("%s contains '@': give the internal id, not an e-mail address", what)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%s contains spaces or control characters", what)
	}
	return nil
}

// api returns a client of the configured coordinator.
func (p *program) api() (*apiclient.Client, error) { return p.apiWith(p.httpClient) }

// apiWith returns a client of the configured coordinator that sends its
// requests through hc, with the configured token.
func (p *program) apiWith(hc *http.Client) (*apiclient.Client, error) {
	opts := []apiclient.Option{apiclient.WithHTTPClient(hc), apiclient.WithUserAgent("erasectl/" + buildVersion())}
	token, err := p.cfg.token()
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	if token != "" {
		opts = append(opts, apiclient.WithToken(token))
	}
	c, err := apiclient.New(p.cfg.apiURL, opts...)
	if err != nil {
		return nil, usageErrorf("--api-url / %s: %v", EnvAPIURL, err)
	}
	return c, nil
}

// apiError gives an error of the API client its exit code and a message that
// says what to do next. jobID names the job asked for, if any.
func (p *program) apiError(err error, jobID string) error {
	var (
		ue *apiclient.UnreachableError
		ae *apiclient.APIError
	)
	switch {
	case errors.As(err, &ue):
		return withCode(ExitUnavailable, fmt.Errorf(
			"cannot reach the coordinator at %s (%v): is it running? start it with scripts/demo, or set %s",
			ue.URL, ue.Err, EnvAPIURL))
	case errors.As(err, &ae):
		switch {
		// Only the job route answers "not found" for a thing that does not
		// exist; a 404 anywhere else means the URL is not the API's.
		case ae.Status == http.StatusNotFound && ae.Code == apiv1.CodeNotFound && jobID != "":
			return withCode(ExitNotFound, fmt.Errorf("no such job %s", jobID))
		case ae.Status == http.StatusNotFound:
			return withCode(ExitUnavailable, fmt.Errorf(
				"%s does not serve the erasure API (%v): is %s the coordinator's address?",
				redactURL(p.cfg.apiURL), err, EnvAPIURL))
		case ae.Status == http.StatusUnauthorized && !p.cfg.hasToken():
			return withCode(ExitDenied, fmt.Errorf(
				"the coordinator wants an API token and erasectl has none: set %s to the file holding yours (or %s to the token); scripts/demo prints one, 'erasectl token issue' makes one",
				EnvAPITokenFile, EnvAPIToken))
		case ae.Status == http.StatusUnauthorized:
			return withCode(ExitDenied, fmt.Errorf(
				"the coordinator did not accept the API token: %s (whoever keeps the coordinator's tokens file issues a new one: erasectl token issue or rotate)", ae.Message))
		case ae.Status == http.StatusForbidden:
			return withCode(ExitDenied, fmt.Errorf("not allowed: %s", ae.Message))
		case ae.Status == http.StatusTooManyRequests:
			wait := "a moment"
			if ae.RetryAfter > 0 {
				wait = ae.RetryAfter.String()
			}
			return withCode(ExitUnavailable, fmt.Errorf("the coordinator is rate-limiting this principal: retry in %s (%s)", wait, ae.Message))
		case ae.Status == http.StatusConflict:
			return withCode(ExitConflict, fmt.Errorf("the coordinator refused: %s", ae.Message))
		case ae.Status == http.StatusBadRequest:
			return withCode(ExitUsage, fmt.Errorf("the coordinator rejected the request: %s", ae.Message))
		case ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusBadGateway || ae.Status == http.StatusGatewayTimeout:
			return withCode(ExitUnavailable, fmt.Errorf(
				"the coordinator is up but cannot serve (%v): check that Redis and NATS are running", err))
		}
	}
	return err
}

// taskCounts counts a job's tasks that have ended (succeeded or failed) and
// its tasks in all.
func taskCounts(job apiv1.Job) (done, total int) {
	for _, t := range job.Tasks {
		if t.Status == apiv1.TaskSucceeded || t.Status == apiv1.TaskFailed || t.Status == apiv1.TaskCancelled {
			done++
		}
	}
	return done, len(job.Tasks)
}

// jobEnded reports whether a job has reached a status worth waiting for:
// final (completed, failed, cancelled), or erased (only retention stages,
// due months or years later, are left).
func jobEnded(job apiv1.Job) bool {
	switch job.Status {
	case apiv1.JobCompleted, apiv1.JobFailed, apiv1.JobCancelled, apiv1.JobErased:
		return true
	}
	return false
}

// writeJob prints a job's header and, with tasks, its task table.
func writeJob(w io.Writer, job apiv1.Job, tasks bool) error {
	fields := [][2]string{
		{"job", job.ID},
		{"account", job.AccountID},
		{"status", job.Status},
	}
	if job.Created != nil {
		created := "no, the account's active job was returned"
		if *job.Created {
			created = "yes"
		}
		fields = append(fields, [2]string{"created", created})
	}
	done, total := taskCounts(job)
	fields = append(fields,
		[2]string{"tasks", fmt.Sprintf("%d/%d done", done, total)},
		[2]string{"origin", job.Origin},
		[2]string{"requested by", job.RequestedBy},
		[2]string{"reason", job.Reason},
		[2]string{"created at", formatTime(job.CreatedAt)},
		[2]string{"updated at", formatTime(job.UpdatedAt)},
		[2]string{"deadline", formatTime(job.Deadline)},
	)
	if job.OriginalDeadline != nil {
		fields = append(fields, [2]string{"original deadline", formatTimePtr(job.OriginalDeadline)})
	}
	if job.GraceUntil.After(job.CreatedAt) {
		fields = append(fields, [2]string{"grace until", formatTime(job.GraceUntil)})
	}
	if job.HeldFrom != "" {
		fields = append(fields, [2]string{"held from", job.HeldFrom})
	}
	if job.PolicyVersion != "" {
		fields = append(fields, [2]string{"policy", job.PolicyVersion + " (" + job.PolicyFingerprint + ")"})
	}
	if job.ErasedAt != nil {
		fields = append(fields, [2]string{"erased at", formatTimePtr(job.ErasedAt)})
	}
	if job.FinishedAt != nil {
		fields = append(fields, [2]string{"finished at", formatTimePtr(job.FinishedAt)})
	}
	if job.Error != "" {
		fields = append(fields, [2]string{"error", job.Error})
	}
	if err := writeFields(w, fields); err != nil {
		return err
	}
	if !tasks {
		return nil
	}
	io.WriteString(w, "\n")
	if len(job.Tasks) == 0 {
		_, err := io.WriteString(w, "no tasks\n")
		return err
	}
	t := newTable("CATEGORY", "STAGE", "ACTION", "STATUS", "DUE", "ATTEMPTS", "ITEMS PURGED", "ERROR")
	for _, task := range job.Tasks {
		errText := task.Error
		if task.ErrorCode != "" {
			errText = task.ErrorCode + ": " + task.Error
		}
		due := "-"
		switch {
		case task.Calendar != "" && task.Status == apiv1.TaskWaiting:
			// Dated once the stage before it reports its anchor.
			due = task.Calendar
		case !task.DueAt.IsZero() && (task.Status == apiv1.TaskScheduled || task.Status == apiv1.TaskWaiting):
			due = formatTime(task.DueAt)
			if task.Retention {
				due += " (retained until then)"
			}
		}
		t.add(task.Category, task.Stage, task.Action, task.Status, due,
			strconv.FormatUint(uint64(task.Attempts), 10),
			strconv.FormatInt(task.ItemsPurged, 10),
			errText)
	}
	if err := t.write(w); err != nil {
		return err
	}
	if len(job.Actions) == 0 {
		return nil
	}
	io.WriteString(w, "\n")
	a := newTable("ACTION", "BY", "AT", "FROM", "TO", "TICKET", "REASON")
	for _, act := range job.Actions {
		kind := act.Kind
		if act.Months > 0 {
			kind += fmt.Sprintf(" +%dmo", act.Months)
		}
		a.add(kind, act.Actor, formatTime(act.At), act.From, act.To, orDash(act.Ticket), act.Reason)
	}
	return a.write(w)
}

// writeJobList prints jobs as a table, one row each.
func writeJobList(w io.Writer, jobs []apiv1.Job) error {
	if len(jobs) == 0 {
		_, err := io.WriteString(w, "no jobs\n")
		return err
	}
	t := newTable("JOB", "ACCOUNT", "STATUS", "ORIGIN", "TASKS DONE", "CREATED AT", "DEADLINE")
	for _, j := range jobs {
		tasks := "-"
		if done, total := taskCounts(j); total > 0 {
			tasks = fmt.Sprintf("%d/%d", done, total)
		}
		t.add(j.ID, j.AccountID, j.Status, j.Origin, tasks, formatTime(j.CreatedAt), formatTime(j.Deadline))
	}
	return t.write(w)
}
