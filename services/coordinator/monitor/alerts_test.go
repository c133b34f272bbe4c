package monitor_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/coordinator/app"
	"github.com/lethe-privacy/lethe/services/coordinator/deadletter"
	"github.com/lethe-privacy/lethe/services/coordinator/dispatch"
	"github.com/lethe-privacy/lethe/services/coordinator/httpapi"
	"github.com/lethe-privacy/lethe/services/coordinator/ingress"
	"github.com/lethe-privacy/lethe/services/coordinator/monitor"
	"github.com/lethe-privacy/lethe/services/coordinator/reconcile"
	"github.com/lethe-privacy/lethe/services/coordinator/reports"
)

// Paths from this package to the files under test.
const (
	alertsPath  = "../../../deploy/prometheus/alerts.yml"
	runbookPath = "../../../docs/runbook.md"
	runbookURL  = "https://github.com/lethe-privacy/lethe/blob/main/docs/runbook.md#"
)

// ruleFile mirrors Prometheus' rule file format; decoding with KnownFields
// rejects any key Prometheus would not know (or that we do not use).
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// notYetRegistered lists metrics that alert rules may name before the code
// that registers them lands. Empty now: lethe_reconcile_actions_total and
// lethe_jobs_stuck, once listed here, are registered by package reconcile.
var notYetRegistered = map[string]bool{}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsPath, err)
	}
	if len(f.Groups) == 0 {
		t.Fatalf("%s has no groups", alertsPath)
	}
	return f
}

// runbookAnchors returns the GitHub anchors of docs/runbook.md's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	anchors := map[string]bool{}
	inCode := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		anchors[slug(strings.TrimLeft(line, "# "))] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return anchors
}

// slug is GitHub's heading anchor: lower case, punctuation other than '-'
// and '_' dropped, spaces turned into '-'.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

var alertName = regexp.MustCompile(`^Lethe[A-Z][A-Za-z]+$`)

func TestAlertRulesAreComplete(t *testing.T) {
	t.Parallel()
	f := loadRules(t)
	anchors := runbookAnchors(t)
	seen := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: every group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			name := r.Alert
			switch {
			case r.Record != "":
				t.Errorf("group %s: recording rule %s: this file holds alerts only", g.Name, r.Record)
				continue
			case !alertName.MatchString(name):
				t.Errorf("group %s: alert %q: want a name like LetheSomethingWrong", g.Name, name)
			case seen[name]:
				t.Errorf("alert %s is defined twice", name)
			}
			seen[name] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: empty expr", name)
			}
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v (every alert says how long it must hold; 0m for at once)", name, r.For, err)
			}
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: labels.severity %q: want warning or critical", name, sev)
			}
			for k := range r.Annotations {
				if k != "summary" && k != "description" && k != "runbook_url" {
					t.Errorf("%s: unknown annotation %q", name, k)
				}
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("%s: annotations.%s is missing", name, k)
				}
			}
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbookURL)
			switch {
			case !ok:
				t.Errorf("%s: runbook_url %q does not point into %s", name, url, runbookURL)
			case anchor != strings.ToLower(name):
				t.Errorf("%s: runbook_url anchor %q, want %q (a section headed with the alert's name)", name, anchor, strings.ToLower(name))
			case !anchors[anchor]:
				t.Errorf("%s: docs/runbook.md has no section #%s", name, anchor)
			}
		}
	}
	// Every alert section of the runbook belongs to an alert.
	for a := range anchors {
		if !strings.HasPrefix(a, "lethe") {
			continue
		}
		found := false
		for name := range seen {
			found = found || strings.ToLower(name) == a
		}
		if !found {
			t.Errorf("docs/runbook.md section #%s belongs to no alert in %s", a, alertsPath)
		}
	}
}

// recorder is a Registerer that also remembers the names of the metrics
// registered with it, vectors included (Describe lists them even before
// they have a child, unlike Gather).
type recorder struct {
	reg   *prometheus.Registry
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.reg.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// registeredMetrics builds every collector the coordinator and the worker
// runtime register, as app.Run and worker.Serve do, without connecting to
// anything: constructors only create and register their metrics.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	r := &recorder{reg: prometheus.NewPedanticRegistry(), names: map[string]bool{}}
	log := zap.NewNop()
	svc := app.NewService(nil, nil, nil, r)
	dispatch.New(nil, nil, nil, log, r, dispatch.Options{})
	reports.New(nil, svc, log, r, reports.Options{})
	ingress.New(nil, nil, svc, log, r)
	deadletter.New(nil, svc, log, r)
	reconcile.New(nil, nil, nil, log, r, reconcile.Options{})
	monitor.New(nil, nil, log, r, monitor.Options{})
	httpapi.NewHandler(svc, log, httpapi.Options{Registerer: r})
	worker.NewMetrics(r)
	return r.names
}

var metricName = regexp.MustCompile(`\blethe_[a-z0-9_]*[a-z0-9]\b`)

func TestAlertRulesUseRegisteredMetrics(t *testing.T) {
	t.Parallel()
	f := loadRules(t)
	registered := registeredMetrics(t)
	for _, want := range []string{"lethe_worker_tasks_total", "lethe_dead_letters", "lethe_reconcile_actions_total", "lethe_jobs_created_total"} {
		if !registered[want] {
			t.Fatalf("the registry built by this test lacks %s; it misses a component (have %v)", want, sortedNames(registered))
		}
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			for _, name := range metricName.FindAllString(r.Expr, -1) {
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if s, ok := strings.CutSuffix(name, suffix); ok && registered[s] {
						base = s
					}
				}
				if !registered[base] && !notYetRegistered[base] {
					t.Errorf("%s uses %s, which no coordinator or worker code registers (registered: %v)", r.Alert, name, sortedNames(registered))
				}
			}
		}
	}
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The paths above are relative to this package; fail clearly if it moves.
func TestPathsExist(t *testing.T) {
	t.Parallel()
	for _, p := range []string{alertsPath, runbookPath} {
		if _, err := os.Stat(filepath.Clean(p)); err != nil {
			t.Errorf("%v (this test expects to live in services/coordinator/monitor)", err)
		}
	}
}
