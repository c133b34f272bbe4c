package policy

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// LineError is one problem of a policy file, at the line (and column, when
// known) it names; Line is 0 for a policy built in Go rather than parsed.
// It matches ErrInvalid with errors.Is.
type LineError struct {
	Line, Column int
	Msg          string
}

func (e *LineError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Is makes every LineError match ErrInvalid.
func (e *LineError) Is(target error) bool { return target == ErrInvalid }

// joinSorted joins problems sorted by line, dropping repeats.
func joinSorted(errs []error) error {
	line := func(e error) int {
		var le *LineError
		if errors.As(e, &le) {
			return le.Line
		}
		return 0
	}
	// Stable: on one line, shape problems (found first) come before the
	// problems of meaning they may cause.
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(line(a), line(b)) })
	seen := map[string]bool{}
	errs = slices.DeleteFunc(errs, func(e error) bool {
		dup := seen[e.Error()]
		seen[e.Error()] = true
		return dup
	})
	return errors.Join(errs...)
}

var (
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	nameRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
)

// MaxStages bounds a category's stages: a job has one task per stage.
const MaxStages = 16

// MaxPlusYears bounds a calendar rule's years.
const MaxPlusYears = 100

// MaxLegalBasis bounds a legal basis's length in bytes.
const MaxLegalBasis = 1000

// Validate checks the policy's meaning; Parse calls it. The error, when
// not nil, wraps ErrInvalid and joins every problem (each a *LineError),
// sorted by line:
//
//   - version missing or not [A-Za-z0-9._-], up to 64 characters;
//   - grace for an unknown origin, a known origin without grace, a grace
//     that is negative, not whole seconds, or MaxGrace or longer;
//   - no categories, an unknown or repeated category, one without stages;
//   - a stage name that is not [a-z][a-z0-9_]*, repeated in its category;
//   - an action the category's worker does not run (see Actions);
//   - neither or both of after and calendar; after negative, not whole
//     seconds or longer than MaxAfter; a calendar rule with an anchor the
//     category cannot supply, plus_years outside 0..MaxPlusYears, or a
//     zone that is not an IANA zone;
//   - a delayed stage (after > 0 or calendar) without a legal basis, or a
//     legal basis longer than MaxLegalBasis or with control characters;
//   - a dependency on an unknown stage, on itself, on a later stage of its
//     own category, listed twice; dependency cycles.
func (p *Policy) Validate() error {
	if errs := p.problems(); len(errs) > 0 {
		return joinSorted(errs)
	}
	return nil
}

type checker struct{ errs []error }

func (c *checker) fail(line int, format string, args ...any) {
	c.errs = append(c.errs, &LineError{Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *Policy) problems() []error {
	c := &checker{}
	l := p.lines
	if p.Version == "" {
		c.fail(l.version, "version missing (declare one, e.g. version: \"2026-11-29.1\")")
	} else if !versionRE.MatchString(p.Version) {
		c.fail(l.version, "version %q: want letters, digits, '.', '_' or '-', up to 64 characters", p.Version)
	}
	p.checkGrace(c)
	if len(p.Categories) == 0 {
		c.fail(l.categories, "no categories")
	}
	stages := map[StageRef]stagePos{}
	seenCat := map[string]int{}
	for ci, cat := range p.Categories {
		known := actions[cat.Name] != nil
		switch {
		case cat.Name == "":
			c.fail(cat.line, "category without a name")
		case !known:
			c.fail(cat.nameLine, "unknown category %q (want %s)", cat.Name, strings.Join(knownCategories(), ", "))
		}
		if prev, dup := seenCat[cat.Name]; dup && cat.Name != "" {
			c.fail(cat.nameLine, "category %s repeated (first on line %d)", cat.Name, prev)
		} else {
			seenCat[cat.Name] = cat.nameLine
		}
		switch {
		case len(cat.Stages) == 0:
			c.fail(cat.nameLine, "category %s has no stages", cat.label())
		case len(cat.Stages) > MaxStages:
			c.fail(cat.nameLine, "category %s has more than %d stages", cat.label(), MaxStages)
		}
		seenStage := map[string]int{}
		for si, s := range cat.Stages {
			ref := StageRef{cat.Name, s.Name}
			switch {
			case s.Name == "":
				c.fail(s.lines.stage, "stage of %s without a name", cat.label())
			case !nameRE.MatchString(s.Name):
				c.fail(s.lines.name, "stage name %q: want lower-case letters, digits and '_', starting with a letter, up to 32 characters", s.Name)
			}
			if prev, dup := seenStage[s.Name]; dup && s.Name != "" {
				c.fail(s.lines.name, "stage %s repeated (first on line %d)", ref, prev)
			} else {
				seenStage[s.Name] = s.lines.name
				if _, taken := stages[ref]; !taken {
					stages[ref] = stagePos{cat: ci, stage: si}
				}
			}
			if known {
				p.checkStage(c, cat.Name, s)
			}
		}
	}
	p.checkDependencies(c, stages)
	return c.errs
}

func knownCategories() []string {
	var out []string
	for k := range actions {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (p *Policy) checkGrace(c *checker) {
	if p.Grace == nil {
		c.fail(p.lines.grace, "grace missing (give every origin a grace period: %s)", strings.Join(Origins, ", "))
		return
	}
	var origins []string
	for o := range p.Grace {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	for _, o := range origins {
		line := p.lines.graceKeys[o]
		if line == 0 {
			line = p.lines.grace
		}
		g := p.Grace[o]
		switch {
		case !slices.Contains(Origins, o):
			c.fail(line, "grace for unknown origin %q (want %s)", o, strings.Join(Origins, ", "))
		case g < 0:
			c.fail(line, "grace of %s is negative", o)
		case g%time.Second != 0:
			c.fail(line, "grace of %s is not a whole number of seconds", o)
		case g >= MaxGrace:
			c.fail(line, "grace of %s is %s: it must be shorter than %s, or a request made in February misses its one-month deadline (GDPR Art. 12(3)) before anything is erased", o, FormatDuration(g), FormatDuration(MaxGrace))
		}
	}
	for _, o := range Origins {
		if _, ok := p.Grace[o]; !ok {
			c.fail(p.lines.grace, "grace for origin %s missing (write 0 for none)", o)
		}
	}
}

func (p *Policy) checkStage(c *checker, cat string, s Stage) {
	l := s.lines
	ref := StageRef{cat, s.Name}
	switch {
	case s.Action == "":
		c.fail(l.action, "%s: action missing (%s runs %s)", ref, cat, strings.Join(actions[cat], ", "))
	case !slices.Contains(actions[cat], s.Action):
		c.fail(l.action, "%s: unknown action %q (%s runs %s)", ref, s.Action, cat, strings.Join(actions[cat], ", "))
	}
	if !l.badWhen {
		switch {
		case s.When.Calendar != nil && (l.after != 0 || s.When.After != 0):
			c.fail(l.calendar, "%s: both after and calendar given; a stage has one", ref)
		case s.When.Calendar == nil && l.after == 0 && l.stage != 0:
			c.fail(l.stage, "%s: when missing: give after (a duration, 0 for at once) or calendar", ref)
		case s.When.Calendar != nil:
			p.checkCalendar(c, cat, ref, *s.When.Calendar, l)
		case s.When.After < 0:
			c.fail(l.after, "%s: after is negative: a stage cannot run before the erasure starts", ref)
		case s.When.After%time.Second != 0:
			c.fail(l.after, "%s: after is not a whole number of seconds", ref)
		case s.When.After > MaxAfter:
			c.fail(l.after, "%s: after is longer than %s", ref, FormatDuration(MaxAfter))
		}
	}
	basis := strings.TrimSpace(s.LegalBasis)
	switch {
	case basis == "":
		if s.When.Delayed() {
			c.fail(l.stage, "%s: legal_basis missing: a delayed stage must say what law allows the delay", ref)
		}
	case len(s.LegalBasis) > MaxLegalBasis:
		c.fail(l.legalBasis, "%s: legal_basis is longer than %d bytes", ref, MaxLegalBasis)
	case strings.ContainsFunc(s.LegalBasis, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }):
		c.fail(l.legalBasis, "%s: legal_basis contains control characters", ref)
	}
}

func (p *Policy) checkCalendar(c *checker, cat string, ref StageRef, r CalendarRule, l stageLines) {
	switch {
	case r.EndOfYearOf == "":
		c.fail(l.calendar, "%s: calendar: end_of_year_of missing", ref)
	case !slices.Contains(anchors[cat], r.EndOfYearOf):
		want := "none"
		if len(anchors[cat]) > 0 {
			want = strings.Join(anchors[cat], ", ")
		}
		c.fail(l.anchor, "%s: calendar: %s cannot supply the date %q (it supplies: %s)", ref, cat, r.EndOfYearOf, want)
	}
	if r.PlusYears < 0 || r.PlusYears > MaxPlusYears {
		c.fail(l.plusYears, "%s: calendar: plus_years %d outside 0..%d", ref, r.PlusYears, MaxPlusYears)
	}
	if _, err := loadZone(r.Zone); err != nil {
		c.fail(l.zone, "%s: calendar: zone %q: want an IANA zone such as Europe/Berlin or UTC", ref, r.Zone)
	}
}

// stagePos locates a stage: indexes into Categories and its Stages.
type stagePos struct{ cat, stage int }

// edge is a dependency: from waits for to. line is the depends_on entry's
// line, or 0 for the implicit dependency on the previous stage.
type edge struct {
	to   stagePos
	line int
}

// deps returns the dependencies of every stage that exists: the previous
// stage of its category, then its depends_on entries that name a known,
// different stage, each once.
func (p *Policy) deps(stages map[StageRef]stagePos) map[stagePos][]edge {
	out := map[stagePos][]edge{}
	for ref, at := range stages {
		var es []edge
		if at.stage > 0 {
			prev := p.Categories[at.cat].Stages[at.stage-1].Name
			if pa, ok := stages[StageRef{ref.Category, prev}]; ok && pa != at {
				es = append(es, edge{to: pa})
			}
		}
		s := p.Categories[at.cat].Stages[at.stage]
		for i, d := range s.DependsOn {
			to, ok := stages[d]
			if !ok || to == at || slices.ContainsFunc(es, func(e edge) bool { return e.to == to }) {
				continue
			}
			es = append(es, edge{to: to, line: lineAt(s.lines.deps, i)})
		}
		out[at] = es
	}
	return out
}

func lineAt(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return 0
}

func (p *Policy) checkDependencies(c *checker, stages map[StageRef]stagePos) {
	for ci, cat := range p.Categories {
		for si, s := range cat.Stages {
			at, ok := stages[StageRef{cat.Name, s.Name}]
			if !ok || at != (stagePos{ci, si}) {
				continue // a repeat, already reported
			}
			ref := StageRef{cat.Name, s.Name}
			seen := map[StageRef]bool{}
			for i, d := range s.DependsOn {
				line := lineAt(s.lines.deps, i)
				to, known := stages[d]
				switch {
				case seen[d]:
					c.fail(line, "%s: depends on %s twice", ref, d)
				case d == ref:
					c.fail(line, "%s: depends on itself", ref)
				case !known:
					c.fail(line, "%s: depends on unknown stage %s", ref, d)
				case to.cat == ci && to.stage > si:
					c.fail(line, "%s: depends on %s, which comes later in its own category (a category's stages run in the order listed)", ref, d)
				}
				seen[d] = true
			}
		}
	}
	for _, cyc := range p.cycles(stages) {
		c.fail(cyc.line, "dependency cycle: %s", cyc.path)
	}
}

type cycle struct {
	line int
	path string
}

// cycles finds the strongly connected components of the dependency graph
// with more than one stage (Tarjan), each reported once at the first line
// of a depends_on entry inside it. Every such cycle has one: implicit
// dependencies alone only point backwards within a category.
func (p *Policy) cycles(stages map[StageRef]stagePos) []cycle {
	g := p.deps(stages)
	var nodes []stagePos
	for _, at := range stages {
		nodes = append(nodes, at)
	}
	slices.SortFunc(nodes, comparePos)
	index := map[stagePos]int{}
	low := map[stagePos]int{}
	onStack := map[stagePos]bool{}
	var stack []stagePos
	var out []cycle
	next := 0
	var visit func(v stagePos)
	visit = func(v stagePos) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, e := range g[v] {
			if _, seen := index[e.to]; !seen {
				visit(e.to)
				low[v] = min(low[v], low[e.to])
			} else if onStack[e.to] {
				low[v] = min(low[v], index[e.to])
			}
		}
		if low[v] != index[v] {
			return
		}
		var comp []stagePos
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			comp = append(comp, w)
			if w == v {
				break
			}
		}
		if len(comp) < 2 {
			return
		}
		slices.SortFunc(comp, comparePos)
		in := map[stagePos]bool{}
		for _, w := range comp {
			in[w] = true
		}
		line := 0
		var names []string
		for _, w := range comp {
			names = append(names, p.ref(w).String())
			for _, e := range g[w] {
				if in[e.to] && e.line > 0 && (line == 0 || e.line < line) {
					line = e.line
				}
			}
		}
		out = append(out, cycle{line: line, path: strings.Join(names, ", ") + " wait for each other"})
	}
	for _, v := range nodes {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	return out
}

func comparePos(a, b stagePos) int {
	return cmp.Or(cmp.Compare(a.cat, b.cat), cmp.Compare(a.stage, b.stage))
}

func (p *Policy) ref(at stagePos) StageRef {
	return StageRef{p.Categories[at.cat].Name, p.Categories[at.cat].Stages[at.stage].Name}
}
