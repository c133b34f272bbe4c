package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
)

// The API principals of the tests, one per role. requested_by in a body
// must be the caller's principal: most tests send privacy:ops.
const (
	privacyPrincipal   = "privacy:ops"
	srePrincipal       = "sre:kim"
	dashboardPrincipal = "dashboard:web"
	auditorPrincipal   = "auditor:e2e"
	metricsPrincipal   = "metrics:e2e"
	// expiredPrincipal's token expired an hour before the file was
	// written.
	expiredPrincipal = "sre:expired"
	// scopedPrincipal is a dashboard principal limited to scopedAccount.
	scopedPrincipal = "dashboard:acc-scoped"
	scopedAccount   = "acc-scoped"
)

// principalOf is the test principal of each role.
func principalOf(role apiauth.Role) string {
	switch role {
	case apiauth.RolePrivacy:
		return privacyPrincipal
	case apiauth.RoleSRE:
		return srePrincipal
	case apiauth.RoleDashboard:
		return dashboardPrincipal
	case apiauth.RoleAuditor:
		return auditorPrincipal
	case apiauth.RoleMetrics:
		return metricsPrincipal
	}
	return ""
}

// tokenOf is the API token of a test principal: fixed, so that helpers
// without a pipeline at hand (addAuth) can send it.
func tokenOf(principal string) string {
	sum := sha256.Sum256([]byte("lethe e2e " + principal))
	return apiauth.TokenPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// writeTokensFile writes the API tokens file of the tests: one principal
// per role, the expired one and the account-scoped dashboard one.
func writeTokensFile(t *testing.T) string {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	entry := func(principal string, role apiauth.Role, account string) apiauth.Entry {
		return apiauth.Entry{Principal: principal, Role: role, Account: account, SHA256: apiauth.Hash(tokenOf(principal)),
			Created: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour)}
	}
	var entries []apiauth.Entry
	for _, r := range apiauth.Roles() {
		entries = append(entries, entry(principalOf(r), r, ""))
	}
	expired := entry(expiredPrincipal, apiauth.RoleSRE, "")
	expired.Created, expired.Expires = now.Add(-2*time.Hour), now.Add(-time.Hour)
	entries = append(entries, expired, entry(scopedPrincipal, apiauth.RoleDashboard, scopedAccount))
	path := filepath.Join(t.TempDir(), "api-tokens.jsonl")
	if err := apiauth.WriteFile(path, entries); err != nil {
		t.Fatal(err)
	}
	return path
}

// testRateLimit is far above what any test sends: tests of the limit
// itself are httpapi's.
const testRateLimit, testRateBurst = 1e6, 1e6

// withAPITokens gives an in-process coordinator the tests' tokens, unless
// the test set its own, and lifts the rate limit.
func withAPITokens(t *testing.T, cfg *app.Config) {
	t.Helper()
	if cfg.APITokens == "" {
		cfg.APITokens = writeTokensFile(t)
	}
	if cfg.APIRateLimit == 0 {
		cfg.APIRateLimit, cfg.APIRateBurst = testRateLimit, testRateBurst
	}
}

// coordinatorTestEnv is the extra environment a coordinator process under
// test needs: the API tokens file, and no rate limit to speak of.
func coordinatorTestEnv(t *testing.T) []string {
	t.Helper()
	return []string{"LETHE_API_TOKENS=" + writeTokensFile(t), "LETHE_API_RATE_LIMIT=1000000", "LETHE_API_RATE_BURST=1000000"}
}

// roleFor is the role a test calls a route as: sre for operations, the
// metrics scraper for /metrics, the privacy team for the rest.
func roleFor(path string) apiauth.Role {
	switch {
	case path == "/metrics":
		return apiauth.RoleMetrics
	case strings.HasPrefix(path, "/v1/admin/"), strings.HasPrefix(path, "/v1/reconciliation"),
		strings.HasPrefix(path, "/v1/dead-letters"), strings.HasPrefix(path, "/v1/replays"):
		return apiauth.RoleSRE
	}
	return apiauth.RolePrivacy
}

// addAuth adds the credential of a test principal whose role may make the
// request (roleFor). It also goes to servers that ignore it (nats-server's
// monitor, workers' /metrics).
func addAuth(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+tokenOf(principalOf(roleFor(req.URL.Path))))
}
