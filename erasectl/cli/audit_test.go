package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/lib/testenv"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
	"github.com/lethe-privacy/lethe/services/coordinator/lifecycle"
)

// auditorToken is an API token of the auditor role and the tokens a
// coordinator knows it by.
func auditorToken(t *testing.T) (string, *apiauth.Tokens) {
	t.Helper()
	tok, err := apiauth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	tokens, err := apiauth.NewTokens([]apiauth.Entry{{Principal: "auditor:test", Role: apiauth.RoleAuditor, SHA256: apiauth.Hash(tok), Created: now.Add(-time.Hour), Expires: now.Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	return tok, tokens
}

// auditFixture records a signed trail of 30 events in an embedded NATS and
// serves the coordinator's audit endpoint (the real handler and walker)
// over it. It returns the server, the API's URL, an auditor's token and
// the key file.
func auditFixture(t *testing.T) (*testenv.NATSServer, jetstream.JetStream, string, string, string) {
	t.Helper()
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	if err := topology.Ensure(t.Context(), js, topology.Settings{Categories: []string{"contacts"}}); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "audit.key")
	ring, _, err := audit.LoadOrCreateKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	rec := lifecycle.NewRecorder(js, lifecycle.WithAuditKey(ring.Signing()))
	for i := range 30 {
		job := fmt.Sprintf("job-%d", i%3)
		ev := &erasurev1.LifecycleEvent{EventId: fmt.Sprintf("%s:%d", job, i), JobId: job, Type: erasurev1.EventType_EVENT_TYPE_TASK_DISPATCHED, Actor: "coordinator"}
		if err := rec.Record(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	tok, tokens := auditorToken(t)
	api := httptest.NewServer(httpapi.NewHandler(nil, zap.NewNop(), httpapi.Options{Auth: tokens, Audit: audit.NewWalker(js, ring, "")}))
	t.Cleanup(api.Close)
	return srv, js, api.URL, tok, keyFile
}

func TestAuditVerifyThroughTheCoordinator(t *testing.T) {
	_, _, apiURL, tok, _ := auditFixture(t)
	env := map[string]string{EnvAPIURL: apiURL, EnvAPIToken: tok}

	r := runCLI(t, env, "audit", "verify")
	if r.code != ExitOK || !strings.Contains(r.stdout, "OK: 30 entries checked, 30 verified") || !strings.Contains(r.stdout, "entry 30 (stream sequence 30), link ") ||
		!strings.Contains(r.stderr, "checked 30 entries, at stream sequence 30 of 30") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, env, "audit", "verify", "-o", "json")
	var rep apiv1.AuditReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != ExitOK || !rep.OK || rep.Verified != 30 || rep.Stream != erasurev1.LifecycleStream {
		t.Fatalf("json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	r = runCLI(t, env, "audit", "verify", "--limit", "10")
	if r.code != ExitOK || !strings.Contains(r.stderr, "go on with --from-seq 11") {
		t.Fatalf("limit: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, env, "audit", "verify", "--from-seq", "11")
	if r.code != ExitOK || !strings.Contains(r.stdout, "OK: 20 entries checked") {
		t.Fatalf("from the middle: exit %d\n%s", r.code, r.stdout)
	}

	tok, tokens := auditorToken(t)
	plain := httptest.NewServer(httpapi.NewHandler(nil, zap.NewNop(), httpapi.Options{Auth: tokens}))
	defer plain.Close()
	r = runCLI(t, map[string]string{EnvAPIURL: plain.URL, EnvAPIToken: tok}, "audit", "verify")
	if r.code != ExitUnavailable || !strings.Contains(r.stderr, "--key FILE") {
		t.Fatalf("coordinator without an audit key: exit %d\n%s", r.code, r.stderr)
	}
}

// TestAuditVerifyOverNATS walks the stream itself with the key file: the
// original, and tampered copies of it under another name.
func TestAuditVerifyOverNATS(t *testing.T) {
	srv, js, _, _, keyFile := auditFixture(t)
	r := runCLI(t, map[string]string{EnvNATSURL: srv.URL, EnvAPIURL: "http://127.0.0.1:1"}, "audit", "verify", "--key", keyFile)
	if r.code != ExitOK || !strings.Contains(r.stdout, "OK: 30 entries checked, 30 verified") {
		t.Fatalf("original: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	var original []*jetstream.RawStreamMsg
	s, err := js.Stream(t.Context(), erasurev1.LifecycleStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 30; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		original = append(original, m)
	}
	copies := testenv.StartNATS(t)
	_, cjs := copies.Connect(t)
	copyOf := func(t *testing.T, name string, msgs []*jetstream.RawStreamMsg) jetstream.Stream {
		t.Helper()
		cs, err := cjs.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{erasurev1.LifecycleSubjectPrefix + ">"}, Storage: jetstream.MemoryStorage})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cjs.DeleteStream(context.Background(), name) })
		for _, m := range msgs {
			h := nats.Header{}
			for k, v := range m.Header {
				if !strings.HasPrefix(k, "Nats-Expected-") {
					h[k] = v
				}
			}
			if _, err := cjs.PublishMsg(t.Context(), &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}); err != nil {
				t.Fatal(err)
			}
		}
		return cs
	}
	env := map[string]string{EnvNATSURL: copies.URL}

	t.Run("edited", func(t *testing.T) {
		msgs := slices.Clone(original)
		edited := *msgs[4]
		edited.Data = append(slices.Clone(edited.Data), 0x10, 0x01)
		msgs[4] = &edited
		copyOf(t, "EDITED", msgs)
		r := runCLI(t, env, "audit", "verify", "--key", keyFile, "--stream", "EDITED")
		if r.code != ExitAuditFailed || !strings.Contains(r.stdout, "DOES NOT VERIFY: 1 problem(s)") || !strings.Contains(r.stdout, "edited   5      5           job-1:4") ||
			!strings.Contains(r.stderr, "INVALID: the audit trail in EDITED does not verify: 1 problem(s), the first edited at entry 5") {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	})
	t.Run("deleted", func(t *testing.T) {
		cs := copyOf(t, "DELETED", original)
		if err := cs.DeleteMsg(t.Context(), 17); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, env, "audit", "verify", "--key", keyFile, "--stream", "DELETED", "-o", "json")
		var rep apiv1.AuditReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		if r.code != ExitAuditFailed || rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Kind != apiv1.AuditRemoved || rep.Problems[0].Seq != 17 || rep.Problems[0].EventID != "job-2:17" {
			t.Fatalf("exit %d, %+v", r.code, rep.Problems)
		}
	})
	t.Run("no such stream", func(t *testing.T) {
		r := runCLI(t, env, "audit", "verify", "--key", keyFile, "--stream", "NOPE")
		if r.code != ExitNotFound || !strings.Contains(r.stderr, "no stream NOPE") {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	})
}

func TestAuditVerifyUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "want one action: verify"},
		{[]string{"audit", "check"}, "want one action: verify"},
		{[]string{"audit", "verify", "--stream", "X"}, "--stream needs --key FILE"},
		{[]string{"audit", "verify", "--key", filepath.Join(dir, "missing.key")}, "no audit key file"},
	} {
		r := runCLI(t, map[string]string{EnvAPIURL: "http://127.0.0.1:1", EnvNATSURL: "nats://127.0.0.1:1"}, tt.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", tt.args, r.code, r.stderr, ExitUsage, tt.want)
		}
	}
	if r := runCLI(t, nil, "help", "audit"); r.code != ExitOK || !strings.Contains(r.stdout, "Usage: erasectl audit verify") || !strings.Contains(r.stdout, "9    certificate verify") {
		t.Errorf("help: exit %d\n%s", r.code, r.stdout)
	}
}
