package policy

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzParse: Parse never panics; what it rejects is ErrInvalid; what it
// accepts re-validates, plans for every origin, and comes back from its
// canonical form with the same fingerprint.
func FuzzParse(f *testing.F) {
	f.Add(defaultYAML)
	f.Add([]byte(minimal))
	f.Add(Default().Canonical())
	f.Add([]byte("version: 1\ngrace: {dashboard: 0, api: 0}\ncategories: [{name: logs, stages: [{name: a, action: delete, after: 1s}]}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("version: [\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection does not match ErrInvalid: %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted policy does not re-validate: %v", err)
		}
		for _, o := range Origins {
			if _, err := p.Plan(o, time.Unix(1_800_000_000, 0)); err != nil {
				t.Fatalf("Plan(%s): %v", o, err)
			}
		}
		c := p.Canonical()
		q, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical form rejected: %v\n%s", err, c)
		}
		if !bytes.Equal(q.Canonical(), c) || q.Fingerprint() != p.Fingerprint() {
			t.Fatalf("canonical form does not round-trip:\n%s\n%s", c, q.Canonical())
		}
	})
}
