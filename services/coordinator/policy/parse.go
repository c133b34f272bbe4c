package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the policy file: a schedule is a few kilobytes.
const MaxFileSize = 1 << 20

// Parse decodes and validates a policy file. Decoding is strict: unknown
// keys, duplicate keys, anchors and aliases, tags other than YAML's own,
// and a second document are rejected. The error, when not nil, wraps
// ErrInvalid and joins every problem found (each a *LineError naming its
// line), sorted by line.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxFileSize {
		return nil, &LineError{Msg: fmt.Sprintf("policy file is larger than %d bytes", MaxFileSize)}
	}
	root, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	d := &decoder{}
	p := d.policy(root)
	if errs := append(d.problems, p.problems()...); len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	return p, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML reads exactly one YAML document into a node tree.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// The policy is trusted input, but a parser panic must not take the
		// coordinator down with a stack trace instead of an error.
		if r := recover(); r != nil {
			root, err = nil, &LineError{Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &LineError{Line: 1, Msg: "policy file is empty"}
		}
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &LineError{Line: line, Msg: "YAML: " + m[2]}
		}
		return nil, &LineError{Msg: err.Error()}
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if err != nil || line == 0 {
			line = 0
		}
		return nil, &LineError{Line: line, Msg: "policy file holds more than one YAML document"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &LineError{Line: 1, Msg: "policy file is empty"}
	}
	return doc.Content[0], nil
}

// decoder turns the node tree into a Policy, collecting shape problems
// (unknown or duplicate keys, wrong kinds, unreadable values); Validate
// checks the meaning.
type decoder struct {
	problems []error
}

func (d *decoder) fail(n *yaml.Node, format string, args ...any) {
	d.problems = append(d.problems, &LineError{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// fields checks that n is a mapping with string keys from allowed, each
// once, and returns the value node and key line of every key present:
// problems about a block value as a whole are reported at its key's line.
func (d *decoder) fields(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, map[string]int) {
	out, lines := map[string]*yaml.Node{}, map[string]int{}
	if !d.kind(n, yaml.MappingNode, what, "a mapping") {
		return out, lines
	}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !d.kind(k, yaml.ScalarNode, what+" key", "a plain key") || !d.plain(k) {
			continue
		}
		if prev, ok := keys[k.Value]; ok {
			d.fail(k, "%s: key %q repeated (first on line %d)", what, k.Value, prev.Line)
			continue
		}
		keys[k.Value] = k
		if !slices.Contains(allowed, k.Value) {
			d.fail(k, "%s: unknown key %q (want %s)", what, k.Value, strings.Join(allowed, ", "))
			continue
		}
		out[k.Value] = v
		lines[k.Value] = k.Line
	}
	return out, lines
}

// kind reports whether n is of kind k, recording a problem if not. Aliases
// are refused everywhere: a schedule has nothing to repeat that way, and
// expanding them is how small files become large.
func (d *decoder) kind(n *yaml.Node, k yaml.Kind, what, want string) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.fail(n, "%s: anchors and aliases are not allowed", what)
		return false
	}
	if n.Kind != k {
		d.fail(n, "%s must be %s", what, want)
		return false
	}
	return true
}

// plain reports whether a scalar carries one of YAML's own tags (a custom
// tag such as !!binary or !foo is refused) and is not null.
func (d *decoder) plain(n *yaml.Node) bool {
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return true
	case "!!null":
		d.fail(n, "value missing")
	default:
		d.fail(n, "tag %s is not allowed", n.Tag)
	}
	return false
}

// scalar returns the text of a scalar value node.
func (d *decoder) scalar(n *yaml.Node, what string) (string, bool) {
	if !d.kind(n, yaml.ScalarNode, what, "a single value") || !d.plain(n) {
		return "", false
	}
	return n.Value, true
}

func (d *decoder) policy(root *yaml.Node) *Policy {
	p := &Policy{lines: policyLines{version: root.Line, grace: root.Line, categories: root.Line}}
	f, keys := d.fields(root, "policy", "version", "grace", "categories")
	if n, ok := f["version"]; ok {
		p.lines.version = n.Line
		p.Version, _ = d.scalar(n, "version")
	}
	if n, ok := f["grace"]; ok {
		p.lines.grace = keys["grace"]
		d.grace(p, n)
	}
	if n, ok := f["categories"]; ok {
		p.lines.categories = keys["categories"]
		if d.kind(n, yaml.SequenceNode, "categories", "a list") {
			for _, c := range n.Content {
				p.Categories = append(p.Categories, d.category(c))
			}
		}
	}
	return p
}

func (d *decoder) grace(p *Policy, n *yaml.Node) {
	p.Grace = map[string]time.Duration{}
	p.lines.graceKeys = map[string]int{}
	if !d.kind(n, yaml.MappingNode, "grace", "a mapping of origin to duration") {
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		origin, ok := d.scalar(k, "grace key")
		if !ok {
			continue
		}
		if prev, dup := seen[origin]; dup {
			d.fail(k, "grace: origin %q repeated (first on line %d)", origin, prev)
			continue
		}
		seen[origin] = k.Line
		s, ok := d.scalar(v, "grace of "+origin)
		if !ok {
			continue
		}
		g, err := ParseDuration(s)
		if err != nil {
			d.fail(v, "grace of %s: %v", origin, err)
			continue
		}
		p.Grace[origin] = g
		p.lines.graceKeys[origin] = k.Line
	}
}

func (d *decoder) category(n *yaml.Node) Category {
	c := Category{line: n.Line, nameLine: n.Line}
	f, _ := d.fields(n, "category", "name", "stages")
	if v, ok := f["name"]; ok {
		c.nameLine = v.Line
		c.Name, _ = d.scalar(v, "category name")
	}
	if v, ok := f["stages"]; ok {
		if d.kind(v, yaml.SequenceNode, "stages of "+c.label(), "a list") {
			for _, s := range v.Content {
				c.Stages = append(c.Stages, d.stage(s, c.label()))
			}
		}
	}
	return c
}

func (c Category) label() string {
	if c.Name == "" {
		return "category"
	}
	return c.Name
}

func (d *decoder) stage(n *yaml.Node, cat string) Stage {
	s := Stage{lines: stageLines{stage: n.Line}}
	f, keys := d.fields(n, "stage of "+cat, "name", "action", "after", "calendar", "legal_basis", "depends_on")
	s.lines.name, s.lines.action, s.lines.legalBasis = n.Line, n.Line, n.Line
	if v, ok := f["name"]; ok {
		s.lines.name = v.Line
		s.Name, _ = d.scalar(v, "stage name")
	}
	what := cat + "/" + s.Name
	if v, ok := f["action"]; ok {
		s.lines.action = v.Line
		s.Action, _ = d.scalar(v, what+" action")
	}
	if v, ok := f["after"]; ok {
		s.lines.after = v.Line
		if t, ok := d.scalar(v, what+" after"); !ok {
			s.lines.badWhen = true
		} else if a, err := ParseDuration(t); err != nil {
			d.fail(v, "%s: after: %v", what, err)
			s.lines.badWhen = true
		} else {
			s.When.After = a
		}
	}
	if v, ok := f["calendar"]; ok {
		s.lines.calendar = keys["calendar"]
		s.lines.anchor, s.lines.plusYears, s.lines.zone = keys["calendar"], keys["calendar"], keys["calendar"]
		if r, ok := d.calendar(v, what, &s.lines); ok {
			s.When.Calendar = r
		} else {
			s.lines.badWhen = true
		}
	}
	if v, ok := f["legal_basis"]; ok {
		s.lines.legalBasis = v.Line
		s.LegalBasis, _ = d.scalar(v, what+" legal_basis")
	}
	if v, ok := f["depends_on"]; ok && d.kind(v, yaml.SequenceNode, what+" depends_on", "a list of category/stage") {
		for _, e := range v.Content {
			t, ok := d.scalar(e, what+" depends_on entry")
			if !ok {
				continue
			}
			ref, err := ParseStageRef(t)
			if err != nil {
				d.fail(e, "%s: depends_on %q: want category/stage, e.g. backups/erase", what, t)
				continue
			}
			s.DependsOn = append(s.DependsOn, ref)
			s.lines.deps = append(s.lines.deps, e.Line)
		}
	}
	return s
}

func (d *decoder) calendar(n *yaml.Node, what string, l *stageLines) (*CalendarRule, bool) {
	f, _ := d.fields(n, what+" calendar", "end_of_year_of", "plus_years", "zone")
	if n.Kind != yaml.MappingNode {
		return nil, false
	}
	r := &CalendarRule{}
	ok := true
	for _, k := range []string{"end_of_year_of", "plus_years", "zone"} {
		if _, present := f[k]; !present {
			d.problems = append(d.problems, &LineError{Line: l.calendar, Msg: fmt.Sprintf("%s: calendar: %s missing", what, k)})
			ok = false
		}
	}
	if v, present := f["end_of_year_of"]; present {
		l.anchor = v.Line
		r.EndOfYearOf, _ = d.scalar(v, what+" calendar end_of_year_of")
	}
	if v, present := f["plus_years"]; present {
		l.plusYears = v.Line
		if t, good := d.scalar(v, what+" calendar plus_years"); !good {
			ok = false
		} else if y, err := strconv.Atoi(t); err != nil || !isDigits(t) {
			d.fail(v, "%s: calendar: plus_years %q: want a whole number of years, e.g. 8", what, t)
			ok = false
		} else {
			r.PlusYears = y
		}
	}
	if v, present := f["zone"]; present {
		l.zone = v.Line
		r.Zone, _ = d.scalar(v, what+" calendar zone")
	}
	return r, ok
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func fingerprint(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}
