package redact

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestStringNeverPrintsItsValue(t *testing.T) {
	const secret = "alice@example.com"
	s := New(secret)
	js, err := json.Marshal(struct{ Email String }{s})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	zap.New(core).Info("x", zap.Any("email", s), zap.Stringer("e2", s))
	forms := map[string]string{
		"%v": fmt.Sprintf("%v", s),
		//lint:ignore S1025 the point is to check what the %s verb prints
		"%s":   fmt.Sprintf("%s", s),
		"%+v":  fmt.Sprintf("%+v", struct{ E String }{s}),
		"%#v":  fmt.Sprintf("%#v", s),
		"json": string(js),
		"zap":  fmt.Sprint(logs.All()[0].ContextMap()),
	}
	for name, got := range forms {
		if strings.Contains(got, secret) {
			t.Errorf("%s form leaks the value: %s", name, got)
		}
		if !strings.Contains(got, Placeholder) {
			t.Errorf("%s form = %q, want the placeholder", name, got)
		}
	}
	if s.Reveal() != secret {
		t.Errorf("Reveal() = %q, want %q", s.Reveal(), secret)
	}
}
