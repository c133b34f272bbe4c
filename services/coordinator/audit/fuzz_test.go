package audit

import (
	"testing"

	"github.com/nats-io/nats.go"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// FuzzParseSeal feeds ParseSeal headers as anyone who can publish on the
// lifecycle subjects could write them: it must not panic, must accept
// only what SetSeal writes back identically, and Verify must take any such
// entry without panicking.
func FuzzParseSeal(f *testing.F) {
	k := mustKey(f, 7)
	s := Sign(k, Genesis, 1, "erasure.v1.lifecycle.j", "j:created", []byte("x"))
	f.Add("1", s.KeyID, s.Link.String(), s.Mac.String(), true)
	f.Add("18446744073709551615", s.KeyID, s.Link.String(), s.Mac.String(), false)
	f.Add("0", "", "", "", true)
	f.Add("01", "ABCDEF0123456789", "zz", "", false)
	f.Add("", "", "", "", false)
	f.Fuzz(func(t *testing.T, seq, key, link, mac string, twice bool) {
		h := nats.Header{}
		for name, v := range map[string]string{
			erasurev1.HeaderAuditSeq: seq, erasurev1.HeaderAuditKey: key,
			erasurev1.HeaderAuditLink: link, erasurev1.HeaderAuditMac: mac,
		} {
			if v != "" {
				h.Add(name, v)
				if twice && name == erasurev1.HeaderAuditMac {
					h.Add(name, v)
				}
			}
		}
		got, err := ParseSeal(h)
		if err == nil {
			back := nats.Header{}
			SetSeal(back, got)
			for _, name := range []string{erasurev1.HeaderAuditSeq, erasurev1.HeaderAuditKey, erasurev1.HeaderAuditLink, erasurev1.HeaderAuditMac} {
				if back.Get(name) != h.Get(name) {
					t.Fatalf("%s %q read back as %q", name, h.Get(name), back.Get(name))
				}
			}
		}
		r := Verify(mustRing(t, k), []Entry{{StreamSeq: 1, Subject: "erasure.v1.lifecycle.j", Header: h, Data: []byte("x")}}, true)
		if r.Checked != 1 {
			t.Fatalf("checked %d entries, want 1", r.Checked)
		}
	})
}
