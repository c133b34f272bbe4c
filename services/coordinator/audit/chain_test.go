package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

func TestParseSeal(t *testing.T) {
	k := mustKey(t, 9)
	good := Sign(k, Genesis, 42, "erasure.v1.lifecycle.j", "j:created", []byte("x"))
	header := func(edit func(h nats.Header)) nats.Header {
		h := nats.Header{}
		SetSeal(h, good)
		if edit != nil {
			edit(h)
		}
		return h
	}
	hexOf := func(c string) string { return strings.Repeat(c, 64) }
	tests := []struct {
		name    string
		give    nats.Header
		wantErr error
		wantIn  string
	}{
		{name: "good", give: header(nil)},
		{name: "none", give: nats.Header{"Nats-Msg-Id": {"x"}}, wantErr: ErrUnsigned},
		{name: "mac missing", give: header(func(h nats.Header) { h.Del(erasurev1.HeaderAuditMac) }), wantErr: ErrMalformed, wantIn: "Lethe-Audit-Mac missing"},
		{name: "only a position", give: nats.Header{erasurev1.HeaderAuditSeq: {"1"}}, wantErr: ErrMalformed, wantIn: "missing"},
		{name: "position twice", give: header(func(h nats.Header) { h.Add(erasurev1.HeaderAuditSeq, "43") }), wantErr: ErrMalformed, wantIn: "2 times"},
		{name: "position zero", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditSeq, "0") }), wantErr: ErrMalformed, wantIn: "not a position"},
		{name: "position leading zero", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditSeq, "042") }), wantErr: ErrMalformed},
		{name: "position signed", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditSeq, "+42") }), wantErr: ErrMalformed},
		{name: "position too large", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditSeq, "18446744073709551616") }), wantErr: ErrMalformed, wantIn: "out of range"},
		{name: "position largest", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditSeq, "18446744073709551615") })},
		{name: "key id upper case", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditKey, strings.ToUpper(k.ID())) }), wantErr: ErrMalformed},
		{name: "key id short", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditKey, k.ID()[:8]) }), wantErr: ErrMalformed},
		{name: "link upper case", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditLink, hexOf("A")) }), wantErr: ErrMalformed, wantIn: "Lethe-Audit-Link"},
		{name: "mac short", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditMac, hexOf("a")[:62]) }), wantErr: ErrMalformed, wantIn: "Lethe-Audit-Mac"},
		{name: "mac not hex", give: header(func(h nats.Header) { h.Set(erasurev1.HeaderAuditMac, hexOf("g")) }), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSeal(tt.give)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseSeal: %v", err)
				}
				if s.KeyID != good.KeyID || s.Link != good.Link || s.Mac != good.Mac {
					t.Errorf("seal %+v, want %+v", s, good)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.wantIn) {
				t.Fatalf("ParseSeal = %v, want %v mentioning %q", err, tt.wantErr, tt.wantIn)
			}
		})
	}
}

// TestSignBindsEverything changes each input of a seal and expects the MAC
// or the link to change with it.
func TestSignBindsEverything(t *testing.T) {
	k, other := mustKey(t, 1), mustKey(t, 2)
	prev := Sign(k, Genesis, 1, "s", "id", []byte("d")).Link
	base := Sign(k, prev, 2, "erasure.v1.lifecycle.j", "j:created", []byte("data"))
	tests := []struct {
		name string
		give Seal
	}{
		{"key", Sign(other, prev, 2, "erasure.v1.lifecycle.j", "j:created", []byte("data"))},
		{"predecessor", Sign(k, Genesis, 2, "erasure.v1.lifecycle.j", "j:created", []byte("data"))},
		{"position", Sign(k, prev, 3, "erasure.v1.lifecycle.j", "j:created", []byte("data"))},
		{"subject", Sign(k, prev, 2, "erasure.v1.lifecycle.k", "j:created", []byte("data"))},
		{"event id", Sign(k, prev, 2, "erasure.v1.lifecycle.j", "j:created2", []byte("data"))},
		// Length prefixes: moving a byte from subject to id is a change.
		{"boundary", Sign(k, prev, 2, "erasure.v1.lifecycle.", "jj:created", []byte("data"))},
	}
	for _, tt := range tests {
		if tt.give.Link == base.Link || tt.give.Mac == base.Mac {
			t.Errorf("%s: link or MAC unchanged", tt.name)
		}
	}
	data := Sign(k, prev, 2, "erasure.v1.lifecycle.j", "j:created", []byte("datA"))
	if data.Link != base.Link || data.Mac == base.Mac {
		t.Errorf("data: the link must not depend on the data and the MAC must")
	}
}

func TestKeys(t *testing.T) {
	k1 := strings.Repeat("ab", KeySize)
	k2 := strings.Repeat("CD", KeySize)
	tests := []struct {
		name    string
		give    string
		wantIDs int
		wantIn  string
	}{
		{name: "one key", give: k1 + "\n", wantIDs: 1},
		{name: "rotation with comments", give: "# new\n" + k2 + "\n\n# old\n  " + k1 + "  \n", wantIDs: 2},
		{name: "same key twice", give: k1 + "\n" + k1 + "\n", wantIDs: 1},
		{name: "empty", give: "# nothing\n", wantIn: "holds no key"},
		{name: "short line", give: k1 + "\n" + k1[:10] + "\n", wantIn: "line 2 is not 64 hex digits"},
		{name: "not hex", give: strings.Repeat("zz", KeySize), wantIn: "line 1 is not hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseKeys([]byte(tt.give))
			if tt.wantIn != "" {
				if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tt.wantIn) {
					t.Fatalf("ParseKeys = %v, want an error mentioning %q", err, tt.wantIn)
				}
				if strings.Contains(err.Error(), "zz") || strings.Contains(err.Error(), "abab") {
					t.Errorf("error shows key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.IDs()) != tt.wantIDs {
				t.Errorf("ids %v, want %d", r.IDs(), tt.wantIDs)
			}
		})
	}
	r, err := ParseKeys([]byte(k2 + "\n" + k1))
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %#v %s", r.Signing(), r.Signing(), r.Signing()); strings.Contains(strings.ToLower(s), "cdcd") || !strings.Contains(s, r.Signing().ID()) {
		t.Errorf("printed key %q shows the secret or hides the id", s)
	}
	if r.Lookup(r.IDs()[1]) == nil || r.Lookup("0000000000000000") != nil {
		t.Errorf("lookup by id")
	}
}

// TestLoadOrCreateKeys creates the development key once, from several
// goroutines at the same time, and then loads the same key.
func TestLoadOrCreateKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "audit.key")
	if _, err := LoadKeys(path); !errors.Is(err, ErrNoKey) {
		t.Fatalf("LoadKeys of a missing file = %v, want ErrNoKey", err)
	}
	ids := make([]string, 8)
	created := make([]bool, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			r, c, err := LoadOrCreateKeys(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i], created[i] = r.Signing().ID(), c
		})
	}
	wg.Wait()
	n := 0
	for i := range ids {
		if ids[i] != ids[0] {
			t.Errorf("goroutine %d got key %s, goroutine 0 %s", i, ids[i], ids[0])
		}
		if created[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d goroutines created the key, want 1", n)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	r, err := LoadKeys(path)
	if err != nil || r.Signing().ID() != ids[0] {
		t.Fatalf("LoadKeys = %v, %v; want key %s", r, err, ids[0])
	}
}
