package cli

import (
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/brokerauth/authtest"
	"github.com/lethe-privacy/lethe/lib/natsconn"
	"github.com/lethe-privacy/lethe/lib/topology"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// TestNATSCommandsUseErasectlsCredentials runs footprint and event against
// a broker that enforces the deployed permissions: with erasectl's seed
// both work; without credentials the message says which variable to set;
// with the dashboard's seed footprint is refused.
func TestNATSCommandsUseErasectlsCredentials(t *testing.T) {
	srv := authtest.Start(t, []string{erasurev1.CategoryContacts})
	worker := brokerauth.Worker(erasurev1.CategoryContacts)
	opts, err := srv.Auth(worker).Options(worker)
	if err != nil {
		t.Fatal(err)
	}
	wnc, _, err := natsconn.Connect(srv.URL, "test-worker", zaptest.NewLogger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wnc.Close)
	respond(t, wnc, erasurev1.CategoryContacts, contactsAnswer)

	env := func(identity string) map[string]string {
		e := map[string]string{EnvNATSURL: srv.URL}
		if identity != "" {
			e[natsconn.EnvNKeySeedFile] = srv.Auth(identity).NKeySeedFile
		}
		return e
	}
	r := runCLI(t, env(brokerauth.Erasectl), "footprint", "acct-full", "--categories", "contacts")
	if r.code != 0 || !strings.Contains(r.stdout, "contacts=10") {
		t.Errorf("footprint with erasectl's seed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, env(""), "footprint", "acct-full", "--categories", "contacts")
	if r.code != ExitUnavailable || !strings.Contains(r.stderr, "refused erasectl's credentials") || !strings.Contains(r.stderr, natsconn.EnvNKeySeedFile) {
		t.Errorf("footprint without credentials: exit %d, stderr %q", r.code, r.stderr)
	}
	// The dashboard may publish events only: its request for a footprint
	// is dropped by the broker, so no worker answers.
	r = runCLI(t, env(brokerauth.Dashboard), "footprint", "acct-full", "--categories", "contacts", "--timeout", "1s")
	if r.code != ExitUnavailable || !strings.Contains(r.stdout, "no answer") {
		t.Errorf("footprint as the dashboard: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	copts, err := srv.Auth(brokerauth.Coordinator).Options(brokerauth.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	_, cjs, err := natsconn.Connect(srv.URL, "test-coordinator", zaptest.NewLogger(t), copts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.Ensure(t.Context(), cjs, topology.Settings{Categories: []string{erasurev1.CategoryContacts}}); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, env(brokerauth.Erasectl), "event", "acct-full", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"stream": "`+erasurev1.AccountsStream+`"`) {
		t.Errorf("event with erasectl's seed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
