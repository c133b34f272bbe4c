package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// minimal is a small valid policy; bad files below are variations of it.
const minimal = `version: "1"
grace:
  dashboard: 14d
  api: 0
categories:
  - name: backups
    stages:
      - name: erase
        action: suppress
        after: 0
  - name: contacts
    stages:
      - name: erase
        action: delete
        after: 0
        depends_on: [backups/erase]
`

func TestParseAcceptsGoodFiles(t *testing.T) {
	tests := []struct {
		name string
		give string
		// wantSame, when set, is a file with the same canonical form.
		wantSame string
	}{
		{name: "minimal", give: minimal},
		{name: "shipped default", give: string(defaultYAML)},
		{
			name: "flow style and other units",
			give: `{version: "1", grace: {api: 0s, dashboard: 336h},
categories: [{name: backups, stages: [{name: erase, action: suppress, after: 0m}]},
  {name: contacts, stages: [{name: erase, action: delete, after: 0, depends_on: [backups/erase]}]}]}`,
			wantSame: minimal,
		},
		{
			name:     "comments and quoting do not matter",
			give:     "# a comment\n" + strings.ReplaceAll(minimal, "action: delete", "action: 'delete' # trailing"),
			wantSame: minimal,
		},
		{
			name: "dependencies on categories declared later",
			give: `version: v2
grace: {dashboard: 0, api: 0}
categories:
  - name: logs
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [backups/erase]}
  - name: backups
    stages:
      - {name: erase, action: suppress, after: 0}
      - name: verify_rotated
        action: verify_rotated
        after: 35d
        legal_basis: backup window
        depends_on: [logs/erase]
`,
		},
		{
			name:     "canonical JSON form of the default",
			give:     string(Default().Canonical()),
			wantSame: string(defaultYAML),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.give))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("Validate after Parse: %v", err)
			}
			if tt.wantSame != "" {
				same, err := Parse([]byte(tt.wantSame))
				if err != nil {
					t.Fatalf("Parse(wantSame): %v", err)
				}
				if got, want := p.Fingerprint(), same.Fingerprint(); got != want {
					t.Errorf("fingerprint %s, want %s\ncanonical:\n%s\nwant:\n%s", got, want, p.Canonical(), same.Canonical())
				}
			}
		})
	}
}

func TestParseRejectsBadFiles(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string // every line of the error, in order
	}{
		{
			name: "empty",
			give: "",
			want: []string{"line 1: policy file is empty"},
		},
		{
			name: "not YAML",
			give: "version: \"1\nfoo",
			want: []string{"line 2: YAML: found unexpected end of stream"},
		},
		{
			name: "two documents",
			give: minimal + "---\nversion: 2\n",
			want: []string{"line 17: policy file holds more than one YAML document"},
		},
		{
			name: "top level is a list",
			give: "- a\n- b\n",
			want: []string{
				"line 1: policy must be a mapping",
				"line 1: version missing (declare one, e.g. version: \"2026-11-29.1\")",
				"line 1: grace missing (give every origin a grace period: dashboard, api)",
				"line 1: no categories",
			},
		},
		{
			name: "unknown and repeated keys",
			give: strings.Replace(minimal, "        after: 0\n  - name: contacts", "        after: 0\n        afterr: 1d\n        action: delete\n  - name: contacts", 1) + "owner: privacy\n",
			want: []string{
				`line 11: stage of backups: unknown key "afterr" (want name, action, after, calendar, legal_basis, depends_on)`,
				`line 12: stage of backups: key "action" repeated (first on line 9)`,
				`line 19: policy: unknown key "owner" (want version, grace, categories)`,
			},
		},
		{
			name: "unknown category and action",
			give: strings.Replace(strings.Replace(minimal, "name: contacts", "name: contact", 1), "action: suppress", "action: shred", 1),
			want: []string{
				`line 9: backups/erase: unknown action "shred" (backups runs suppress, verify_rotated)`,
				`line 11: unknown category "contact" (want backups, billing, contacts, logs)`,
			},
		},
		{
			name: "action of another category",
			give: strings.Replace(minimal, "action: delete", "action: pseudonymise", 1),
			want: []string{`line 14: contacts/erase: unknown action "pseudonymise" (contacts runs delete)`},
		},
		{
			name: "repeated stage and category",
			give: minimal + `  - name: contacts
    stages:
      - {name: erase, action: delete, after: 0}
      - {name: erase, action: delete, after: 1h, legal_basis: again}
`,
			want: []string{
				"line 17: category contacts repeated (first on line 11)",
				"line 20: stage contacts/erase repeated (first on line 19)",
			},
		},
		{
			name: "dependencies: unknown, self, later, twice, malformed",
			give: `version: "1"
grace: {dashboard: 14d, api: 0}
categories:
  - name: backups
    stages:
      - name: erase
        action: suppress
        after: 0
        depends_on:
          - backups/verify_rotated
          - backups/erase
          - billing/erase
          - backups
      - name: verify_rotated
        action: verify_rotated
        after: 35d
        legal_basis: backup window
        depends_on: [contacts/erase, contacts/erase]
`,
			want: []string{
				"line 10: backups/erase: depends on backups/verify_rotated, which comes later in its own category (a category's stages run in the order listed)",
				"line 10: dependency cycle: backups/erase, backups/verify_rotated wait for each other",
				"line 11: backups/erase: depends on itself",
				"line 12: backups/erase: depends on unknown stage billing/erase",
				`line 13: backups/erase: depends_on "backups": want category/stage, e.g. backups/erase`,
				"line 18: backups/verify_rotated: depends on unknown stage contacts/erase",
				"line 18: backups/verify_rotated: depends on contacts/erase twice",
			},
		},
		{
			name: "repeated empty category; a long dependency chain is no cycle",
			give: `version: "1"
grace: {dashboard: 14d, api: 0}
categories:
  - name: contacts
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [logs/erase]}
  - name: logs
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [backups/erase]}
  - name: backups
    stages:
      - {name: erase, action: suppress, after: 0}
      - name: verify_rotated
        action: verify_rotated
        after: 35d
        legal_basis: backup window
  - name: billing
    stages:
      - {name: erase, action: pseudonymise, after: 0, depends_on: [backups/verify_rotated]}
      - name: delete_retained
        action: delete_retained
        after: 0
        depends_on: [contacts/erase]
  - name: backups
    stages: []
`,
			want: []string{
				"line 24: category backups repeated (first on line 10)",
				"line 24: category backups has no stages",
			},
		},
		{
			name: "real cross-category cycle",
			give: `version: "1"
grace: {dashboard: 14d, api: 0}
categories:
  - name: contacts
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [logs/erase]}
  - name: logs
    stages:
      - {name: erase, action: delete, after: 0, depends_on: [billing/delete_retained]}
  - name: billing
    stages:
      - {name: erase, action: pseudonymise, after: 0, depends_on: [contacts/erase]}
      - {name: delete_retained, action: delete_retained, after: 0}
`,
			want: []string{
				"line 6: dependency cycle: contacts/erase, logs/erase, billing/erase, billing/delete_retained wait for each other",
			},
		},
		{
			name: "durations: negative, years, sub-unit, missing, both",
			give: `version: "1"
grace: {dashboard: 14d, api: 0}
categories:
  - name: backups
    stages:
      - {name: erase, action: suppress, after: -1h}
      - name: verify_rotated
        action: verify_rotated
        after: 1y
        legal_basis: x
  - name: billing
    stages:
      - name: erase
        action: pseudonymise
      - name: delete_retained
        action: delete_retained
        after: 1d
        calendar: {end_of_year_of: invoice_issued, plus_years: 8, zone: Europe/Berlin}
        legal_basis: AO
  - name: logs
    stages:
      - {name: erase, action: delete, after: ~}
`,
			want: []string{
				`line 6: backups/erase: after: negative duration "-1h": a stage cannot run before the erasure starts`,
				`line 9: backups/verify_rotated: after: duration "1y": months and years have no fixed length; write days (e.g. 365d) or use a calendar rule`,
				"line 13: billing/erase: when missing: give after (a duration, 0 for at once) or calendar",
				"line 18: billing/delete_retained: both after and calendar given; a stage has one",
				"line 22: value missing",
			},
		},
		{
			name: "missing legal basis on delayed stages",
			give: `version: "1"
grace: {dashboard: 14d, api: 0}
categories:
  - name: backups
    stages:
      - {name: erase, action: suppress, after: 0}
      - name: verify_rotated
        action: verify_rotated
        after: 35d
  - name: billing
    stages:
      - {name: erase, action: pseudonymise, after: 0}
      - name: delete_retained
        action: delete_retained
        legal_basis: "  "
        calendar:
          end_of_year_of: invoice_issued
          plus_years: 8
          zone: Europe/Berlin
`,
			want: []string{
				"line 7: backups/verify_rotated: legal_basis missing: a delayed stage must say what law allows the delay",
				"line 13: billing/delete_retained: legal_basis missing: a delayed stage must say what law allows the delay",
			},
		},
		{
			name: "calendar rule problems",
			give: `version: "1"
grace: {dashboard: 14d, api: 0}
categories:
  - name: billing
    stages:
      - {name: erase, action: pseudonymise, after: 0}
      - name: delete_retained
        action: delete_retained
        legal_basis: AO §147(3)
        calendar:
          end_of_year_of: invoice_paid
          plus_years: 101
          zone: Mars/Olympus
  - name: backups
    stages:
      - name: erase
        action: suppress
        legal_basis: x
        calendar: {end_of_year_of: invoice_issued, plus_years: 8y, zone: Local}
  - name: logs
    stages:
      - name: erase
        action: delete
        legal_basis: x
        calendar: {plus_years: 1, zone: UTC, every: year}
`,
			want: []string{
				`line 11: billing/delete_retained: calendar: billing cannot supply the date "invoice_paid" (it supplies: invoice_issued)`,
				"line 12: billing/delete_retained: calendar: plus_years 101 outside 0..100",
				`line 13: billing/delete_retained: calendar: zone "Mars/Olympus": want an IANA zone such as Europe/Berlin or UTC`,
				`line 19: backups/erase: calendar: plus_years "8y": want a whole number of years, e.g. 8`,
				`line 25: logs/erase calendar: unknown key "every" (want end_of_year_of, plus_years, zone)`,
				"line 25: logs/erase: calendar: end_of_year_of missing",
			},
		},
		{
			name: "grace: unknown origin, missing origin, too long",
			give: strings.Replace(minimal, "  dashboard: 14d\n  api: 0\n", "  dashboard: 30d\n  web: 1d\n", 1),
			want: []string{
				"line 2: grace for origin api missing (write 0 for none)",
				"line 3: grace of dashboard is 30d: it must be shorter than 28d, or a request made in February misses its one-month deadline (GDPR Art. 12(3)) before anything is erased",
				`line 4: grace for unknown origin "web" (want dashboard, api)`,
			},
		},
		{
			name: "bad version and names, wrong kinds, aliases, tags",
			give: `version: "2026 11"
grace: &g {dashboard: 14d, api: 0}
categories:
  - name: backups
    stages:
      - {name: Erase!, action: suppress, after: 0, legal_basis: [a, b]}
  - name: contacts
    stages: {name: erase}
  - name: logs
    stages:
      - {name: erase, action: !!binary ZGVsZXRl, after: 0}
`,
			want: []string{
				`line 1: version "2026 11": want letters, digits, '.', '_' or '-', up to 64 characters`,
				"line 2: grace: anchors and aliases are not allowed",
				"line 2: grace for origin dashboard missing (write 0 for none)",
				"line 2: grace for origin api missing (write 0 for none)",
				"line 6: backups/Erase! legal_basis must be a single value",
				`line 6: stage name "Erase!": want lower-case letters, digits and '_', starting with a letter, up to 32 characters`,
				"line 7: category contacts has no stages",
				"line 8: stages of contacts must be a list",
				"line 11: tag !!binary is not allowed",
				"line 11: logs/erase: action missing (logs runs delete)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.give))
			if err == nil {
				t.Fatalf("Parse accepted the file: %s", p.Canonical())
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestValidateProgrammaticPolicy(t *testing.T) {
	// Built in Go, not parsed: problems carry no line.
	p := &Policy{
		Version: "go.1",
		Grace:   map[string]time.Duration{OriginDashboard: 0, OriginAPI: 0, "web": 0},
		Categories: []Category{
			{Name: "backups", Stages: []Stage{
				{Name: "erase", Action: "suppress"},
				{Name: "verify_rotated", Action: "verify_rotated", When: When{After: -time.Hour}, LegalBasis: "window"},
			}},
			{Name: "billing", Stages: []Stage{
				{Name: "erase", Action: "pseudonymise", DependsOn: []StageRef{{"backups", "erase"}}},
				{Name: "delete_retained", Action: "delete_retained", When: When{After: time.Hour, Calendar: &CalendarRule{EndOfYearOf: AnchorInvoiceIssued, PlusYears: 8, Zone: "UTC"}}},
				{Name: "later", Action: "delete_retained", When: When{Calendar: &CalendarRule{EndOfYearOf: AnchorInvoiceIssued, PlusYears: 8, Zone: "UTC"}}},
			}},
		},
	}
	err := p.Validate()
	want := strings.Join([]string{
		`grace for unknown origin "web" (want dashboard, api)`,
		"backups/verify_rotated: after is negative: a stage cannot run before the erasure starts",
		"billing/delete_retained: both after and calendar given; a stage has one",
		"billing/delete_retained: legal_basis missing: a delayed stage must say what law allows the delay",
		"billing/later: legal_basis missing: a delayed stage must say what law allows the delay",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v\nwant:\n%s", err, want)
	}
	if _, err := p.Plan(OriginAPI, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("Plan of an invalid policy: %v, want ErrInvalid", err)
	}
}

func TestFingerprint(t *testing.T) {
	base := Default()
	// Pinned so that a change to default.yaml is a deliberate one: change
	// the version with it, then this value.
	const wantVersion = "2026-11-29.1"
	const wantFingerprint = "sha256:c35e838c13986d483538e373446816e68f0a281466a717a73305a739129ad7a5"
	if base.Version != wantVersion || base.Fingerprint() != wantFingerprint {
		t.Errorf("default policy %s %s, want %s %s: did default.yaml change without a new version?",
			base.Version, base.Fingerprint(), wantVersion, wantFingerprint)
	}

	changed := func(edit func(string) string) string {
		p, err := Parse([]byte(edit(string(defaultYAML))))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return p.Fingerprint()
	}
	if got := changed(func(s string) string { return strings.ReplaceAll(s, "# ", "#  ") }); got != base.Fingerprint() {
		t.Errorf("a comment changed the fingerprint")
	}
	if got := changed(func(s string) string { return strings.Replace(s, "14d", "336h", 1) }); got != base.Fingerprint() {
		t.Errorf("an equal duration in other units changed the fingerprint")
	}
	for name, edit := range map[string]func(string) string{
		"version":     func(s string) string { return strings.Replace(s, "2026-11-29.1", "2026-11-29.2", 1) },
		"grace":       func(s string) string { return strings.Replace(s, "14d", "13d", 1) },
		"window":      func(s string) string { return strings.Replace(s, "after: 35d", "after: 36d", 1) },
		"years":       func(s string) string { return strings.Replace(s, "plus_years: 8", "plus_years: 10", 1) },
		"legal basis": func(s string) string { return strings.Replace(s, "GDPR Art. 17(1) and 12(3)\n", "GDPR Art. 17\n", 1) },
	} {
		if changed(edit) == base.Fingerprint() {
			t.Errorf("changing the %s kept the fingerprint", name)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(good, defaultYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good)
	if err != nil || p.Fingerprint() != Default().Fingerprint() {
		t.Fatalf("Load(default) = %v, %v", p, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nfoo: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "retention policy "+bad+": line 1: ") ||
		!strings.Contains(err.Error(), "\nline 2: policy: unknown key \"foo\"") {
		t.Errorf("Load(bad) = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}
