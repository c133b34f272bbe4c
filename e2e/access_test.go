package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/apiauth"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
	"github.com/lethe-privacy/lethe/services/coordinator/policy"
)

// matrixCaller is one column of the access matrix: who calls (a test
// principal, or a token that is missing, unknown or expired) and which job
// and account its requests name.
type matrixCaller struct {
	name      string
	principal string // "" with token "": no credential
	token     string
	role      apiauth.Role // "" for the unauthenticated columns
	job       string       // the job id its job routes name
	account   string       // the account its create and list name
	// hidden: the job is another principal's that it may not see.
	hidden bool
}

// matrixRow is one endpoint of the access matrix.
type matrixRow struct {
	pattern string // the route, as httpapi's access table names it
	label   string // the pattern with its query, if any
	method  string
	path    func(c matrixCaller) string
	body    func(c matrixCaller) any // nil: no body
	// roles that may call it, as the specification of the issue: checked
	// against httpapi's table. Nil: public.
	roles []apiauth.Role
	// dashboard gives the code a dashboard column must get where its role
	// is allowed but its scope is not (hidden job, another account, a
	// query across accounts), by column name.
	dashboard map[string]int
}

// TestAccessMatrix runs every caller against every endpoint of a real
// coordinator (Redis, NATS, the real tokens file) and checks who is let in:
// 401 without a valid credential, 403 for a role that may not, 404 for a
// dashboard principal asking for a job that is not its own, and anything
// but 401/403 (and 5xx) where the role may. It prints the matrix.
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	cats := []string{erasurev1.CategoryContacts}
	dir := t.TempDir()
	p := startPipelineWith(t, func(c *app.Config) {
		c.CertificateKey, c.CertificateKeyCreate = filepath.Join(dir, "certificate.pem"), true
		c.AuditKey, c.AuditKeyCreate = filepath.Join(dir, "audit.key"), true
		pol := immediatePolicy(cats)
		pol.Grace[policy.OriginDashboard] = 14 * 24 * time.Hour // the customer's undo window
		c.Policy = pol
	})

	// The jobs: the dashboard's own (pending in its grace period), the
	// privacy team's (running: no worker takes its task), and an
	// account-scoped dashboard principal's.
	create := func(principal, account string) apiv1.Job {
		t.Helper()
		code, body := p.callAs(t, principal, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: account, Reason: "access matrix"})
		var j apiv1.Job
		if err := json.Unmarshal(body, &j); code != http.StatusAccepted || err != nil {
			t.Fatalf("create as %s: %d %s", principal, code, body)
		}
		return j
	}
	jobD := create(dashboardPrincipal, "acc-mx-dash")
	jobP := create(privacyPrincipal, "acc-mx-priv")
	create(scopedPrincipal, scopedAccount)
	if jobD.Status != apiv1.JobPending || jobD.Origin != "dashboard" || jobD.RequestedBy != dashboardPrincipal ||
		jobP.Status != apiv1.JobRunning || jobP.Origin != "api" || jobP.RequestedBy != privacyPrincipal {
		t.Fatalf("setup: dashboard job %s/%s by %s, privacy job %s/%s by %s", jobD.Status, jobD.Origin, jobD.RequestedBy, jobP.Status, jobP.Origin, jobP.RequestedBy)
	}

	caller := func(name, principal string, role apiauth.Role, job apiv1.Job, hidden bool) matrixCaller {
		c := matrixCaller{name: name, principal: principal, role: role, job: job.ID, account: job.AccountID, hidden: hidden}
		if principal != "" {
			c.token = tokenOf(principal)
		}
		return c
	}
	callers := []matrixCaller{
		caller("no token", "", "", jobP, false),
		{name: "bad token", token: tokenOf("privacy:never-issued"), job: jobP.ID, account: jobP.AccountID},
		caller("expired", expiredPrincipal, "", jobP, false),
		caller("dashboard", dashboardPrincipal, apiauth.RoleDashboard, jobD, false),
		caller("dash→privacy", dashboardPrincipal, apiauth.RoleDashboard, jobP, true),
		caller("dash→other", scopedPrincipal, apiauth.RoleDashboard, jobD, true),
		caller("privacy", privacyPrincipal, apiauth.RolePrivacy, jobP, false),
		caller("sre", srePrincipal, apiauth.RoleSRE, jobP, false),
		caller("auditor", auditorPrincipal, apiauth.RoleAuditor, jobP, false),
		caller("metrics", metricsPrincipal, apiauth.RoleMetrics, jobP, false),
	}

	var (
		d   = apiauth.RoleDashboard
		pv  = apiauth.RolePrivacy
		sre = apiauth.RoleSRE
		aud = apiauth.RoleAuditor
		met = apiauth.RoleMetrics
	)
	fixed := func(path string) func(matrixCaller) string { return func(matrixCaller) string { return path } }
	onJob := func(suffix string) func(matrixCaller) string {
		return func(c matrixCaller) string { return "/v1/erasures/" + c.job + suffix }
	}
	static := func(v any) func(matrixCaller) any { return func(matrixCaller) any { return v } }
	hidden := map[string]int{"dash→privacy": 404, "dash→other": 404}
	rows := []matrixRow{
		{pattern: "POST /v1/erasures", method: "POST", path: fixed("/v1/erasures"), roles: []apiauth.Role{d, pv},
			body: func(c matrixCaller) any {
				return apiv1.CreateErasureRequest{AccountID: c.account, Reason: "access matrix"}
			},
			// dash→privacy asks for the privacy team's account: its job goes
			// on and is not shown; the scoped token names another account.
			dashboard: map[string]int{"dash→privacy": 409, "dash→other": 403}},
		{pattern: "GET /v1/erasures", label: "GET /v1/erasures?account_id=", method: "GET", roles: []apiauth.Role{d, pv, sre, aud},
			path: func(c matrixCaller) string { return "/v1/erasures?account_id=" + c.account }, dashboard: map[string]int{"dash→other": 403}},
		{pattern: "GET /v1/erasures", label: "GET /v1/erasures (all accounts)", method: "GET", path: fixed("/v1/erasures"), roles: []apiauth.Role{d, pv, sre, aud},
			dashboard: map[string]int{"dashboard": 403, "dash→privacy": 403}}, // the scoped token lists its own account
		{pattern: "GET /v1/erasures", label: "GET /v1/erasures?stuck=true", method: "GET", path: fixed("/v1/erasures?stuck=true"), roles: []apiauth.Role{d, pv, sre, aud},
			dashboard: map[string]int{"dashboard": 403, "dash→privacy": 403, "dash→other": 403}},
		{pattern: "GET /v1/erasures", label: "GET /v1/erasures?due_within=72h", method: "GET", path: fixed("/v1/erasures?due_within=72h"), roles: []apiauth.Role{d, pv, sre, aud},
			dashboard: map[string]int{"dashboard": 403, "dash→privacy": 403, "dash→other": 403}},
		{pattern: "GET /v1/erasures", label: "GET /v1/erasures?overdue=true", method: "GET", path: fixed("/v1/erasures?overdue=true"), roles: []apiauth.Role{d, pv, sre, aud},
			dashboard: map[string]int{"dashboard": 403, "dash→privacy": 403, "dash→other": 403}},
		{pattern: "GET /v1/erasures/{id}", method: "GET", path: onJob(""), roles: []apiauth.Role{d, pv, sre, aud}, dashboard: hidden},
		{pattern: "POST /v1/erasures/{id}/cancel", method: "POST", path: onJob("/cancel"), body: static(apiv1.ActionRequest{Reason: "customer restored the account"}),
			roles: []apiauth.Role{d, pv}, dashboard: hidden},
		{pattern: "POST /v1/erasures/{id}/force", method: "POST", path: onJob("/force"), body: static(apiv1.ActionRequest{Reason: "DSR by e-mail", Ticket: "PRIV-1"}), roles: []apiauth.Role{pv}},
		{pattern: "POST /v1/erasures/{id}/hold", method: "POST", path: onJob("/hold"), body: static(apiv1.ActionRequest{Reason: "tax audit", Ticket: "LEGAL-1"}), roles: []apiauth.Role{pv}},
		{pattern: "POST /v1/erasures/{id}/release", method: "POST", path: onJob("/release"), body: static(apiv1.ActionRequest{Reason: "audit closed", Ticket: "LEGAL-1"}), roles: []apiauth.Role{pv}},
		{pattern: "POST /v1/erasures/{id}/extend", method: "POST", path: onJob("/extend"), body: static(apiv1.ActionRequest{Reason: "numerous requests", Months: 1}), roles: []apiauth.Role{pv}},
		{pattern: "POST /v1/erasures/{id}/replay", method: "POST", path: onJob("/replay"), body: static(apiv1.ReplayRequest{Reason: "matrix"}), roles: []apiauth.Role{pv, sre}},
		{pattern: "GET /v1/erasures/{id}/certificate", method: "GET", path: onJob("/certificate"), roles: []apiauth.Role{pv, aud}},
		{pattern: "GET /v1/certificate-key", method: "GET", path: fixed("/v1/certificate-key"), roles: []apiauth.Role{pv, aud}},
		{pattern: "GET /v1/audit/verify", method: "GET", path: fixed("/v1/audit/verify"), roles: []apiauth.Role{pv, aud}},
		{pattern: "GET /v1/dead-letters", method: "GET", path: fixed("/v1/dead-letters"), roles: []apiauth.Role{sre, aud}},
		{pattern: "GET /v1/dead-letters/{seq}", method: "GET", path: fixed("/v1/dead-letters/1"), roles: []apiauth.Role{sre, aud}},
		{pattern: "POST /v1/dead-letters/{seq}/replay", method: "POST", path: fixed("/v1/dead-letters/1/replay"), body: static(apiv1.ReplayRequest{Reason: "matrix"}), roles: []apiauth.Role{sre}},
		{pattern: "POST /v1/replays", method: "POST", path: fixed("/v1/replays"), body: static(apiv1.BulkReplayRequest{Status: "failed", DryRun: true}), roles: []apiauth.Role{sre}},
		{pattern: "GET /v1/reconciliation", method: "GET", path: fixed("/v1/reconciliation"), roles: []apiauth.Role{sre, aud}},
		{pattern: "POST /v1/reconciliation", method: "POST", path: fixed("/v1/reconciliation"), roles: []apiauth.Role{sre}},
		{pattern: "POST /v1/admin/rebuild", method: "POST", path: fixed("/v1/admin/rebuild"), roles: []apiauth.Role{sre}},
		{pattern: "GET /metrics", method: "GET", path: fixed("/metrics"), roles: []apiauth.Role{sre, met}},
		{pattern: "GET /healthz", method: "GET", path: fixed("/healthz")},
		{pattern: "GET /readyz", method: "GET", path: fixed("/readyz")},
		{pattern: "", label: "GET /v1/no-such-endpoint", method: "GET", path: fixed("/v1/no-such-endpoint"), roles: apiauth.Roles()},
	}

	for i := range rows {
		if rows[i].label == "" {
			rows[i].label = rows[i].pattern
		}
	}
	// The specification above is the coordinator's table.
	for _, r := range rows {
		if r.pattern == "" {
			continue
		}
		rule, ok := httpapi.AccessRule(r.pattern)
		want := "public"
		if r.roles != nil {
			var s []string
			for _, x := range r.roles {
				s = append(s, string(x))
			}
			want = strings.Join(s, ",")
		}
		if !ok || rule != want {
			t.Errorf("%s: the coordinator allows %q, the specification %q", r.pattern, rule, want)
		}
	}

	cells := make([][]string, len(rows))
	for i, r := range rows {
		cells[i] = make([]string, len(callers))
		for j, c := range callers {
			var reqBody any
			if r.body != nil {
				reqBody = r.body(c)
			}
			code, body := p.send(t, c.token, r.method, r.path(c), reqBody)
			want, wantClass := expectation(r, c)
			cell := strconv.Itoa(code)
			switch {
			case wantClass == "exact" && code != want,
				wantClass == "allowed" && (code == 401 || code == 403 || code >= 500):
				cell += " ✗"
				t.Errorf("%s as %s: %d %s; want %s", r.label, c.name, code, body, describe(want, wantClass))
			}
			// A dashboard principal's list shows its own jobs only.
			if r.method == "GET" && strings.HasPrefix(r.path(c), "/v1/erasures?account_id=") && code == 200 && c.role == d {
				var l apiv1.JobList
				_ = json.Unmarshal([]byte(body), &l)
				for _, j := range l.Jobs {
					if j.Origin != "dashboard" {
						t.Errorf("%s listed the %s job %s of %s", c.name, j.Origin, j.ID, j.RequestedBy)
					}
				}
				if c.hidden && len(l.Jobs) != 0 {
					cell += " (0 jobs)✗"
				} else if c.hidden {
					cell += " (0 jobs)"
				}
			}
			if code == 401 && !strings.Contains(body, `"unauthenticated"`) || code == 403 && !strings.Contains(body, `"permission_denied"`) {
				t.Errorf("%s as %s: %d with body %s", r.label, c.name, code, body)
			}
			cells[i][j] = cell
		}
	}
	t.Logf("access matrix: the HTTP status each caller got from each endpoint (%d endpoints × %d callers)\n%s", len(rows), len(callers), matrixTable(rows, callers, cells))

	// requested_by may name the caller, never anyone else.
	if code, body := p.callAs(t, privacyPrincipal, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-mx-2", RequestedBy: "privacy:someone-else", Reason: "r"}); code != http.StatusForbidden {
		t.Errorf("requested_by naming someone else: %d %s, want 403", code, body)
	}
	if code, body := p.callAs(t, privacyPrincipal, "POST", "/v1/erasures", apiv1.CreateErasureRequest{AccountID: "acc-mx-2", RequestedBy: privacyPrincipal, Reason: "r"}); code != http.StatusAccepted {
		t.Errorf("requested_by naming the caller: %d %s, want 202", code, body)
	}

	// Every mutation carries the authenticated principal: in the job and
	// in its lifecycle events.
	_, body := p.call(t, "GET", "/v1/erasures/"+jobP.ID, nil)
	var jp apiv1.Job
	if err := json.Unmarshal(body, &jp); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, a := range jp.Actions {
		kinds = append(kinds, a.Kind)
		if a.Actor != privacyPrincipal {
			t.Errorf("privacy job action %s recorded actor %q, want %q", a.Kind, a.Actor, privacyPrincipal)
		}
	}
	if !slices.Equal(kinds, []string{"hold", "release", "extend"}) {
		t.Errorf("privacy job actions %v, want hold, release, extend", kinds)
	}
	var actors [][2]string
	for _, id := range []string{jobP.ID, jobD.ID} {
		for _, ev := range p.lifecycleOf(t, id) {
			actors = append(actors, [2]string{id + " " + ev.GetType().String(), ev.GetActor()})
		}
	}
	want := map[string]string{
		jobP.ID + " " + erasurev1.EventType_EVENT_TYPE_JOB_CREATED.String():       privacyPrincipal,
		jobP.ID + " " + erasurev1.EventType_EVENT_TYPE_JOB_HELD.String():          privacyPrincipal,
		jobP.ID + " " + erasurev1.EventType_EVENT_TYPE_JOB_RELEASED.String():      privacyPrincipal,
		jobP.ID + " " + erasurev1.EventType_EVENT_TYPE_DEADLINE_EXTENDED.String(): privacyPrincipal,
		jobD.ID + " " + erasurev1.EventType_EVENT_TYPE_JOB_CREATED.String():       dashboardPrincipal,
		jobD.ID + " " + erasurev1.EventType_EVENT_TYPE_JOB_CANCELLED.String():     dashboardPrincipal,
	}
	got := map[string]string{}
	for _, a := range actors {
		got[a[0]] = a[1]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("lifecycle event %s: actor %q, want %q", k, got[k], v)
		}
	}
	t.Logf("lifecycle events and their actors: %v", actors)
}

// expectation says what a caller must get from a row: an exact code, or
// "allowed" (anything but 401, 403 and 5xx: the request was let in and
// answered on its merits, 200, 202, 400, 404 or 409).
func expectation(r matrixRow, c matrixCaller) (int, string) {
	switch {
	case r.roles == nil:
		return http.StatusOK, "exact"
	case c.role == "":
		return http.StatusUnauthorized, "exact"
	case !slices.Contains(r.roles, c.role):
		return http.StatusForbidden, "exact"
	}
	if code, ok := r.dashboard[c.name]; ok && c.role == apiauth.RoleDashboard {
		return code, "exact"
	}
	if r.pattern == "" {
		return http.StatusNotFound, "exact"
	}
	return 0, "allowed"
}

func describe(code int, class string) string {
	if class == "allowed" {
		return "it let in (not 401, 403 or 5xx)"
	}
	return strconv.Itoa(code)
}

// send calls the API with token ("" for none).
func (p *pipeline) send(t *testing.T, token, method, path string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.api+path, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func matrixTable(rows []matrixRow, callers []matrixCaller, cells [][]string) string {
	var b strings.Builder
	width := 0
	for _, r := range rows {
		width = max(width, len(r.label))
	}
	colW := make([]int, len(callers))
	for j, c := range callers {
		colW[j] = len([]rune(c.name))
		for i := range rows {
			colW[j] = max(colW[j], len([]rune(cells[i][j])))
		}
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-len([]rune(s)))) }
	b.WriteString(pad("endpoint", width))
	for j, c := range callers {
		b.WriteString("  " + pad(c.name, colW[j]))
	}
	b.WriteString("\n")
	for i, r := range rows {
		b.WriteString(pad(r.label, width))
		for j := range callers {
			b.WriteString("  " + pad(cells[i][j], colW[j]))
		}
		b.WriteString("\n")
	}
	b.WriteString("callers: dashboard = dashboard:web on its own job; dash→privacy = dashboard:web on the privacy team's job and account;\n" +
		"dash→other = dashboard:acc-scoped (limited to acc-scoped) on dashboard:web's job and account; the others on the privacy team's job.\n" +
		"401 no valid credential, 403 role or scope not allowed, 404 on a job route for dash→… = hidden (answered as for no such job);\n" +
		"other codes: let in, answered on the merits (409: the job's state does not allow it; 404 dead letter 1 does not exist).")
	return b.String()
}
