// Package audit makes the lifecycle stream a tamper-evident audit trail and
// checks it. Every lifecycle message carries, in headers, its position in
// the trail (the stream sequence it was written at), the id of the key that
// signed it, a chain link and a MAC, both HMAC-SHA256 under a secret key:
//
//	link_n = HMAC(key, "lethe-audit-link-v1" ‖ link_{n-1} ‖ n ‖ subject ‖ event id)
//	mac_n  = HMAC(key, "lethe-audit-mac-v1"  ‖ link_n ‖ n ‖ subject ‖ event id ‖ data)
//
// link_{n-1} is the link of the message at position n-1, or 32 zero bytes
// when that message is unsigned or there is none. The MAC binds an entry's
// content to its link and position, so an entry can be checked on its own;
// the link binds it to its predecessor's identity (not its data), so an
// edited entry breaks only its own MAC while a removed, reordered or
// replaced one breaks the chain. Writers (package lifecycle) append with
// Nats-Expected-Last-Sequence, which makes the positions the stream's own,
// gap-free and serial even with several coordinators writing.
//
// Verify (in memory) and Walk (over a JetStream stream) recompute both and
// name the first entry that was edited, removed, reordered, replaced, left
// unsigned, or signed with a key they were not given. docs/jetstream.md
// ("The audit chain") and docs/decisions.md explain the choices.
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// Domain-separation prefixes of the two HMAC inputs; a version change of
// the chain gets new ones.
const (
	linkDomain = "lethe-audit-link-v1\x00"
	macDomain  = "lethe-audit-mac-v1\x00"
)

// Sum is an HMAC-SHA256 value: a link or a MAC.
type Sum [sha256.Size]byte

// Genesis is the link an entry chains from when it is the first of the
// trail or follows an unsigned message.
var Genesis Sum

// String is the lower-case hex form the headers carry.
func (s Sum) String() string { return hex.EncodeToString(s[:]) }

// Seal is an entry's place in the chain, as its headers carry it.
type Seal struct {
	// Seq is the entry's position: the stream sequence it was written at.
	Seq   uint64
	KeyID string
	Link  Sum
	Mac   Sum
}

// maxSeqDigits bounds the position header: a uint64 has at most 20 digits.
const maxSeqDigits = 20

// ParseSeal reads the audit headers of a stored message. The headers come
// from the stream, which anyone with publish rights on the lifecycle
// subjects can write to: everything is checked, strictly (one value each,
// the exact forms SetSeal writes). It returns an error wrapping ErrUnsigned
// when none is present and one wrapping ErrMalformed, saying which header is
// wrong, otherwise.
func ParseSeal(h nats.Header) (Seal, error) {
	names := [...]string{erasurev1.HeaderAuditSeq, erasurev1.HeaderAuditKey, erasurev1.HeaderAuditLink, erasurev1.HeaderAuditMac}
	var vals [len(names)]string
	present := 0
	for i, n := range names {
		vs := h.Values(n)
		switch len(vs) {
		case 0:
			continue
		case 1:
			vals[i] = vs[0]
			present++
		default:
			return Seal{}, fmt.Errorf("%w: %s given %d times", ErrMalformed, n, len(vs))
		}
	}
	if present == 0 {
		return Seal{}, ErrUnsigned
	}
	for i, n := range names {
		if h.Values(n) == nil {
			return Seal{}, fmt.Errorf("%w: %s missing", ErrMalformed, names[i])
		}
	}
	var s Seal
	seq := vals[0]
	if len(seq) == 0 || len(seq) > maxSeqDigits || seq[0] == '0' || !digits(seq) {
		return Seal{}, fmt.Errorf("%w: %s is not a position (1 or more, decimal)", ErrMalformed, names[0])
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return Seal{}, fmt.Errorf("%w: %s is out of range", ErrMalformed, names[0])
	}
	s.Seq = n
	if !validKeyID(vals[1]) {
		return Seal{}, fmt.Errorf("%w: %s is not %d lower-case hex digits", ErrMalformed, names[1], keyIDLen)
	}
	s.KeyID = vals[1]
	if !decodeSum(&s.Link, vals[2]) {
		return Seal{}, fmt.Errorf("%w: %s is not %d lower-case hex digits", ErrMalformed, names[2], 2*sha256.Size)
	}
	if !decodeSum(&s.Mac, vals[3]) {
		return Seal{}, fmt.Errorf("%w: %s is not %d lower-case hex digits", ErrMalformed, names[3], 2*sha256.Size)
	}
	return s, nil
}

// SetSeal writes s into h, replacing any audit headers there.
func SetSeal(h nats.Header, s Seal) {
	h.Set(erasurev1.HeaderAuditSeq, strconv.FormatUint(s.Seq, 10))
	h.Set(erasurev1.HeaderAuditKey, s.KeyID)
	h.Set(erasurev1.HeaderAuditLink, s.Link.String())
	h.Set(erasurev1.HeaderAuditMac, s.Mac.String())
}

// ChainLink returns the link the next entry chains from when the message
// with headers h is the stream's last: its seal's link, or Genesis when it
// is unsigned or its seal is malformed (Verify expects the same).
func ChainLink(h nats.Header) Sum {
	s, err := ParseSeal(h)
	if err != nil {
		return Genesis
	}
	return s.Link
}

// Sign returns the seal of the entry written at position seq after an
// entry whose link is prev.
func Sign(k *Key, prev Sum, seq uint64, subject, eventID string, data []byte) Seal {
	l := link(k, prev, seq, subject, eventID)
	return Seal{Seq: seq, KeyID: k.id, Link: l, Mac: mac(k, l, seq, subject, eventID, data)}
}

// link computes link_n.
func link(k *Key, prev Sum, seq uint64, subject, eventID string) Sum {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(linkDomain))
	m.Write(prev[:])
	writeIdentity(m, seq, subject, eventID)
	return sum(m)
}

// mac computes mac_n.
func mac(k *Key, l Sum, seq uint64, subject, eventID string, data []byte) Sum {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(macDomain))
	m.Write(l[:])
	writeIdentity(m, seq, subject, eventID)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(data)))
	m.Write(n[:])
	m.Write(data)
	return sum(m)
}

// writeIdentity writes the position and the length-prefixed subject and
// event id, so that no two different triples give the same bytes.
func writeIdentity(m hash.Hash, seq uint64, subject, eventID string) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	m.Write(b[:])
	binary.BigEndian.PutUint32(b[:4], uint32(len(subject)))
	m.Write(b[:4])
	m.Write([]byte(subject))
	binary.BigEndian.PutUint32(b[:4], uint32(len(eventID)))
	m.Write(b[:4])
	m.Write([]byte(eventID))
}

func sum(m hash.Hash) Sum {
	var s Sum
	m.Sum(s[:0])
	return s
}

// checkMac reports whether s is the seal of (subject, eventID, data) under
// k: the entry is as it was written, at the position it claims.
func checkMac(k *Key, s Seal, subject, eventID string, data []byte) bool {
	want := mac(k, s.Link, s.Seq, subject, eventID, data)
	return hmac.Equal(want[:], s.Mac[:])
}

// checkLink reports whether s was chained from prev.
func checkLink(k *Key, prev Sum, s Seal, subject, eventID string) bool {
	want := link(k, prev, s.Seq, subject, eventID)
	return hmac.Equal(want[:], s.Link[:])
}

func decodeSum(dst *Sum, s string) bool {
	if len(s) != 2*len(dst) || !lowerHex(s) {
		return false
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err == nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// EventID is the event id a stored lifecycle message was published with.
func EventID(h nats.Header) string { return h.Get(jetstream.MsgIDHeader) }
