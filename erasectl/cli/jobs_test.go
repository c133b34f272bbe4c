package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/internal/apitest"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

func sampleJob() apiv1.Job {
	created := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)
	finished := created.Add(90 * time.Second)
	return apiv1.Job{
		ID:          "job-0001",
		AccountID:   "acct-1",
		Status:      apiv1.JobFailed,
		Origin:      "api",
		RequestedBy: "privacy-team",
		Reason:      "DSR 4711",
		CreatedAt:   created,
		UpdatedAt:   finished,
		Deadline:    created.AddDate(0, 1, 0),
		FinishedAt:  &finished,
		Error:       "logs/erase: segment store unavailable",
		Tasks: []apiv1.Task{
			{Category: "contacts", Stage: "erase", Action: "delete", Status: apiv1.TaskSucceeded, Attempts: 1, ItemsPurged: 5000},
			{Category: "logs", Stage: "erase", Action: "delete", Status: apiv1.TaskFailed, Attempts: 5, ErrorCode: "max_deliveries", Error: "segment store\tunavailable\n"},
		},
	}
}

func TestWriteJob(t *testing.T) {
	tests := []struct {
		name  string
		job   func() apiv1.Job
		tasks bool
		want  string
	}{
		{
			name:  "failed job with tasks",
			job:   sampleJob,
			tasks: true,
			want: `job:           job-0001
account:       acct-1
status:        failed
tasks:         2/2 done
origin:        api
requested by:  privacy-team
reason:        DSR 4711
created at:    2026-11-02T09:30:00Z
updated at:    2026-11-02T09:31:30Z
deadline:      2026-12-02T09:30:00Z
finished at:   2026-11-02T09:31:30Z
error:         logs/erase: segment store unavailable

CATEGORY  STAGE  ACTION  STATUS     DUE  ATTEMPTS  ITEMS PURGED  ERROR
contacts  erase  delete  succeeded  -    1         5000          -
logs      erase  delete  failed     -    5         0             max_deliveries: segment store unavailable
`,
		},
		{
			name: "new job, header only",
			job: func() apiv1.Job {
				j := sampleJob()
				j.Status, j.FinishedAt, j.Error = apiv1.JobRunning, nil, ""
				j.Tasks = apitest.NewTasks()
				j.Created = new(true)
				return j
			},
			want: `job:           job-0001
account:       acct-1
status:        running
created:       yes
tasks:         0/2 done
origin:        api
requested by:  privacy-team
reason:        DSR 4711
created at:    2026-11-02T09:30:00Z
updated at:    2026-11-02T09:31:30Z
deadline:      2026-12-02T09:30:00Z
`,
		},
		{
			name: "existing job returned",
			job: func() apiv1.Job {
				j := apiv1.Job{ID: "job-9", AccountID: "acct-9", Status: "running", Created: new(false)}
				return j
			},
			tasks: true,
			want: `job:           job-9
account:       acct-9
status:        running
created:       no, the account's active job was returned
tasks:         0/0 done
origin:        -
requested by:  -
reason:        -
created at:    -
updated at:    -
deadline:      -

no tasks
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeJob(&b, tt.job(), tt.tasks); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("writeJob:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestWriteJobList(t *testing.T) {
	running := sampleJob()
	running.ID, running.Status = "job-0002", apiv1.JobRunning
	running.Tasks[1].Status = apiv1.TaskDispatched
	noTasks := apiv1.Job{ID: "job-0003", AccountID: "acct-3", Status: "running", Origin: "dashboard"}
	var b bytes.Buffer
	if err := writeJobList(&b, []apiv1.Job{sampleJob(), running, noTasks}); err != nil {
		t.Fatal(err)
	}
	want := `JOB       ACCOUNT  STATUS   ORIGIN     TASKS DONE  CREATED AT            DEADLINE
job-0001  acct-1   failed   api        2/2         2026-11-02T09:30:00Z  2026-12-02T09:30:00Z
job-0002  acct-1   running  api        1/2         2026-11-02T09:30:00Z  2026-12-02T09:30:00Z
job-0003  acct-3   running  dashboard  -           -                     -
`
	if b.String() != want {
		t.Errorf("writeJobList:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	writeJobList(&b, nil)
	if b.String() != "no jobs\n" {
		t.Errorf("empty list: %q", b.String())
	}
}

func TestCell(t *testing.T) {
	tests := []struct{ give, want string }{
		{"", "-"},
		{"plain", "plain"},
		{"tab\there", "tab here"},
		{"line\nbreak", "line break"},
		{" \n", "-"},
		{"esc\x1b[31mred", "esc [31mred"},
	}
	for _, tt := range tests {
		if got := cell(tt.give); got != tt.want {
			t.Errorf("cell(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func apiEnv(srv *apitest.Server) map[string]string {
	return map[string]string{EnvAPIURL: srv.URL}
}

func TestRequest(t *testing.T) {
	srv := apitest.New(t)
	r := runCLI(t, apiEnv(srv), "request", "acct-1", "--requested-by", "privacy-team", "--reason", "DSR 4711")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	for _, w := range []string{"job:           " + apitest.JobID(1), "account:       acct-1", "status:        running", "created:       yes"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "CATEGORY") {
		t.Errorf("request without --wait printed the task table:\n%s", r.stdout)
	}

	// Again: the existing job, as JSON.
	r = runCLI(t, apiEnv(srv), "request", "acct-1", "--requested-by", "privacy-team", "--reason", "DSR 4711", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	var job apiv1.Job
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil {
		t.Fatalf("stdout is not one JSON job: %v\n%s", err, r.stdout)
	}
	if job.ID != apitest.JobID(1) || job.Created == nil || *job.Created {
		t.Errorf("second request = %+v, want the first job with created false", job)
	}
}

// finishAfter returns an advance function that ends every task of a job on
// the n-th poll, with the given task status.
func finishAfter(n int, taskStatus string) func(*apiv1.Job) {
	polls := 0
	return func(j *apiv1.Job) {
		polls++
		if polls == 1 {
			j.Tasks[0].Status = apiv1.TaskSucceeded
			j.Tasks[0].Attempts = 1
			j.Tasks[0].ItemsPurged = 42
		}
		if polls < n {
			return
		}
		j.Tasks[1].Status = taskStatus
		j.Tasks[1].Attempts = 1
		j.Status = apiv1.JobCompleted
		if taskStatus == apiv1.TaskFailed {
			j.Tasks[1].Error = "segment store unavailable"
			j.Status = apiv1.JobFailed
			j.Error = "logs/erase failed"
		}
	}
}

func TestRequestWait(t *testing.T) {
	id := apitest.JobID(1)
	tests := []struct {
		name       string
		advance    func(*apiv1.Job)
		timeout    string
		json       bool
		wantCode   int
		wantStatus string
		wantStderr []string
	}{
		{
			name:       "completes",
			advance:    finishAfter(3, apiv1.TaskSucceeded),
			timeout:    "10s",
			wantCode:   ExitOK,
			wantStatus: apiv1.JobCompleted,
			wantStderr: []string{"job " + id + ": running, 0/2 tasks done\n", "job " + id + ": running, 1/2 tasks done\n", "job " + id + ": completed, 2/2 tasks done\n"},
		},
		{
			name:       "fails",
			advance:    finishAfter(2, apiv1.TaskFailed),
			timeout:    "10s",
			wantCode:   ExitJobFailed,
			wantStatus: apiv1.JobFailed,
			wantStderr: []string{"job " + id + ": failed, 2/2 tasks done\n", "erasectl: job " + id + " failed: logs/erase failed; see 'erasectl status " + id + "'\n"},
		},
		{
			name:       "times out",
			advance:    func(*apiv1.Job) {},
			timeout:    "60ms",
			json:       true,
			wantCode:   ExitTimeout,
			wantStatus: apiv1.JobRunning,
			wantStderr: []string{"erasectl: timed out after 60ms waiting for job " + id + " (running, 0/2 tasks done); it goes on: follow it with 'erasectl status " + id + "'\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := apitest.New(t)
			srv.SetAdvance(tt.advance)
			args := []string{"request", "acct-1", "--requested-by", "ops", "--reason", "test", "--wait", "--timeout", tt.timeout}
			if tt.json {
				args = append(args, "-o", "json")
			}
			r := runCLI(t, apiEnv(srv), args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, tt.wantCode, r.stderr)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if tt.json {
				var job apiv1.Job
				if err := json.Unmarshal([]byte(r.stdout), &job); err != nil {
					t.Fatalf("stdout is not one JSON job: %v\n%s", err, r.stdout)
				}
				if job.Status != tt.wantStatus || job.Created == nil || !*job.Created {
					t.Errorf("job = %+v, want status %s and created true", job, tt.wantStatus)
				}
				return
			}
			if !strings.Contains(r.stdout, "status:        "+tt.wantStatus) || !strings.Contains(r.stdout, "CATEGORY  STAGE") {
				t.Errorf("stdout lacks the final job with its tasks:\n%s", r.stdout)
			}
		})
	}
}

func TestRequestWaitInterrupted(t *testing.T) {
	srv := apitest.New(t)
	srv.SetAdvance(func(*apiv1.Job) {})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for srv.Gets() < 2 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	r := runCLICtx(t, ctx, apiEnv(srv), "request", "acct-1", "--requested-by", "ops", "--reason", "test", "--wait")
	if r.code != ExitInterrupted || !strings.HasSuffix(r.stderr, "erasectl: interrupted\n") {
		t.Errorf("exit %d stderr %q, want %d and interrupted", r.code, r.stderr, ExitInterrupted)
	}
}

func TestStatus(t *testing.T) {
	srv := apitest.New(t)
	job := sampleJob()
	job.ID = apitest.JobID(1)
	srv.AddJob(job)

	r := runCLI(t, apiEnv(srv), "status", job.ID)
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	var want bytes.Buffer
	writeJob(&want, job, true)
	if r.stdout != want.String() {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want.String())
	}

	r = runCLI(t, apiEnv(srv), "status", job.ID, "-o", "json")
	var got apiv1.Job
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.ID != job.ID || len(got.Tasks) != 2 {
		t.Errorf("status -o json: %v\n%s", err, r.stdout)
	}

	missing := apitest.JobID(99)
	r = runCLI(t, apiEnv(srv), "status", missing)
	if r.code != ExitNotFound || r.stderr != "erasectl: no such job "+missing+"\n" || r.stdout != "" {
		t.Errorf("unknown job: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, apiEnv(srv), "status", "job-1")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "the coordinator rejected the request: job id must be a UUID") {
		t.Errorf("malformed job id: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestList(t *testing.T) {
	srv := apitest.New(t)
	for i := range 5 {
		j := sampleJob()
		j.ID = "job-" + string(rune('a'+i))
		j.CreatedAt = time.Time{}
		if i%2 == 0 {
			j.AccountID = "acct-even"
		}
		srv.AddJob(j)
	}

	r := runCLI(t, apiEnv(srv), "list", "--limit", "2")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	if got := rowIDs(r.stdout); got != "job-e job-d" {
		t.Errorf("first page rows %q, want job-e job-d:\n%s", got, r.stdout)
	}
	if !strings.Contains(r.stderr, "more jobs: add --page-token 2") {
		t.Errorf("stderr lacks the next-page hint: %q", r.stderr)
	}

	r = runCLI(t, apiEnv(srv), "list", "--limit", "2", "--page-token", "2")
	if got := rowIDs(r.stdout); got != "job-c job-b" {
		t.Errorf("second page rows %q", got)
	}

	r = runCLI(t, apiEnv(srv), "list", "--limit", "2", "--all")
	if got := rowIDs(r.stdout); got != "job-e job-d job-c job-b job-a" || r.stderr != "" {
		t.Errorf("--all rows %q stderr %q", got, r.stderr)
	}

	r = runCLI(t, apiEnv(srv), "list", "--account", "acct-even", "--limit", "1", "--all", "-o", "json")
	var list apiv1.JobList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("list -o json: %v\n%s", err, r.stdout)
	}
	var ids []string
	for _, j := range list.Jobs {
		ids = append(ids, j.ID)
	}
	if strings.Join(ids, " ") != "job-e job-c job-a" || list.NextPageToken != "" {
		t.Errorf("--account --all -o json = %v token %q", ids, list.NextPageToken)
	}

	r = runCLI(t, apiEnv(srv), "list", "--account", "acct-none", "-o", "json")
	if r.code != ExitOK || !strings.Contains(r.stdout, `"jobs": []`) {
		t.Errorf("empty listing: exit %d stdout %s", r.code, r.stdout)
	}

	r = runCLI(t, apiEnv(srv), "list", "--status", "exploded")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "the coordinator rejected the request: unknown status") {
		t.Errorf("bad status: exit %d stderr %q", r.code, r.stderr)
	}
}

// rowIDs returns the first cells of a table's rows, header skipped.
func rowIDs(table string) string {
	var ids []string
	for i, line := range strings.Split(strings.TrimSpace(table), "\n") {
		if i > 0 {
			ids = append(ids, strings.Fields(line)[0])
		}
	}
	return strings.Join(ids, " ")
}

func TestCoordinatorUnreachable(t *testing.T) {
	addr := freeAddr(t)
	tests := [][]string{
		{"status", "job-1"},
		{"list"},
		{"request", "acct-1", "--requested-by", "a", "--reason", "b", "--wait"},
	}
	for _, args := range tests {
		t.Run(args[0], func(t *testing.T) {
			r := runCLI(t, map[string]string{EnvAPIURL: "http://" + addr}, args...)
			if r.code != ExitUnavailable {
				t.Errorf("exit %d, want %d", r.code, ExitUnavailable)
			}
			want := "erasectl: cannot reach the coordinator at http://" + addr
			if !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "is it running? start it with scripts/demo, or set LETHE_API_URL") {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
}

func TestNotTheCoordinator(t *testing.T) {
	// Something else on the port: a 404 without the documented body.
	srv := apitest.New(t)
	r := runCLI(t, map[string]string{EnvAPIURL: srv.URL + "/elsewhere"}, "list")
	if r.code != ExitUnavailable || !strings.Contains(r.stderr, "does not serve the erasure API") {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}
