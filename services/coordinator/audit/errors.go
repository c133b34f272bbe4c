package audit

import "errors"

// The errors of this package; test for them with errors.Is. What is wrong
// with a trail is never an error: it is a Problem in the Report.
var (
	// ErrUnsigned: a message carries none of the audit headers (ParseSeal).
	ErrUnsigned = errors.New("no audit headers")
	// ErrMalformed: a message carries some of the audit headers, or
	// unreadable ones (ParseSeal).
	ErrMalformed = errors.New("malformed audit headers")
	// ErrNoKey: the key file does not exist (LoadKeys).
	ErrNoKey = errors.New("no audit key file")
	// ErrBadKey: a key or key file cannot be used (NewKey, ParseKeys,
	// NewKeyRing).
	ErrBadKey = errors.New("unusable audit key")
)
