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
	// PolicyVersion is the retention policy the job ran under; empty until
	// the policy file carries a version.
	PolicyVersion string `json:"policy_version"`

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
	// FinishedBeforeDeadline says whether the job ended by its legal
	// deadline (GDPR Art. 12(3)).
	FinishedBeforeDeadline bool  `json:"finished_before_deadline"`
	ItemsPurged            int64 `json:"items_purged"`

	Tasks    []Task      `json:"tasks"`
	Retained []Retention `json:"retained"`
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
	// RetainedUntil is the date the retained data is deleted, when the
	// job knows it (RFC 3339). Empty until the category's footprint
	// reports it; never guessed.
	RetainedUntil string `json:"retained_until,omitempty"`
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
	if !j.Status.Terminal() {
		return Certificate{}, fmt.Errorf("%w: job %s is %s; a certificate is issued once it completed or failed", jobs.ErrConflict, j.ID, j.Status)
	}
	if j.FinishedAt == nil {
		return Certificate{}, fmt.Errorf("%w: job %s is %s but has no finish time", jobs.ErrInvalid, j.ID, j.Status)
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
		FinishedAt:             stamp(*j.FinishedAt),
		Deadline:               stamp(j.Deadline),
		FinishedBeforeDeadline: !j.FinishedAt.After(j.Deadline),
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
			c.Retained = append(c.Retained, r)
		}
	}
	return c, nil
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
