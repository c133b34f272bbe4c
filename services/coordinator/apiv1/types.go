// Package apiv1 is the JSON contract of the coordinator's HTTP API, version 1:
// the request and response shapes, error codes and statuses. It imports
// nothing else so that clients such as erasectl can use it cheaply.
package apiv1

import "time"

// CreateErasureRequest is the body of POST /v1/erasures.
//
// RequestedBy may be left out: the coordinator records the authenticated
// principal. When given it must be that principal (else 403); likewise
// in every request body below.
type CreateErasureRequest struct {
	AccountID   string `json:"account_id"`
	RequestedBy string `json:"requested_by,omitempty"`
	Reason      string `json:"reason"`
}

// ReplayRequest is the body of POST /v1/erasures/{id}/replay. Without
// category every failed task is replayed; with it, that category's tasks
// (or the one stage), even if they succeeded.
type ReplayRequest struct {
	Category    string `json:"category,omitempty"`
	Stage       string `json:"stage,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
	Reason      string `json:"reason"`
}

// ReplayResponse is the answer to a replay: the job and the tasks
// ("category/stage") scheduled again.
type ReplayResponse struct {
	Job      Job      `json:"job"`
	Replayed []string `json:"replayed"`
}

// Job is an erasure job as the API shows it.
type Job struct {
	ID          string     `json:"id"`
	AccountID   string     `json:"account_id"`
	Status      string     `json:"status"`
	Origin      string     `json:"origin"`
	RequestedBy string     `json:"requested_by"`
	Reason      string     `json:"reason"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Deadline    time.Time  `json:"deadline"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Error       string     `json:"error,omitempty"`
	// Created is true when this request created the job, false when it
	// returned the account's existing active job. Only set on POST.
	Created *bool  `json:"created,omitempty"`
	Tasks   []Task `json:"tasks"`

	// The retention policy the job runs under.
	PolicyVersion     string `json:"policy_version,omitempty"`
	PolicyFingerprint string `json:"policy_fingerprint,omitempty"`
	// GraceUntil ends the grace period (equal to created_at without one).
	GraceUntil time.Time `json:"grace_until"`
	// HeldFrom is the status a held job returns to on release.
	HeldFrom string `json:"held_from,omitempty"`
	// OriginalDeadline is set once the deadline was extended.
	OriginalDeadline *time.Time `json:"original_deadline,omitempty"`
	// ErasedAt is when only legally retained data was left.
	ErasedAt *time.Time `json:"erased_at,omitempty"`
	Actions  []Action   `json:"actions,omitempty"`
}

// Task is one (category, stage) of a job.
type Task struct {
	Category    string `json:"category"`
	Stage       string `json:"stage"`
	Action      string `json:"action"`
	Status      string `json:"status"`
	Generation  uint32 `json:"generation"`
	Attempts    uint32 `json:"attempts"`
	ItemsPurged int64  `json:"items_purged"`
	Error       string `json:"error,omitempty"`
	ErrorCode   string `json:"error_code,omitempty"`
	// History lists every reported outcome and replay, oldest first.
	History []Attempt `json:"history,omitempty"`
	// DependsOn names tasks ("category/stage") that must succeed first.
	DependsOn    []string   `json:"depends_on,omitempty"`
	DispatchedAt *time.Time `json:"dispatched_at,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	// DueAt is when the task runs (for a retention stage: the deletion
	// date of what it keeps until then).
	DueAt time.Time `json:"due_at"`
	// Retention marks a stage that keeps data on a legal basis until it
	// runs; LegalBasis says which.
	Retention  bool   `json:"retention,omitempty"`
	LegalBasis string `json:"legal_basis,omitempty"`
	// Calendar describes a stage dated by a calendar rule, e.g.
	// "1 January after year(invoice_issued) + 8, Europe/Berlin"; until the
	// anchor is reported its due_at is only the earliest time.
	Calendar string `json:"calendar,omitempty"`
}

// Attempt is one entry of a task's history.
type Attempt struct {
	Generation uint32    `json:"generation"`
	Attempt    uint32    `json:"attempt,omitempty"`
	At         time.Time `json:"at"`
	Outcome    string    `json:"outcome"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	Actor      string    `json:"actor,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}

// JobList is a page of jobs. NextPageToken is empty on the last page.
type JobList struct {
	Jobs          []Job  `json:"jobs"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail has a stable machine-readable Code and a message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the job's current status, on a 409 for an action its
	// status does not allow.
	Status string `json:"status,omitempty"`
}

// Error codes.
const (
	CodeInvalidArgument  = "invalid_argument"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeUnauthenticated (401): no credential, or one the coordinator
	// does not accept (unknown, expired, malformed).
	CodeUnauthenticated = "unauthenticated"
	// CodePermissionDenied (403): the principal's role may not do this,
	// or requested_by names someone else.
	CodePermissionDenied = "permission_denied"
	// CodeRateLimited (429): the principal sent too many requests; retry
	// after the Retry-After header's seconds.
	CodeRateLimited = "rate_limited"
)

// Job and task statuses (docs/lifecycle.md).
const (
	JobPending   = "pending"
	JobRunning   = "running"
	JobHeld      = "held"
	JobErased    = "erased"
	JobCompleted = "completed"
	JobFailed    = "failed"
	JobCancelled = "cancelled"

	TaskWaiting    = "waiting"
	TaskScheduled  = "scheduled"
	TaskDispatched = "dispatched"
	TaskSucceeded  = "succeeded"
	TaskFailed     = "failed"
	TaskCancelled  = "cancelled"
)

// Actions on a job: POST /v1/erasures/{id}/{action}.
const (
	ActionCancel  = "cancel"
	ActionForce   = "force"
	ActionHold    = "hold"
	ActionRelease = "release"
	ActionExtend  = "extend"
)

// ActionRequest is the body of POST /v1/erasures/{id}/{action}. Reason is
// always required; ticket is required for force; months (1 or 2) only for
// extend.
type ActionRequest struct {
	RequestedBy string `json:"requested_by,omitempty"`
	Reason      string `json:"reason"`
	Ticket      string `json:"ticket,omitempty"`
	Months      int    `json:"months,omitempty"`
}

// Action is one entry of a job's action log.
type Action struct {
	Kind   string    `json:"kind"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason"`
	Ticket string    `json:"ticket,omitempty"`
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Months int       `json:"months,omitempty"`
}

// DeadLetter is a task that failed for good, kept for replay. It names the
// task by ids only.
type DeadLetter struct {
	Seq        uint64    `json:"seq"`
	Category   string    `json:"category"`
	JobID      string    `json:"job_id"`
	AccountID  string    `json:"account_id"`
	Stage      string    `json:"stage"`
	Generation uint32    `json:"generation"`
	Code       string    `json:"code"`
	Reason     string    `json:"reason"`
	Attempts   int       `json:"attempts"`
	Source     string    `json:"source"`
	StoredAt   time.Time `json:"stored_at"`
}

// DeadLetterList answers GET /v1/dead-letters: the oldest letters first,
// up to the limit, and how many there are in all.
type DeadLetterList struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	Total       int          `json:"total"`
}

// DeadLetterReplay answers POST /v1/dead-letters/{seq}/replay. Result is
// "replayed" (the task runs again) or "resolved" (it had already
// succeeded or was running again; the letter was removed).
type DeadLetterReplay struct {
	DeadLetter DeadLetter `json:"dead_letter"`
	Result     string     `json:"result"`
	Job        *Job       `json:"job,omitempty"`
}

// BulkReplayRequest is the body of POST /v1/replays: replay every job that
// failed within Since ("2h"; empty: any time), optionally only one
// category's tasks. Status must be "failed". With DryRun nothing is
// replayed and RequestedBy and Reason may be empty.
type BulkReplayRequest struct {
	Status      string `json:"status"`
	Since       string `json:"since,omitempty"`
	Category    string `json:"category,omitempty"`
	DryRun      bool   `json:"dry_run,omitempty"`
	Limit       int    `json:"limit,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// BulkReplayResponse lists the jobs selected and counts what happened.
type BulkReplayResponse struct {
	DryRun    bool             `json:"dry_run"`
	Matched   int              `json:"matched"`
	Replayed  int              `json:"replayed"`
	Conflicts int              `json:"conflicts"`
	Jobs      []BulkReplayItem `json:"jobs"`
}

// BulkReplayItem is one selected job. Result is "matched" (dry run),
// "replayed" or "conflict" (with Error).
type BulkReplayItem struct {
	JobID      string    `json:"job_id"`
	AccountID  string    `json:"account_id"`
	FinishedAt time.Time `json:"finished_at"`
	Tasks      []string  `json:"tasks"`
	Result     string    `json:"result"`
	Error      string    `json:"error,omitempty"`
}

// ReconcileReport answers GET and POST /v1/reconciliation: every task of
// every running job counted in one state (done, failed, in_flight,
// scheduled, waiting), the repairs made (or, for GET, that would be made),
// and the tasks that do not move.
type ReconcileReport struct {
	At          time.Time      `json:"at"`
	DryRun      bool           `json:"dry_run"`
	JobsChecked int            `json:"jobs_checked"`
	Truncated   bool           `json:"truncated"`
	Tasks       map[string]int `json:"tasks"`
	Actions     map[string]int `json:"actions"`
	Stuck       []StuckTask    `json:"stuck"`
}

// StuckTask is a task of a running job that does not move, and why.
type StuckTask struct {
	JobID     string    `json:"job_id"`
	AccountID string    `json:"account_id"`
	Task      string    `json:"task"`
	Status    string    `json:"status"`
	Since     time.Time `json:"since"`
	Why       string    `json:"why"`
}

// StuckList answers GET /v1/erasures?stuck=true.
type StuckList struct {
	Stuck []StuckTask `json:"stuck"`
	Count int         `json:"count"`
}
