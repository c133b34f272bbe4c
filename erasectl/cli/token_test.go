package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
	"github.com/lethe-privacy/lethe/services/coordinator/rebuild"
)

func TestTokenIssueRotateRevokeList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "api-tokens.jsonl")
	env := map[string]string{EnvAPITokens: file}

	r := runCLI(t, env, "token", "issue", "--principal", "privacy:jdoe", "--role", "privacy")
	tok := strings.TrimSpace(r.stdout)
	if r.code != ExitOK || apiauth.CheckToken(tok) != nil || !strings.Contains(r.stderr, "added privacy:jdoe (role privacy) to "+file) {
		t.Fatalf("issue: exit %d\nstdout %q\nstderr %s", r.code, r.stdout, r.stderr)
	}
	raw, _ := os.ReadFile(file)
	if strings.Contains(string(raw), tok) || !strings.Contains(string(raw), apiauth.Hash(tok)) {
		t.Fatalf("the file must hold the hash, not the token:\n%s", raw)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	tokens, err := apiauth.LoadTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := tokens.Authenticate(tok, time.Now()); err != nil || p.ID != "privacy:jdoe" {
		t.Fatalf("the issued token: %+v, %v", p, err)
	}

	if r := runCLI(t, env, "token", "issue", "--principal", "privacy:jdoe", "--role", "sre"); r.code != ExitUsage || !strings.Contains(r.stderr, "already has role privacy") {
		t.Errorf("a second role: exit %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, env, "token", "issue", "--principal", "jdoe@example.org", "--role", "sre"); r.code != ExitUsage {
		t.Errorf("an e-mail address as principal: exit %d %s", r.code, r.stderr)
	}

	r = runCLI(t, env, "token", "rotate", "--principal", "privacy:jdoe", "--overlap", "1h", "-o", "json")
	var v tokenView
	if err := json.Unmarshal([]byte(r.stdout), &v); r.code != ExitOK || err != nil || apiauth.CheckToken(v.Token) != nil || v.Role != "privacy" {
		t.Fatalf("rotate: exit %d %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	tokens, _ = apiauth.LoadTokens(file)
	for _, tk := range []string{tok, v.Token} {
		if _, err := tokens.Authenticate(tk, time.Now()); err != nil {
			t.Errorf("during the overlap: %v", err)
		}
	}
	if _, err := tokens.Authenticate(tok, time.Now().Add(2*time.Hour)); err == nil {
		t.Error("the old token still works after the overlap")
	}

	r = runCLI(t, env, "token", "list")
	if r.code != ExitOK || strings.Count(r.stdout, "privacy:jdoe") != 2 || !strings.Contains(r.stdout, apiauth.Hash(tok)[:12]) {
		t.Errorf("list: exit %d\n%s", r.code, r.stdout)
	}

	r = runCLI(t, env, "token", "revoke", "--principal", "privacy:jdoe", "--sha256", apiauth.Hash(tok)[:12])
	tokens, _ = apiauth.LoadTokens(file)
	if _, err := tokens.Authenticate(tok, time.Now()); r.code != ExitOK || err == nil {
		t.Errorf("revoke: exit %d %s; old token: %v", r.code, r.stderr, err)
	}
	if r := runCLI(t, env, "token", "revoke", "--principal", "sre:nobody"); r.code != ExitNotFound {
		t.Errorf("revoke of an unknown principal: exit %d", r.code)
	}

	// Without a file: the token on stdout, the line to add on stderr.
	r = runCLI(t, nil, "token", "issue", "--principal", "metrics:prometheus", "--role", "metrics", "--ttl", "7d")
	if r.code != ExitOK || apiauth.CheckToken(strings.TrimSpace(r.stdout)) != nil || !strings.Contains(r.stderr, `"principal":"metrics:prometheus"`) {
		t.Errorf("issue without a file: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"token", "issue", "--role", "privacy"},
		{"token", "issue", "--principal", "x:y", "--role", "root"},
		{"token", "issue", "--principal", "x:y", "--role", "sre", "--ttl", "400d"},
		{"token", "rotate"},
		{"token", "revoke", "--principal", "x:y", "--sha256", "ab"},
		{"token", "init"},
		{"token", "frobnicate"},
	} {
		if r := runCLI(t, nil, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, r.code, ExitUsage, r.stderr)
		}
	}
}

func TestTokenInitKeepsValidTokens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "api")
	r := runCLI(t, nil, "token", "init", "--dir", dir, "--name", "demo")
	if r.code != ExitOK || strings.Count(r.stdout, " new") != len(apiauth.Roles()) {
		t.Fatalf("init: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	tokens, err := apiauth.LoadTokens(filepath.Join(dir, "api-tokens.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	first := map[apiauth.Role]string{}
	for _, role := range apiauth.Roles() {
		raw, err := os.ReadFile(filepath.Join(dir, string(role)+".token"))
		if err != nil {
			t.Fatal(err)
		}
		first[role] = strings.TrimSpace(string(raw))
		if p, err := tokens.Authenticate(first[role], time.Now()); err != nil || p.Role != role || p.ID != string(role)+":demo" {
			t.Errorf("%s token: %+v, %v", role, p, err)
		}
	}
	r = runCLI(t, nil, "token", "init", "--dir", dir, "--name", "demo")
	if r.code != ExitOK || strings.Count(r.stdout, " kept") != len(apiauth.Roles()) {
		t.Fatalf("second init: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "sre.token"))
	if strings.TrimSpace(string(raw)) != first[apiauth.RoleSRE] {
		t.Error("a valid token was replaced")
	}
}

// TestAPITokenAgainstTheCoordinatorsHandler runs erasectl admin rebuild
// against the coordinator's real handler with tokens made by token init:
// the token goes out as a bearer credential, and a refusal is exit 10
// with what to do.
func TestAPITokenAgainstTheCoordinatorsHandler(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, nil, "token", "init", "--dir", dir); r.code != ExitOK {
		t.Fatal(r.stderr)
	}
	store, err := apiauth.OpenStore(filepath.Join(dir, "api-tokens.jsonl"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewHandler(nil, zap.NewNop(), httpapi.Options{
		Auth:    store,
		Rebuild: func(context.Context) (rebuild.Summary, error) { return rebuild.Summary{Events: 3}, nil },
	}))
	defer srv.Close()
	tokenFile := func(role string) string { return filepath.Join(dir, role+".token") }
	sreToken, _ := os.ReadFile(tokenFile("sre"))

	tests := []struct {
		name     string
		env      map[string]string
		wantCode int
		want     string
	}{
		{"sre by file", map[string]string{EnvAPITokenFile: tokenFile("sre")}, ExitOK, "events read"},
		{"sre by value", map[string]string{EnvAPIToken: strings.TrimSpace(string(sreToken))}, ExitOK, "events read"},
		{"privacy", map[string]string{EnvAPITokenFile: tokenFile("privacy")}, ExitDenied, "privacy:dev has role privacy, which may not call POST /v1/admin/rebuild (allowed: sre)"},
		{"no token", nil, ExitDenied, "erasectl has none: set LETHE_API_TOKEN_FILE"},
		{"unknown token", map[string]string{EnvAPIToken: "lethe_" + strings.Repeat("A", 43)}, ExitDenied, "did not accept the API token: the token is not known"},
		{"not a token", map[string]string{EnvAPIToken: "hunter2"}, ExitUsage, "is not one the coordinator issues"},
		{"both set", map[string]string{EnvAPIToken: "x", EnvAPITokenFile: tokenFile("sre")}, ExitUsage, "set one"},
		{"missing file", map[string]string{EnvAPITokenFile: filepath.Join(dir, "nope")}, ExitUsage, "read the API token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{EnvAPIURL: srv.URL}
			for k, v := range tt.env {
				env[k] = v
			}
			r := runCLI(t, env, "admin", "rebuild")
			if r.code != tt.wantCode || !strings.Contains(r.stdout+r.stderr, tt.want) {
				t.Errorf("exit %d, want %d with %q\nstdout %s\nstderr %s", r.code, tt.wantCode, tt.want, r.stdout, r.stderr)
			}
			if strings.Contains(r.stderr, string(sreToken[:20])) {
				t.Error("the token is printed")
			}
		})
	}
}

func TestRateLimitedIsUnavailableWithRetryAfter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":{"code":"rate_limited","message":"too many requests from sre:kim"}}`))
	}))
	defer srv.Close()
	r := runCLI(t, map[string]string{EnvAPIURL: srv.URL}, "status", "00000000-0000-4000-8000-000000000001")
	if r.code != ExitUnavailable || !strings.Contains(r.stderr, "retry in 7s") {
		t.Errorf("exit %d %s", r.code, r.stderr)
	}
}
