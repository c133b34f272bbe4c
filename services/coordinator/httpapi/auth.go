package httpapi

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

// Authenticator finds the principal a bearer token stands for
// (apiauth.Store, apiauth.Tokens). Its errors wrap apiauth.ErrMalformed,
// ErrUnknownToken or ErrExpired.
type Authenticator interface {
	Authenticate(token string, now time.Time) (apiauth.Principal, error)
}

var (
	_ Authenticator = (*apiauth.Store)(nil)
	_ Authenticator = (*apiauth.Tokens)(nil)
)

// Default per-principal rate limit: a sustained rate and a burst. The
// dashboard is one principal for every customer, so the rate is generous;
// it stops a runaway client, not a busy one.
const (
	DefaultRateLimit = 100
	DefaultRateBurst = 200
)

// access is who may call a route: anyone (public, without a credential),
// or principals of the listed roles.
type access struct {
	public bool
	roles  []apiauth.Role
}

// accessRules maps every route pattern to who may call it. A route that
// is not here is denied to everyone (route refuses it, and
// TestEveryRouteHasAnAccessRule fails): deny by default. Finer rules live
// in the handlers: a dashboard principal sees and acts on erasures of
// origin dashboard only, and of its account when its token names one
// (visible), and may not list across accounts.
func accessRules() map[string]access {
	var (
		dashboard = apiauth.RoleDashboard
		privacy   = apiauth.RolePrivacy
		sre       = apiauth.RoleSRE
		auditor   = apiauth.RoleAuditor
		metrics   = apiauth.RoleMetrics
	)
	roles := func(r ...apiauth.Role) access { return access{roles: r} }
	return map[string]access{
		// Probes: a kubelet or load balancer cannot hold a token. They
		// say up or not, and change nothing.
		"GET /healthz": {public: true},
		"GET /readyz":  {public: true},
		"GET /metrics": roles(sre, metrics),

		"POST /v1/erasures":                  roles(dashboard, privacy),
		"GET /v1/erasures":                   roles(dashboard, privacy, sre, auditor),
		"GET /v1/erasures/{id}":              roles(dashboard, privacy, sre, auditor),
		"POST /v1/erasures/{id}/cancel":      roles(dashboard, privacy),
		"POST /v1/erasures/{id}/force":       roles(privacy),
		"POST /v1/erasures/{id}/hold":        roles(privacy),
		"POST /v1/erasures/{id}/release":     roles(privacy),
		"POST /v1/erasures/{id}/extend":      roles(privacy),
		"POST /v1/erasures/{id}/replay":      roles(privacy, sre),
		"GET /v1/erasures/{id}/certificate":  roles(privacy, auditor),
		"GET /v1/certificate-key":            roles(privacy, auditor),
		"GET /v1/audit/verify":               roles(privacy, auditor),
		"GET /v1/dead-letters":               roles(sre, auditor),
		"GET /v1/dead-letters/{seq}":         roles(sre, auditor),
		"POST /v1/dead-letters/{seq}/replay": roles(sre),
		"POST /v1/replays":                   roles(sre),
		"GET /v1/reconciliation":             roles(sre, auditor),
		"POST /v1/reconciliation":            roles(sre),
		"POST /v1/admin/rebuild":             roles(sre),
	}
}

// AccessRule describes who may call a route pattern, for documentation
// and tests: "public", or the roles joined by commas; ok is false when the
// route has no rule (and is denied to everyone).
func AccessRule(pattern string) (rule string, ok bool) {
	a, ok := accessRules()[pattern]
	switch {
	case !ok:
		return "", false
	case a.public:
		return "public", true
	}
	var s []string
	for _, r := range a.roles {
		s = append(s, string(r))
	}
	return strings.Join(s, ","), true
}

// guard is the outer handler: it lets requests for public routes through
// and authenticates every other one (whatever its path: an unknown path
// without a credential is a 401, not a 404), applies the principal's rate
// limit and puts the principal in the request's context.
type guard struct {
	s       *server
	next    http.Handler
	public  map[string]bool // paths of public routes
	mu      sync.Mutex
	limits  map[string]*rate.Limiter
	rate    rate.Limit
	burst   int
	denied  *prometheus.CounterVec
	limited prometheus.Counter
}

func newGuard(s *server, next http.Handler) *guard {
	g := &guard{
		s: s, next: next, public: map[string]bool{}, limits: map[string]*rate.Limiter{},
		rate: rate.Limit(s.opts.RateLimit), burst: s.opts.RateBurst,
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_http_unauthenticated_total", Help: "API requests refused for want of a valid credential, by reason.",
		}, []string{"reason"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lethe_http_rate_limited_total", Help: "API requests refused with 429 by the per-principal rate limit.",
		}),
	}
	if g.rate <= 0 {
		g.rate = DefaultRateLimit
	}
	if g.burst <= 0 {
		g.burst = DefaultRateBurst
	}
	for pattern, a := range s.access {
		if a.public {
			_, path, _ := strings.Cut(pattern, " ")
			g.public[path] = true
		}
	}
	if s.opts.Registerer != nil {
		s.opts.Registerer.MustRegister(g.denied, g.limited)
	}
	return g
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.public[r.URL.Path] {
		g.next.ServeHTTP(w, r)
		return
	}
	p, err := g.authenticate(r)
	if err != nil {
		g.unauthenticated(w, err)
		return
	}
	if wait, ok := g.allow(p.ID); !ok {
		g.limited.Inc()
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		writeError(w, http.StatusTooManyRequests, apiv1.CodeRateLimited,
			fmt.Sprintf("too many requests from %s (at most %g a second, bursts of %d): retry after %d s", p.ID, float64(g.rate), g.burst, max(secs, 1)))
		return
	}
	g.next.ServeHTTP(w, r.WithContext(apiauth.WithPrincipal(r.Context(), p)))
}

// errNoAuthenticator: the handler was built without Options.Auth; it
// then refuses every request that needs a credential.
var errNoAuthenticator = errors.New("no authenticator")

func (g *guard) authenticate(r *http.Request) (apiauth.Principal, error) {
	tok, err := apiauth.ParseBearer(r.Header.Get("Authorization"))
	if err != nil {
		return apiauth.Principal{}, err
	}
	if g.s.opts.Auth == nil {
		return apiauth.Principal{}, errNoAuthenticator
	}
	return g.s.opts.Auth.Authenticate(tok, time.Now())
}

// unauthenticated answers 401 with the challenge of RFC 6750.
func (g *guard) unauthenticated(w http.ResponseWriter, err error) {
	const next = "send \"Authorization: Bearer <token>\" with a token issued by erasectl token issue (erasectl reads LETHE_API_TOKEN or LETHE_API_TOKEN_FILE)"
	var reason, msg string
	switch {
	case errors.Is(err, apiauth.ErrNoCredentials):
		reason, msg = "missing", "this endpoint needs a credential: "+next
	case errors.Is(err, apiauth.ErrMalformed):
		reason, msg = "malformed", err.Error()+"; "+next
	case errors.Is(err, apiauth.ErrExpired):
		reason, msg = "expired", "the token "+strings.TrimPrefix(err.Error(), "token ")+": ask for a new one (erasectl token rotate)"
	case errors.Is(err, apiauth.ErrUnknownToken):
		reason, msg = "unknown", "the token is not known (revoked, or never issued): ask for a new one"
	default:
		reason, msg = "unavailable", "this coordinator has no credentials configured and refuses every call; see docs/security.md"
	}
	g.denied.WithLabelValues(reason).Inc()
	challenge := `Bearer realm="lethe"`
	if reason != "missing" {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, apiv1.CodeUnauthenticated, msg)
}

// allow takes one request from the principal's bucket, or says how long
// to wait for one.
func (g *guard) allow(principal string) (time.Duration, bool) {
	g.mu.Lock()
	lim, ok := g.limits[principal]
	if !ok {
		// One limiter per principal of the tokens file: bounded.
		lim = rate.NewLimiter(g.rate, g.burst)
		g.limits[principal] = lim
	}
	g.mu.Unlock()
	now := time.Now()
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// authorize wraps a route's handler with its access rule.
func (s *server) authorize(pattern string, h http.HandlerFunc) http.HandlerFunc {
	a, ok := s.access[pattern]
	if !ok {
		s.log.Error("api route without an access rule: it is denied to everyone; add it to httpapi's accessRules", zap.String("route", pattern))
		return func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusForbidden, apiv1.CodePermissionDenied, "this endpoint has no access rule, so it is denied to everyone")
		}
	}
	if a.public {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := apiauth.PrincipalFrom(r.Context())
		if !ok {
			writeError(w, http.StatusUnauthorized, apiv1.CodeUnauthenticated, "this endpoint needs a credential")
			return
		}
		if !slices.Contains(a.roles, p.Role) {
			var allowed []string
			for _, r := range a.roles {
				allowed = append(allowed, string(r))
			}
			writeError(w, http.StatusForbidden, apiv1.CodePermissionDenied,
				fmt.Sprintf("%s has role %s, which may not call %s (allowed: %s); use a token of an allowed role", p.ID, p.Role, pattern, strings.Join(allowed, ", ")))
			return
		}
		h(w, r)
	}
}

// caller is the authenticated principal of r (zero for a public route).
func caller(r *http.Request) apiauth.Principal {
	p, _ := apiauth.PrincipalFrom(r.Context())
	return p
}

// actor returns who is acting: the authenticated principal. requested_by
// in a body may name it (older clients send it) but never another
// principal; such a request is answered 403 and actor returns false.
func actor(w http.ResponseWriter, r *http.Request, requestedBy string) (string, bool) {
	p := caller(r)
	if requestedBy != "" && requestedBy != p.ID {
		writeError(w, http.StatusForbidden, apiv1.CodePermissionDenied,
			fmt.Sprintf("requested_by %q is not the caller (%s): leave requested_by out, the coordinator records the authenticated principal", requestedBy, p.ID))
		return "", false
	}
	return p.ID, true
}

// visible reports whether p may see and act on j: a dashboard principal
// only on erasures of origin dashboard (the customer's own deletions, by
// event or API; never the privacy team's), and only of its account when
// its token names one. Every other role sees every job.
func visible(p apiauth.Principal, j *jobs.Job) bool {
	if p.Role != apiauth.RoleDashboard {
		return true
	}
	return j.Origin == jobs.OriginDashboard && (p.Account == "" || j.AccountID == p.Account)
}

// errHidden answers a dashboard principal's request for a job it may not
// see exactly as for a job that does not exist.
func errHidden(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "no job with this id")
}
