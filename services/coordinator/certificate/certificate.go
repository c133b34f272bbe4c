// Package certificate issues erasure certificates: a signed statement, for
// an auditor, of what was done to one account's data, when, at whose
// request and why, and what is retained under which legal basis. A
// certificate holds ids, counts, codes and times only — no personal data,
// and no free-text errors (they can echo a store's message).
//
// The document is encoded canonically (fixed field order, RFC 3339 UTC
// times, compact JSON) and signed with Ed25519, so that anyone with the
// coordinator's public key can verify it offline (erasectl certificate
// verify). See README.md for the signing key's life cycle.
package certificate

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// FormatV1 names this version of the document; it is the first field of
// every certificate, so that a signature can never be taken for one over
// another kind of document.
const FormatV1 = "lethe.erasure-certificate.v1"

// Certificate is the signed document. Field order is the canonical order:
// do not reorder fields, only append new optional ones (with a new Format
// when their meaning would change an old reader's conclusion).
type Certificate struct {
	Format   string `json:"format"`
	Issuer   string `json:"issuer"`
	IssuedAt string `json:"issued_at"`
	// PolicyVersion and PolicyFingerprint name the retention policy the
	// job ran under (empty for a job planned without one).
	PolicyVersion     string `json:"policy_version"`
	PolicyFingerprint string `json:"policy_fingerprint,omitempty"`

	JobID string `json:"job_id"`
	// AccountID is the internal account id, never a name or an address.
	AccountID   string `json:"account_id"`
	Status      string `json:"status"`
	Origin      string `json:"origin"`
	RequestedBy string `json:"requested_by"`
	Reason      string `json:"reason"`
	CreatedAt   string `json:"created_at"`
	FinishedAt  string `json:"finished_at"`
	Deadline    string `json:"deadline"`
	// OriginalDeadline is set when the deadline was extended (see Actions).
	OriginalDeadline string `json:"original_deadline,omitempty"`
	// ErasedAt is when only legally retained data was left: the moment
	// the erasure the deadline asks for was done.
	ErasedAt string `json:"erased_at,omitempty"`
	// FinishedBeforeDeadline says whether the data was erased (or, for a
	// job without retention, the job ended) by its legal deadline (GDPR
	// Art. 12(3)).
	FinishedBeforeDeadline bool  `json:"finished_before_deadline"`
	ItemsPurged            int64 `json:"items_purged"`

	Tasks    []Task      `json:"tasks"`
	Retained []Retention `json:"retained"`
	// Actions lists the privacy actions on the job: who cancelled, forced,
	// held, released or extended it, when, and why.
	Actions []Action `json:"actions,omitempty"`
}

// Action is one privacy action on the job.
type Action struct {
	Kind   string `json:"kind"`
	Actor  string `json:"actor"`
	At     string `json:"at"`
	Reason string `json:"reason"`
	Ticket string `json:"ticket,omitempty"`
	Months int    `json:"months,omitempty"`
}

// Task is what was done for one (category, stage).
type Task struct {
	Category    string `json:"category"`
	Stage       string `json:"stage"`
	Action      string `json:"action"`
	Status      string `json:"status"`
	Generation  uint32 `json:"generation"`
	Attempts    uint32 `json:"attempts"`
	ItemsPurged int64  `json:"items_purged"`
	// DispatchedAt and FinishedAt are empty when the task never ran (it
	// failed because a task it depends on failed).
	DispatchedAt string `json:"dispatched_at,omitempty"`
	FinishedAt   string `json:"finished_at,omitempty"`
	// ErrorCode is the machine code of a failure; the free-text message is
	// left out on purpose.
	ErrorCode string `json:"error_code,omitempty"`
	// Replays lists who ran the task again, when and why.
	Replays []Replay `json:"replays,omitempty"`
}

// Replay is one re-run of a task.
type Replay struct {
	Generation uint32 `json:"generation"`
	At         string `json:"at"`
	Actor      string `json:"actor"`
	Reason     string `json:"reason"`
}

// Retention says what of the account is kept after the erasure, why, and
// until when.
type Retention struct {
	Category   string `json:"category"`
	What       string `json:"what"`
	LegalBasis string `json:"legal_basis"`
	Until      string `json:"until"`
	// RetainedUntil is when the retention stage deletes (or checks the
	// end of) what is kept (RFC 3339): its due time once the job knows it.
	// Empty while not yet dated; never guessed.
	RetainedUntil string `json:"retained_until,omitempty"`
	// DeletedAt is set once that stage has run.
	DeletedAt string `json:"deleted_at,omitempty"`
	// Stage is the retention stage ("category/stage") that ends it.
	Stage string `json:"stage,omitempty"`
}

// retentionKey names a task by what it did.
type retentionKey struct{ category, action string }

// Retention statements, by the category and action that leave data behind
// once they succeeded. They follow docs/workers.md ("What stays after an
// erasure").
var retentions = map[retentionKey]Retention{
	{category: "billing", action: "pseudonymise"}: {
		Category:   "billing",
		What:       "invoices (number, dates, amounts, country), pseudonymised: the personal fields are replaced by a random per-account pseudonym stored nowhere else",
		LegalBasis: "AO §147(3), HGB §257(4)",
		Until:      "the end of their statutory retention period, then deleted",
	},
	{category: "backups", action: "suppress"}: {
		Category:   "backups",
		What:       "copies in backup snapshots, beyond use: the account is in the restore-suppression ledger, which every restore re-applies",
		LegalBasis: "privacy policy §7 (backups kept for legal retention)",
		Until:      "the last snapshot holding the account rotates out",
	},
}

// Build makes the certificate of a job that ended. issuedAt and issuer
// say when and by whom (the coordinator's name) it is issued. It returns
// an error wrapping jobs.ErrConflict when the job is still running, and
// an error wrapping jobs.ErrInvalid when the job lacks what a certificate
// must state.
func Build(j *jobs.Job, issuedAt time.Time, issuer string) (Certificate, error) {
	if j == nil {
		return Certificate{}, fmt.Errorf("%w: no job", jobs.ErrInvalid)
	}
	if !j.Status.Terminal() && j.Status != jobs.StatusErased {
		return Certificate{}, fmt.Errorf("%w: job %s is %s; a certificate is issued once it is erased, completed, failed or cancelled", jobs.ErrConflict, j.ID, j.Status)
	}
	finished := j.FinishedAt
	if j.Status == jobs.StatusErased {
		finished = j.ErasedAt
	}
	if finished == nil {
		return Certificate{}, fmt.Errorf("%w: job %s is %s but has no finish time", jobs.ErrInvalid, j.ID, j.Status)
	}
	done := *finished
	if j.ErasedAt != nil {
		done = *j.ErasedAt
	}
	if issuer == "" {
		return Certificate{}, fmt.Errorf("%w: empty issuer", jobs.ErrInvalid)
	}
	c := Certificate{
		Format:                 FormatV1,
		Issuer:                 issuer,
		IssuedAt:               stamp(issuedAt),
		JobID:                  j.ID,
		AccountID:              j.AccountID,
		Status:                 string(j.Status),
		Origin:                 string(j.Origin),
		RequestedBy:            j.RequestedBy,
		Reason:                 j.Reason,
		CreatedAt:              stamp(j.CreatedAt),
		FinishedAt:             stamp(*finished),
		Deadline:               stamp(j.Deadline),
		FinishedBeforeDeadline: !done.After(j.Deadline),
		PolicyVersion:          j.PolicyVersion,
		PolicyFingerprint:      j.PolicyFingerprint,
		ItemsPurged:            j.ItemsPurged(),
		Tasks:                  make([]Task, 0, len(j.Tasks)),
		Retained:               []Retention{},
	}
	for _, t := range j.Tasks {
		ct := Task{
			Category: t.Category, Stage: t.Stage, Action: t.Action, Status: string(t.Status),
			Generation: t.Generation, Attempts: t.Attempts, ItemsPurged: t.ItemsPurged,
			ErrorCode: t.ErrorCode,
		}
		if t.DispatchedAt != nil {
			ct.DispatchedAt = stamp(*t.DispatchedAt)
		}
		if t.FinishedAt != nil {
			ct.FinishedAt = stamp(*t.FinishedAt)
		}
		if t.Status == jobs.TaskFailed && ct.ErrorCode == "" {
			ct.ErrorCode = "unspecified"
		}
		for _, a := range t.History {
			if a.Outcome == jobs.OutcomeReplayed {
				ct.Replays = append(ct.Replays, Replay{Generation: a.Generation, At: stamp(a.At), Actor: a.Actor, Reason: a.Reason})
			}
		}
		c.Tasks = append(c.Tasks, ct)
		if r, ok := retentions[retentionKey{t.Category, t.Action}]; ok && t.Status == jobs.TaskSucceeded {
			c.Retained = append(c.Retained, datedRetention(j, r))
		}
	}
	if j.OriginalDeadline != nil {
		c.OriginalDeadline = stamp(*j.OriginalDeadline)
	}
	if j.ErasedAt != nil {
		c.ErasedAt = stamp(*j.ErasedAt)
	}
	for _, a := range j.Actions {
		c.Actions = append(c.Actions, Action{Kind: string(a.Kind), Actor: a.Actor, At: stamp(a.At), Reason: a.Reason, Ticket: a.Ticket, Months: a.Months})
	}
	return c, nil
}

// datedRetention completes a retention entry from the job's retention
// stage of the same category: its legal basis from the policy, and its
// date once known (or when it ran).
func datedRetention(j *jobs.Job, r Retention) Retention {
	for i := range j.Tasks {
		t := &j.Tasks[i]
		if t.Category != r.Category || !t.Retention {
			continue
		}
		r.Stage = t.Key().String()
		if t.LegalBasis != "" {
			r.LegalBasis = t.LegalBasis
		}
		switch {
		case t.Status == jobs.TaskSucceeded && t.FinishedAt != nil:
			r.DeletedAt = stamp(*t.FinishedAt)
			if t.DispatchedAt != nil {
				r.RetainedUntil = stamp(*t.DispatchedAt)
			}
		case t.Status == jobs.TaskScheduled || t.Status == jobs.TaskDispatched:
			r.RetainedUntil = stamp(t.DueAt)
		}
	}
	return r
}

// stamp is the canonical form of a time: RFC 3339 in UTC, with as many
// fractional digits as needed.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Encode returns the canonical bytes of c, the bytes a signature covers:
// compact JSON with the fields in declaration order. Encoding the same
// certificate always gives the same bytes.
func Encode(c Certificate) ([]byte, error) {
	if c.Format == "" {
		return nil, errors.New("encode certificate: no format (use Build)")
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode certificate of job %s: %w", c.JobID, err)
	}
	return b, nil
}
