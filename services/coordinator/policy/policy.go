// Package policy is the retention schedule: a YAML file that says, per data
// category, which stages an erasure runs, when, with which worker action,
// and on what legal basis any delay rests. It parses and validates the file
// (every problem named by its line), plans a job's stages from it, and
// fingerprints it so that a job can record the exact policy it started
// with. It holds no I/O beyond Load; README.md documents the schema.
package policy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// Origins of an erasure, as jobs.Origin names them.
const (
	OriginDashboard = "dashboard"
	OriginAPI       = "api"
)

// Origins lists every origin the grace table must cover.
var Origins = []string{OriginDashboard, OriginAPI}

// MaxGrace bounds a grace period: a request must still be erasable within
// one calendar month (GDPR Art. 12(3)), and the shortest month has 28 days.
const MaxGrace = 28 * Day

// Anchors a calendar rule can be reckoned from.
const (
	// AnchorInvoiceIssued is the latest issue date among the invoices the
	// billing worker kept (pseudonymised) for the account.
	AnchorInvoiceIssued = "invoice_issued"
)

// actions lists the actions each category's worker runs; anchors lists the
// run-time dates each category's worker can supply for calendar rules.
var (
	actions = map[string][]string{
		erasurev1.CategoryContacts: {"delete"},
		erasurev1.CategoryLogs:     {"delete"},
		erasurev1.CategoryBilling:  {"pseudonymise", "delete_retained"},
		erasurev1.CategoryBackups:  {"suppress", "verify_rotated"},
	}
	anchors = map[string][]string{
		erasurev1.CategoryBilling: {AnchorInvoiceIssued},
	}
)

// Actions returns the actions the category's worker runs, or nil for an
// unknown category.
func Actions(category string) []string { return slices.Clone(actions[category]) }

// ErrInvalid is wrapped by every problem Parse, Validate and Plan report
// about the policy itself.
var ErrInvalid = errors.New("invalid retention policy")

// ErrUnknownOrigin is returned by Plan and Grace for an origin the policy
// has no grace period for.
var ErrUnknownOrigin = errors.New("unknown origin")

// Policy is a parsed retention schedule.
type Policy struct {
	// Version is declared in the file (e.g. "2026-11-29.1"); jobs record it
	// with the Fingerprint.
	Version string
	// Grace is the delay before the first stage, per origin. During a
	// dashboard-initiated deletion's grace period the customer can undo it.
	Grace map[string]time.Duration
	// Categories in the order declared: Plan keeps it where dependencies
	// allow.
	Categories []Category

	lines policyLines
}

type policyLines struct {
	version, grace, categories int
	graceKeys                  map[string]int
}

// Category is one data category and its stages, run in the order listed.
type Category struct {
	Name   string
	Stages []Stage

	line, nameLine int
}

// Stage is one step of a category's erasure: one task per job.
type Stage struct {
	// Name identifies the stage within its category; with the category it
	// is the task's key (category/stage) and part of its message id.
	Name string
	// Action is what the category's worker runs.
	Action string
	When   When
	// LegalBasis justifies the stage; required when it is delayed.
	LegalBasis string
	// DependsOn lists stages of other categories (or earlier ones of its
	// own) that must succeed first, in addition to the previous stage of
	// its own category.
	DependsOn []StageRef

	lines stageLines
}

type stageLines struct {
	stage, name, action, after, legalBasis int
	calendar, anchor, plusYears, zone      int
	deps                                   []int
	// badWhen is set when after or calendar could not be decoded (already
	// reported), so that Validate does not report it missing as well.
	badWhen bool
}

// When says when a stage is due: After a fixed delay, or by a Calendar
// rule. Exactly one is set; the zero When is "at once".
type When struct {
	// After is the delay from the erasure's start plus its grace period.
	After time.Duration
	// Calendar, when set, dates the stage by a date the worker supplies at
	// run time.
	Calendar *CalendarRule
}

// Delayed reports whether the stage waits beyond the grace period.
func (w When) Delayed() bool { return w.After > 0 || w.Calendar != nil }

// CalendarRule dates a stage at the end of the calendar year that holds a
// run-time date (the anchor), plus whole years: due at 00:00 on 1 January
// of year(anchor) + PlusYears + 1, in Zone. For invoices issued in 2017
// and kept 8 years: retained until 31 December 2025, due 1 January 2026.
type CalendarRule struct {
	// EndOfYearOf names the anchor (AnchorInvoiceIssued).
	EndOfYearOf string
	PlusYears   int
	// Zone is the IANA time zone in which the year ends (Europe/Berlin for
	// German retention law).
	Zone string
}

// Due returns when the rule's stage is due for an anchor date: the first
// instant after the retention period that began at the end of the
// anchor's year.
func (r CalendarRule) Due(anchor time.Time) (time.Time, error) {
	loc, err := loadZone(r.Zone)
	if err != nil {
		return time.Time{}, err
	}
	y := anchor.In(loc).Year()
	return time.Date(y+r.PlusYears+1, time.January, 1, 0, 0, 0, 0, loc).UTC(), nil
}

func loadZone(name string) (*time.Location, error) {
	// "Local" would make the schedule depend on the machine; "" means UTC
	// to time.LoadLocation, which the schedule should say explicitly.
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%w: zone %q: name an IANA zone such as Europe/Berlin or UTC", ErrInvalid, name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown zone %q", ErrInvalid, name)
	}
	return loc, nil
}

// StageRef names a stage: category/stage.
type StageRef struct {
	Category string
	Stage    string
}

func (r StageRef) String() string { return r.Category + "/" + r.Stage }

// ParseStageRef reads "category/stage".
func ParseStageRef(s string) (StageRef, error) {
	c, st, ok := strings.Cut(s, "/")
	if !ok || c == "" || st == "" || strings.Contains(st, "/") {
		return StageRef{}, fmt.Errorf("%w: stage reference %q is not category/stage", ErrInvalid, s)
	}
	return StageRef{Category: c, Stage: st}, nil
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the shipped default policy file.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Default returns the shipped default policy (default.yaml), parsed anew so
// that the caller may change it. It panics if the shipped file is invalid,
// which the package's tests rule out.
func Default() *Policy {
	p, err := Parse(defaultYAML)
	if err != nil {
		panic("shipped default retention policy: " + err.Error())
	}
	return p
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read retention policy: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("retention policy %s: %w", path, err)
	}
	return p, nil
}

// GraceFor returns the grace period of an origin, or an error wrapping
// ErrUnknownOrigin.
func (p *Policy) GraceFor(origin string) (time.Duration, error) {
	g, ok := p.Grace[origin]
	if !ok {
		return 0, fmt.Errorf("%w %q: the policy has no grace period for it", ErrUnknownOrigin, origin)
	}
	return g, nil
}

// canonical is the form that Canonical writes and Fingerprint hashes: no
// comments, no positions, maps in key order, durations in their canonical
// unit, dependencies as written (not the implicit ones).
type canonical struct {
	Version    string              `json:"version"`
	Grace      map[string]string   `json:"grace"`
	Categories []canonicalCategory `json:"categories"`
}

type canonicalCategory struct {
	Name   string           `json:"name"`
	Stages []canonicalStage `json:"stages"`
}

type canonicalStage struct {
	Name       string             `json:"name"`
	Action     string             `json:"action"`
	After      *string            `json:"after,omitempty"`
	Calendar   *canonicalCalendar `json:"calendar,omitempty"`
	LegalBasis string             `json:"legal_basis,omitempty"`
	DependsOn  []string           `json:"depends_on,omitempty"`
}

type canonicalCalendar struct {
	EndOfYearOf string `json:"end_of_year_of"`
	PlusYears   int    `json:"plus_years"`
	Zone        string `json:"zone"`
}

// Canonical returns the policy in canonical form: indented JSON, which is
// YAML too, so Parse reads it back to an equal policy. Two files that
// differ only in comments, layout, quoting or units ("72h" or "3d")
// have the same canonical form.
func (p *Policy) Canonical() []byte {
	c := canonical{Version: p.Version, Grace: map[string]string{}, Categories: []canonicalCategory{}}
	for o, d := range p.Grace {
		c.Grace[o] = FormatDuration(d)
	}
	for _, cat := range p.Categories {
		cc := canonicalCategory{Name: cat.Name, Stages: []canonicalStage{}}
		for _, s := range cat.Stages {
			cs := canonicalStage{Name: s.Name, Action: s.Action, LegalBasis: s.LegalBasis}
			if r := s.When.Calendar; r != nil {
				cs.Calendar = &canonicalCalendar{EndOfYearOf: r.EndOfYearOf, PlusYears: r.PlusYears, Zone: r.Zone}
			} else {
				a := FormatDuration(s.When.After)
				cs.After = &a
			}
			for _, d := range s.DependsOn {
				cs.DependsOn = append(cs.DependsOn, d.String())
			}
			cc.Stages = append(cc.Stages, cs)
		}
		c.Categories = append(c.Categories, cc)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		// Cannot happen: strings, ints, slices and string maps only.
		panic("encode canonical retention policy: " + err.Error())
	}
	return buf.Bytes()
}

// Fingerprint is "sha256:" and the hex SHA-256 of Canonical. A job records
// it with Version: the version is what people read, the fingerprint proves
// which schedule it was (two files declaring one version can differ).
func (p *Policy) Fingerprint() string {
	return fingerprint(p.Canonical())
}

// Restrict returns a copy of the policy with only the named categories,
// dropping dependencies on the others (a development set-up that runs
// fewer workers). The copy has its own fingerprint.
func (p *Policy) Restrict(categories []string) *Policy {
	out := &Policy{Version: p.Version, Grace: map[string]time.Duration{}, lines: p.lines}
	for k, v := range p.Grace {
		out.Grace[k] = v
	}
	for _, c := range p.Categories {
		if !slices.Contains(categories, c.Name) {
			continue
		}
		nc := c
		nc.Stages = nil
		for _, s := range c.Stages {
			ns := s
			ns.DependsOn = nil
			for _, d := range s.DependsOn {
				if slices.Contains(categories, d.Category) {
					ns.DependsOn = append(ns.DependsOn, d)
				}
			}
			nc.Stages = append(nc.Stages, ns)
		}
		out.Categories = append(out.Categories, nc)
	}
	return out
}
