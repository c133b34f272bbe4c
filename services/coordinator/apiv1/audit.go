package apiv1

// MediaTypeNDJSON asks GET /v1/audit/verify for progress lines before the
// report (Accept header): one JSON object a line, each an AuditLine.
const MediaTypeNDJSON = "application/x-ndjson"

// Kinds of AuditProblem.
const (
	AuditEdited     = "edited"
	AuditRemoved    = "removed"
	AuditReordered  = "reordered"
	AuditReplaced   = "replaced"
	AuditUnsigned   = "unsigned"
	AuditKeyChanged = "key_changed"
)

// AuditReport answers GET /v1/audit/verify: what a walk of the lifecycle
// stream's audit chain found. OK is true when no problem was found;
// Problems lists the first 100 in stream order, the first being the first
// entry that was changed, removed or reordered. Complete is false when
// ?limit= stopped the walk; NextSeq is then the from_seq to go on with.
type AuditReport struct {
	Stream                    string         `json:"stream"`
	OK                        bool           `json:"ok"`
	Checked                   uint64         `json:"checked"`
	FirstSeq                  uint64         `json:"first_seq"`
	LastSeq                   uint64         `json:"last_seq"`
	Verified                  uint64         `json:"verified"`
	UnsignedBeforeFirstSigned uint64         `json:"unsigned_before_first_signed,omitempty"`
	Keys                      []AuditKeyUse  `json:"keys,omitempty"`
	Head                      *AuditHead     `json:"head,omitempty"`
	Complete                  bool           `json:"complete"`
	NextSeq                   uint64         `json:"next_seq,omitempty"`
	Problems                  []AuditProblem `json:"problems,omitempty"`
	ProblemCount              uint64         `json:"problem_count"`
	DurationSeconds           float64        `json:"duration_seconds"`
}

// AuditProblem is an entry of the trail that does not verify. Seq is its
// position in the trail (for "removed", the first missing position,
// MissingFrom..MissingTo); StreamSeq is where it shows in the stream
// checked; Message says what happened and what to do.
type AuditProblem struct {
	Kind        string `json:"kind"`
	Seq         uint64 `json:"seq"`
	StreamSeq   uint64 `json:"stream_seq"`
	Subject     string `json:"subject,omitempty"`
	EventID     string `json:"event_id,omitempty"`
	MissingFrom uint64 `json:"missing_from,omitempty"`
	MissingTo   uint64 `json:"missing_to,omitempty"`
	Message     string `json:"message"`
}

// AuditKeyUse is a key that signed entries of the trail: its id, the
// position of its first entry, how many it signed, and whether the
// verifier holds it.
type AuditKeyUse struct {
	ID       string `json:"id"`
	FirstSeq uint64 `json:"first_seq"`
	Entries  uint64 `json:"entries"`
	Known    bool   `json:"known"`
}

// AuditHead is the last entry that verified. Keep its position and link:
// a later check that does not show the same link at that position means
// the trail was cut back.
type AuditHead struct {
	Seq       uint64 `json:"seq"`
	StreamSeq uint64 `json:"stream_seq"`
	Link      string `json:"link"`
	KeyID     string `json:"key_id"`
}

// AuditProgress is how far a walk got: entries checked, the stream
// sequence reached of LastSeq, problems so far.
type AuditProgress struct {
	Checked  uint64 `json:"checked"`
	Seq      uint64 `json:"seq"`
	LastSeq  uint64 `json:"last_seq"`
	Problems uint64 `json:"problems"`
}

// AuditLine is one line of the NDJSON answer: progress lines, then the
// report, or an error when the walk could not go on.
type AuditLine struct {
	Progress *AuditProgress `json:"progress,omitempty"`
	Report   *AuditReport   `json:"report,omitempty"`
	Error    *ErrorDetail   `json:"error,omitempty"`
}
