package worker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Task is one erasure task as a purger sees it.
type Task struct {
	JobID      string
	AccountID  string
	Category   string
	Stage      string
	Action     string
	Generation uint32
	// Attempt is the delivery attempt, starting at 1.
	Attempt  uint32
	Deadline time.Time
}

// Result is what a successful purge did. Zero items is a success too: the
// data was already gone.
type Result struct {
	// ItemsPurged counts the rows, records or files removed or changed.
	ItemsPurged int64
	// Anchors are dates later stages' calendar rules are reckoned from,
	// by anchor name (the billing worker reports "invoice_issued": the
	// latest issue date among the invoices it kept). Reported with a
	// success only.
	Anchors map[string]time.Time
}

// Footprint counts what a store still holds of one account.
type Footprint struct {
	AccountID string
	Items     int64
	// Detail breaks Items down by kind ("contacts", "contact_properties").
	Detail map[string]int64
}

// Purger erases one category's data. It is the only thing a worker service
// implements; the runtime does the rest.
//
// Purge must be idempotent: it is called again for the same task after a
// crash or a lost ack, and must then succeed with what is left (possibly
// nothing). It returns a *PermanentError (see Permanent) when retrying
// cannot help; any other error is retried with backoff. The runtime sends
// InProgress heartbeats while Purge runs, and cancels ctx at the purge
// timeout or when the worker shuts down.
//
// Footprint answers what is left of each account, without changing
// anything. It returns one entry per account, in order.
type Purger interface {
	Purge(ctx context.Context, task Task) (Result, error)
	Footprint(ctx context.Context, accountIDs []string) ([]Footprint, error)
}

// PermanentError is a failure that no retry can fix: bad input, a refused
// request, a missing permission. The runtime terminates the task and
// reports it failed with Code and the message.
type PermanentError struct {
	// Code classifies the failure for machines: "bad_task", "refused", ...
	Code string
	Err  error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent with the code "permanent". It returns
// nil for a nil err.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Code: "permanent", Err: err}
}

// Permanentf is Permanent(fmt.Errorf(format, args...)) with a code.
func Permanentf(code, format string, args ...any) error {
	return &PermanentError{Code: code, Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err is or wraps a *PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// TransientError is a retryable failure with a class, so that operators
// can list classes that must never be retried (RetryPolicy.NeverRetry).
type TransientError struct {
	// Class names the kind of failure: "timeout", "unavailable", ...
	Class string
	Err   error
}

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as retryable with a class. It returns nil for a nil
// err.
func Transient(class string, err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Class: class, Err: err}
}

// ErrorClass is the class of err: a PermanentError's code, a
// TransientError's class, "timeout" for a deadline, "transient" for any
// other error, and "" for nil.
func ErrorClass(err error) string {
	var pe *PermanentError
	var te *TransientError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pe):
		return pe.Code
	case errors.As(err, &te):
		return te.Class
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "transient"
	}
}
