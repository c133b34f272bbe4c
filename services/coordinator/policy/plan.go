package policy

import (
	"fmt"
	"slices"
	"time"
)

// PlannedStage is one stage of a job's plan: the coordinator makes one task
// of it.
type PlannedStage struct {
	Category string
	Stage    string
	Action   string
	// Due is start + grace + after. It is zero for a calendar stage, whose
	// date the worker's anchor decides (see DueFor).
	Due time.Time
	// Calendar is set for a calendar stage.
	Calendar *CalendarRule
	// NotBefore is start + grace: no stage runs earlier, whatever its rule.
	NotBefore time.Time
	// DependsOn lists every stage that must succeed first: the previous
	// stage of its category, then its declared dependencies. Each comes
	// earlier in the plan.
	DependsOn  []StageRef
	LegalBasis string
}

// Key names the stage: category/stage.
func (s PlannedStage) Key() StageRef { return StageRef{s.Category, s.Stage} }

// DueFor returns when a calendar stage is due for the anchor date its
// worker supplied (for billing: the latest issue date among the invoices
// it kept), never before NotBefore. Without an anchor (ok false: nothing
// was kept) the stage is due at NotBefore and finds nothing to do. For a
// stage dated by after, it returns Due.
func (s PlannedStage) DueFor(anchor time.Time, ok bool) (time.Time, error) {
	if s.Calendar == nil {
		return s.Due, nil
	}
	if !ok {
		return s.NotBefore, nil
	}
	due, err := s.Calendar.Due(anchor)
	if err != nil {
		return time.Time{}, fmt.Errorf("date %s: %w", s.Key(), err)
	}
	if due.Before(s.NotBefore) {
		return s.NotBefore, nil
	}
	return due, nil
}

// Plan lays out the stages of an erasure requested by origin at start
// (times in UTC): every stage once, each after the stages it depends on,
// otherwise in the order the policy lists them. It returns an error
// wrapping ErrUnknownOrigin for an origin without a grace period, or
// Validate's error for an invalid policy.
func (p *Policy) Plan(origin string, start time.Time) ([]PlannedStage, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	grace, err := p.GraceFor(origin)
	if err != nil {
		return nil, err
	}
	start = start.UTC()
	notBefore := start.Add(grace)

	stages := map[StageRef]stagePos{}
	var nodes []stagePos
	for ci, cat := range p.Categories {
		for si, s := range cat.Stages {
			at := stagePos{ci, si}
			stages[StageRef{cat.Name, s.Name}] = at
			nodes = append(nodes, at)
		}
	}
	g := p.deps(stages)

	// Kahn's algorithm, always taking the first ready stage in file order,
	// so that the plan reads like the file wherever dependencies allow.
	planned := map[stagePos]bool{}
	out := make([]PlannedStage, 0, len(nodes))
	for len(out) < len(nodes) {
		i := slices.IndexFunc(nodes, func(v stagePos) bool {
			if planned[v] {
				return false
			}
			for _, e := range g[v] {
				if !planned[e.to] {
					return false
				}
			}
			return true
		})
		if i < 0 {
			// Validate rules cycles out.
			return nil, fmt.Errorf("%w: dependency cycle", ErrInvalid)
		}
		v := nodes[i]
		planned[v] = true
		cat := p.Categories[v.cat]
		s := cat.Stages[v.stage]
		ps := PlannedStage{
			Category:   cat.Name,
			Stage:      s.Name,
			Action:     s.Action,
			NotBefore:  notBefore,
			LegalBasis: s.LegalBasis,
		}
		if s.When.Calendar != nil {
			r := *s.When.Calendar
			ps.Calendar = &r
		} else {
			ps.Due = notBefore.Add(s.When.After)
		}
		for _, e := range g[v] {
			ps.DependsOn = append(ps.DependsOn, p.ref(e.to))
		}
		out = append(out, ps)
	}
	return out, nil
}
