package httpapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
	"github.com/lethe-privacy/lethe/services/coordinator/certificate"
	"github.com/lethe-privacy/lethe/services/coordinator/deadletter"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
	"github.com/lethe-privacy/lethe/services/coordinator/rebuild"
	"github.com/lethe-privacy/lethe/services/coordinator/reconcile"
)

// testToken is the test token of a principal: fixed, well-formed.
func testToken(principal string) string {
	sum := sha256.Sum256([]byte(principal))
	return apiauth.TokenPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// testPrincipal is the principal of a role in these tests.
func testPrincipal(role apiauth.Role) string { return string(role) + ":test" }

// testTokens holds one token per role (principal "<role>:test") and an
// expired one ("sre:expired").
func testTokens(t testing.TB) *apiauth.Tokens {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	var entries []apiauth.Entry
	for _, r := range apiauth.Roles() {
		p := testPrincipal(r)
		entries = append(entries, apiauth.Entry{Principal: p, Role: r, SHA256: apiauth.Hash(testToken(p)), Created: now.Add(-time.Hour), Expires: now.Add(time.Hour)})
	}
	entries = append(entries, apiauth.Entry{Principal: "sre:expired", Role: apiauth.RoleSRE, SHA256: apiauth.Hash(testToken("sre:expired")), Created: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)})
	tokens, err := apiauth.NewTokens(entries)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// as sends every request to h with the token of principal.
func as(principal string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+testToken(principal))
		h.ServeHTTP(w, r)
	})
}

// testHandler is NewHandler with the test tokens, called as role.
func testHandler(t testing.TB, svc Service, opts Options, role apiauth.Role) http.Handler {
	t.Helper()
	opts.Auth = testTokens(t)
	return as(testPrincipal(role), NewHandler(svc, zap.NewNop(), opts))
}

// allOptions sets every optional part, so that every route is
// registered. The values are never called: these tests look at routes and
// at what happens before a handler runs.
func allOptions(t testing.TB) Options {
	t.Helper()
	signer, err := certificate.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), "test")
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Ready:        func(context.Context) error { return nil },
		Gatherer:     prometheus.NewRegistry(),
		DeadLetters:  (*deadletter.Queue)(nil),
		Bulk:         bulkFunc(nil),
		Reconciler:   (*reconcile.Reconciler)(nil),
		Deadlines:    deadlinesFunc(nil),
		Rebuild:      func(context.Context) (rebuild.Summary, error) { return rebuild.Summary{}, nil },
		Certificates: signer,
		Audit:        (*audit.Walker)(nil),
		Actions:      actFunc(nil),
	}
}

type bulkFunc func(context.Context, jobs.BulkReplay) ([]jobs.BulkMatch, error)

func (f bulkFunc) ReplayFailed(ctx context.Context, b jobs.BulkReplay) ([]jobs.BulkMatch, error) {
	return f(ctx, b)
}

type deadlinesFunc func(context.Context, time.Duration, bool, int) ([]*jobs.Job, error)

func (f deadlinesFunc) Deadlines(ctx context.Context, within time.Duration, overdue bool, limit int) ([]*jobs.Job, error) {
	return f(ctx, within, overdue, limit)
}

type actFunc func(context.Context, string, jobs.ActionRequest) (*jobs.Job, error)

func (f actFunc) Act(ctx context.Context, id string, req jobs.ActionRequest) (*jobs.Job, error) {
	return f(ctx, id, req)
}

// TestEveryRouteHasAnAccessRule: a route added without an entry in
// accessRules would be denied to everyone; this test names it. It also
// catches rules for routes that no longer exist.
func TestEveryRouteHasAnAccessRule(t *testing.T) {
	s, _ := newServer(&recordingService{}, zap.NewNop(), allOptions(t))
	rules := accessRules()
	for _, p := range s.patterns {
		if _, ok := rules[p]; !ok {
			t.Errorf("route %q has no access rule: add it to accessRules in httpapi/auth.go (and the table in docs/security.md)", p)
		}
	}
	for p := range rules {
		if !slices.Contains(s.patterns, p) {
			t.Errorf("access rule for %q, which is not a route", p)
		}
	}
	if len(s.patterns) != len(rules) {
		t.Errorf("%d routes registered, %d access rules: %v", len(s.patterns), len(rules), s.patterns)
	}
}

func TestRouteWithoutAccessRuleIsDenied(t *testing.T) {
	opts := Options{Auth: testTokens(t)}
	s, mux := newServer(&recordingService{}, zap.NewNop(), opts)
	called := false
	s.route(mux, "GET /v1/new-thing", func(w http.ResponseWriter, _ *http.Request) { called = true })
	h := newGuard(s, mux)
	for _, r := range apiauth.Roles() {
		rec := httptest.NewRecorder()
		as(testPrincipal(r), h).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/new-thing", nil))
		if rec.Code != http.StatusForbidden || called {
			t.Errorf("%s: %d (called %v), want 403", r, rec.Code, called)
		}
	}
}

func TestUnauthenticatedRequestsAre401(t *testing.T) {
	h := NewHandler(&recordingService{}, zap.NewNop(), Options{Auth: testTokens(t)})
	tests := []struct {
		name, path, header string
		wantCode           int
		wantChallenge      string
		wantMessage        string
	}{
		{"no header", "/v1/erasures?account_id=a", "", 401, `Bearer realm="lethe"`, "needs a credential"},
		{"basic auth", "/v1/erasures?account_id=a", "Basic dXNlcjpwYXNz", 401, `Bearer realm="lethe", error="invalid_token"`, "Bearer"},
		{"malformed token", "/v1/erasures?account_id=a", "Bearer lethe_short", 401, `Bearer realm="lethe", error="invalid_token"`, "base64url"},
		{"unknown token", "/v1/erasures?account_id=a", "Bearer " + testToken("privacy:nobody"), 401, `Bearer realm="lethe", error="invalid_token"`, "not known"},
		{"expired token", "/v1/erasures?account_id=a", "Bearer " + testToken("sre:expired"), 401, `Bearer realm="lethe", error="invalid_token"`, "expired on"},
		{"unknown path without a token", "/v1/nothing", "", 401, `Bearer realm="lethe"`, "needs a credential"},
		{"unknown path with a token", "/v1/nothing", "Bearer " + testToken(testPrincipal(apiauth.RoleAuditor)), 404, "", "no such endpoint"},
		{"healthz without a token", "/healthz", "", 200, "", ""},
		{"readyz without a token", "/readyz", "", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode || rec.Header().Get("WWW-Authenticate") != tt.wantChallenge || !strings.Contains(rec.Body.String(), tt.wantMessage) {
				t.Errorf("%d %q %s; want %d %q and a message with %q", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body, tt.wantCode, tt.wantChallenge, tt.wantMessage)
			}
			if tt.wantCode == 401 {
				var e apiv1.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != apiv1.CodeUnauthenticated {
					t.Errorf("401 body %s", rec.Body)
				}
			}
		})
	}

	// Without an authenticator every route that needs a credential is
	// refused, even with a well-formed token.
	none := NewHandler(&recordingService{}, zap.NewNop(), Options{})
	rec := httptest.NewRecorder()
	as(testPrincipal(apiauth.RolePrivacy), none).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/erasures", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("no authenticator: %d, want 401", rec.Code)
	}
}

func TestRoleNotAllowedIs403(t *testing.T) {
	h := NewHandler(&recordingService{}, zap.NewNop(), Options{Auth: testTokens(t)})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/erasures", strings.NewReader(`{"account_id":"acc-1","reason":"r"}`))
	as(testPrincipal(apiauth.RoleSRE), h).ServeHTTP(rec, req)
	var e apiv1.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusForbidden || e.Error.Code != apiv1.CodePermissionDenied ||
		!strings.Contains(e.Error.Message, "allowed: dashboard, privacy") {
		t.Errorf("sre creating an erasure: %d %s", rec.Code, rec.Body)
	}
}

// TestActorIsTheAuthenticatedPrincipal: requested_by may be left out (the
// principal is recorded) or name the principal; naming anyone else is 403.
func TestActorIsTheAuthenticatedPrincipal(t *testing.T) {
	svc := &recordingService{}
	h := testHandler(t, svc, Options{}, apiauth.RolePrivacy)
	post := func(body string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/erasures", strings.NewReader(body)))
		return rec.Code
	}
	if code := post(`{"account_id":"acc-1","reason":"DSR"}`); code != http.StatusAccepted || svc.last.RequestedBy != "privacy:test" || svc.last.Origin != jobs.OriginAPI {
		t.Errorf("without requested_by: %d, recorded %+v", code, svc.last)
	}
	if code := post(`{"account_id":"acc-1","requested_by":"privacy:test","reason":"DSR"}`); code != http.StatusAccepted {
		t.Errorf("requested_by = the principal: %d", code)
	}
	svc.last = nil
	if code := post(`{"account_id":"acc-1","requested_by":"privacy:someone-else","reason":"DSR"}`); code != http.StatusForbidden || svc.last != nil {
		t.Errorf("requested_by = someone else: %d, reached the service: %v", code, svc.last != nil)
	}

	// The dashboard's request is the standard one, with the grace period.
	d := testHandler(t, svc, Options{}, apiauth.RoleDashboard)
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/erasures", strings.NewReader(`{"account_id":"acc-1","reason":"account deleted"}`)))
	if rec.Code != http.StatusAccepted || svc.last.Origin != jobs.OriginDashboard || svc.last.RequestedBy != "dashboard:test" {
		t.Errorf("dashboard request: %d, recorded %+v", rec.Code, svc.last)
	}
}

// TestRateLimitAnswers429 gives a principal a burst of two and a rate so
// small that no token comes back during the test.
func TestRateLimitAnswers429(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHandler(&recordingService{}, zap.NewNop(), Options{Auth: testTokens(t), RateLimit: 0.001, RateBurst: 2, Registerer: reg})
	get := func(principal string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		as(principal, h).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/erasures?account_id=acc-1", nil))
		return rec
	}
	sre := testPrincipal(apiauth.RoleSRE)
	for i := range 2 {
		if rec := get(sre); rec.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	rec := get(sre)
	retry, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	var e apiv1.ErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != http.StatusTooManyRequests || err != nil || retry < 1 || e.Error.Code != apiv1.CodeRateLimited {
		t.Errorf("third request: %d Retry-After %q %s; want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	// Limits are per principal: another one is not held back.
	if rec := get(testPrincipal(apiauth.RoleAuditor)); rec.Code != http.StatusOK {
		t.Errorf("another principal: %d", rec.Code)
	}
	// Probes are not limited.
	for range 3 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("healthz: %d", rec.Code)
		}
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "lethe_http_rate_limited_total" && mf.GetMetric()[0].GetCounter().GetValue() == 1 {
			found = true
		}
	}
	if !found {
		t.Error("lethe_http_rate_limited_total is not 1")
	}
}

func TestOversizedBodyIsRejectedAfterAuthentication(t *testing.T) {
	big := append([]byte(`{"account_id":"acc-1","reason":"`), bytes.Repeat([]byte("x"), MaxBodyBytes)...)
	big = append(big, []byte(`"}`)...)
	h := NewHandler(&recordingService{}, zap.NewNop(), Options{Auth: testTokens(t)})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/erasures", bytes.NewReader(big)))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("oversized body without a token: %d, want 401 (the body is not read)", rec.Code)
	}
	rec = httptest.NewRecorder()
	as(testPrincipal(apiauth.RolePrivacy), h).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/erasures", bytes.NewReader(big)))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "larger than 16384 bytes") {
		t.Errorf("oversized body: %d %s", rec.Code, rec.Body)
	}
}
