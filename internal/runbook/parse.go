package runbook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/labels"
)

// Bounds on a document, far above any runbook a person writes, so that a
// hostile one costs little to refuse.
const (
	MaxSourceBytes = 1 << 20
	MaxDepth       = 16 // steps nested in steps
	maxErrors      = 200
)

var (
	// nameRE is the rule of script and policy names (schema's credNameRE).
	nameRE = regexp.MustCompile(`^[\p{L}\p{N}._-][\p{L}\p{N}\p{M}._-]{0,99}$`)
	// identRE names inputs (as script parameters do), step ids and
	// outputs: each is read in CEL as inputs.<name> or steps.<id>, so it is
	// an identifier.
	identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	// celReserved cannot follow a '.' in CEL.
	celReserved = []string{"as", "break", "const", "continue", "else", "false", "for", "function", "if",
		"import", "in", "let", "loop", "package", "namespace", "null", "return", "true", "var", "void", "while"}
)

// Parse reads and validates a runbook, YAML or JSON, with the built-in
// kinds. Its error is an Errors with every problem found.
func Parse(src []byte) (*Runbook, error) { return Builtin().Parse(src) }

// Parse reads and validates a runbook with the registry's kinds. Its
// error is an Errors with every problem found, sorted by position; a
// runbook is returned only when there is none.
func (r *Registry) Parse(src []byte) (*Runbook, error) {
	d := &decoder{reg: r, ids: map[string]*stepInfo{}, outTypes: map[*Step]map[string]outType{}}
	rb := d.document(src)
	if rb != nil {
		d.checkSites()
	}
	if len(d.errs) > 0 {
		d.errs.sort()
		if len(d.errs) > maxErrors {
			d.errs = d.errs[:maxErrors]
		}
		return nil, d.errs
	}
	return rb, nil
}

type decoder struct {
	reg   *Registry
	errs  Errors
	lines [][]rune

	inputs   map[string]*Input
	ids      map[string]*stepInfo
	order    int
	sites    []*site
	outTypes map[*Step]map[string]outType
}

// stepInfo is where a step is: its place in document order and the step
// whose argument holds it (nil at the top).
type stepInfo struct {
	step      *Step
	order     int
	container *Step
	line      int
}

// scope is what an expression may read: the steps that finished before
// it, and whether it runs inside a loop body (item, index). It is an
// immutable list, so a snapshot is a pointer.
type scope struct {
	parent *scope
	step   *Step
	loop   bool
}

func (s *scope) with(step *Step) *scope { return &scope{parent: s, step: step} }

func (s *scope) visible(id string) bool {
	for ; s != nil; s = s.parent {
		if s.step != nil && s.step.ID == id {
			return true
		}
	}
	return false
}

func (s *scope) inLoop() bool {
	for ; s != nil; s = s.parent {
		if s.loop {
			return true
		}
	}
	return false
}

func (d *decoder) add(n *yaml.Node, path, format string, args ...any) {
	line, col := 1, 1
	if n != nil {
		line, col = n.Line, n.Column
	}
	d.addAt(line, col, path, fmt.Sprintf(format, args...))
}

func (d *decoder) addAt(line, col int, path, reason string) {
	d.errs = append(d.errs, Error{Line: max(line, 1), Column: max(col, 1), Path: path, Reason: reason})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) document(src []byte) *Runbook {
	if len(src) > MaxSourceBytes {
		d.addAt(1, 1, "", fmt.Sprintf("document is %d bytes; at most %d", len(src), MaxSourceBytes))
		return nil
	}
	for _, l := range bytes.Split(src, []byte("\n")) {
		d.lines = append(d.lines, []rune(string(l)))
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.addAt(1, 1, "", "empty document")
		} else {
			d.syntax(src, err)
		}
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		d.add(&next, "", "one runbook per file: a second document starts here")
		return nil
	} else if !errors.Is(err, io.EOF) {
		d.syntax(src, err)
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	rb := &Runbook{}
	m := d.mapping(root, "", "apiVersion", "kind", "metadata", "inputs", "steps")
	if m == nil {
		return rb
	}
	d.require(root, "", m, "apiVersion", "kind", "metadata", "steps")
	if n := m["apiVersion"]; n != nil {
		if s, ok := d.str(n, "apiVersion"); ok && s != APIVersion {
			d.add(n, "apiVersion", "must be %s", APIVersion)
		}
		rb.APIVersion = APIVersion
	}
	if n := m["kind"]; n != nil {
		if s, ok := d.str(n, "kind"); ok && s != KindName {
			d.add(n, "kind", "must be %s", KindName)
		}
		rb.Kind = KindName
	}
	if n := m["metadata"]; n != nil {
		rb.Metadata = d.metadata(n)
	}
	if n := m["inputs"]; n != nil {
		rb.Inputs = d.inputList(n)
	}
	if n := m["steps"]; n != nil {
		rb.Steps, _ = d.steps(n, "steps", nil, nil, 0)
		if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			d.add(n, "steps", "a runbook needs at least one step")
		}
	}
	return rb
}

// syntax reports a YAML error. yaml.v3 names only a line: for a scanner
// error the offending one, for a parser error the 0-based line where the
// broken construct (a flow mapping, a block sequence) starts. The column
// is that of the line's first character. A JSON document gets the exact
// place from encoding/json instead.
func (d *decoder) syntax(src []byte, err error) {
	if t := bytes.TrimLeft(src, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		var v any
		var se *json.SyntaxError
		if jerr := json.Unmarshal(src, &v); errors.As(jerr, &se) {
			line, col := offsetPos(src, int(se.Offset)-1) // Offset is just past the bad byte
			d.addAt(line, col, "", "invalid JSON: "+se.Error())
			return
		}
	}
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if strings.HasPrefix(msg, "did not find expected") || strings.HasPrefix(msg, "found duplicate") ||
			strings.HasPrefix(msg, "found incompatible") || strings.HasPrefix(msg, "found undefined tag") {
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	col := 1
	if line-1 < len(d.lines) {
		for _, r := range d.lines[line-1] {
			if r != ' ' {
				break
			}
			col++
		}
		if col > len(d.lines[line-1]) {
			col = 1
		}
	}
	d.addAt(line, col, "", "invalid YAML: "+msg)
}

// offsetPos turns a byte offset into a 1-based line and column (in
// characters).
func offsetPos(src []byte, off int) (int, int) {
	off = min(max(off, 0), len(src))
	before := src[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, len([]rune(string(before[start:]))) + 1
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// deref refuses aliases: expanding them is how a small YAML document
// grows without bound, and a runbook has no need of them.
func (d *decoder) deref(n *yaml.Node, path string) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		d.add(n, path, "YAML aliases are not supported")
		return nil
	}
	return n
}

// mapping checks that n is a mapping with string keys among known (all
// keys if known is nil) and no key twice, and returns the values by key.
func (d *decoder) mapping(n *yaml.Node, path string, known ...string) map[string]*yaml.Node {
	keys := d.mappingKeys(n, path, known)
	if keys == nil {
		return nil
	}
	out := make(map[string]*yaml.Node, len(keys))
	for _, kv := range keys {
		out[kv[0].Value] = kv[1]
	}
	return out
}

// mappingKeys is mapping with the key nodes, in document order.
func (d *decoder) mappingKeys(n *yaml.Node, path string, known []string) [][2]*yaml.Node {
	if n = d.deref(n, path); n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "must be a mapping, not %s", describe(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	out := [][2]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!bool" && k.Tag != "!!float" {
			d.add(k, path, "keys must be strings")
			continue
		}
		p := join(path, k.Value)
		if first, ok := seen[k.Value]; ok {
			d.add(k, p, "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		if known != nil && !slices.Contains(known, k.Value) {
			d.add(k, p, "unknown field %q (expected one of %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		if v = d.deref(v, p); v == nil {
			continue
		}
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

func (d *decoder) require(n *yaml.Node, path string, m map[string]*yaml.Node, names ...string) {
	for _, name := range names {
		if m[name] == nil {
			d.add(n, join(path, name), "required")
		}
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		}
		return "a " + strings.TrimPrefix(n.Tag, "!!")
	}
	return "a YAML document"
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.add(n, path, "must be a string, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		d.add(n, path, "must be an integer, not %s", describe(n))
		return 0, false
	}
	return v, true
}

func (d *decoder) number(n *yaml.Node, path string) (float64, bool) {
	var v float64
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&v) != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.add(n, path, "must be a number, not %s", describe(n))
		return 0, false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		d.add(n, path, "must be true or false, not %s", describe(n))
		return false, false
	}
	return v, true
}

func (d *decoder) duration(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if v, err := time.ParseDuration(s); err != nil || v <= 0 {
		d.add(n, path, "must be a positive duration such as 30s, 5m or 1h30m")
		return "", false
	}
	return s, true
}

// value converts any node to a plain Go value (string, int64, float64,
// bool, nil, []any, map[string]any).
func (d *decoder) value(n *yaml.Node, path string) (any, bool) {
	if n = d.deref(n, path); n == nil {
		return nil, false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str", "!!timestamp", "!!binary":
			return n.Value, true
		case "!!int":
			if v, ok := d.integer(n, path); ok {
				return v, true
			}
			return nil, false
		case "!!float":
			if v, ok := d.number(n, path); ok {
				return v, true
			}
			return nil, false
		case "!!bool":
			return d.boolean(n, path)
		case "!!null":
			return nil, true
		}
		d.add(n, path, "unsupported YAML tag %s", n.Tag)
		return nil, false
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, good := d.value(c, index(path, i))
			ok = ok && good
			out = append(out, v)
		}
		return out, ok
	case yaml.MappingNode:
		keys := d.mappingKeys(n, path, nil)
		out := make(map[string]any, len(keys))
		ok := keys != nil
		for _, kv := range keys {
			v, good := d.value(kv[1], join(path, kv[0].Value))
			ok = ok && good
			out[kv[0].Value] = v
		}
		return out, ok
	}
	d.add(n, path, "unsupported YAML node")
	return nil, false
}

func (d *decoder) metadata(n *yaml.Node) Metadata {
	var md Metadata
	m := d.mapping(n, "metadata", "name", "description", "labels")
	if m == nil {
		return md
	}
	d.require(n, "metadata", m, "name")
	if v := m["name"]; v != nil {
		if s, ok := d.str(v, "metadata.name"); ok {
			if !nameRE.MatchString(s) {
				d.add(v, "metadata.name", "must be 1 to 100 letters, digits, '.', '_' or '-'")
			}
			md.Name = s
		}
	}
	if v := m["description"]; v != nil {
		md.Description, _ = d.str(v, "metadata.description")
	}
	if v := m["labels"]; v != nil {
		if keys := d.mappingKeys(v, "metadata.labels", nil); keys != nil {
			md.Labels = map[string]string{}
			for _, kv := range keys {
				if s, ok := d.str(kv[1], "metadata.labels."+kv[0].Value); ok {
					md.Labels[kv[0].Value] = s
				}
			}
		}
	}
	return md
}

func (d *decoder) inputList(n *yaml.Node) []Input {
	if n = d.deref(n, "inputs"); n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.add(n, "inputs", "must be a list, not %s", describe(n))
		return nil
	}
	d.inputs = map[string]*Input{}
	out := make([]Input, 0, len(n.Content))
	for i, c := range n.Content {
		if in, ok := d.input(c, index("inputs", i)); ok {
			out = append(out, in)
		}
	}
	for i := range out {
		d.inputs[out[i].Name] = &out[i]
	}
	return out
}

func (d *decoder) input(n *yaml.Node, path string) (Input, bool) {
	in := Input{Pos: Pos{n.Line, n.Column}}
	m := d.mapping(n, path, "name", "type", "description", "required", "default", "regex", "min", "max", "values", "items")
	if m == nil {
		return in, false
	}
	d.require(n, path, m, "name", "type")
	ok := true
	if v := m["name"]; v != nil {
		if s, good := d.str(v, join(path, "name")); good {
			switch {
			case !identRE.MatchString(s) || slices.Contains(celReserved, s):
				d.add(v, join(path, "name"), "must be an identifier: letters, digits, '_', not starting with a digit (it is read as inputs.%s)", s)
				ok = false
			case d.inputs[s] != nil:
				d.add(v, join(path, "name"), "duplicate input %q (first at line %d)", s, d.inputs[s].Pos.Line)
				ok = false
			default:
				in.Name = s
				d.inputs[s] = &in
			}
		} else {
			ok = false
		}
	}
	if v := m["type"]; v != nil {
		if s, good := d.str(v, join(path, "type")); good {
			if !slices.Contains(InputTypes, s) {
				d.add(v, join(path, "type"), "must be one of %s", strings.Join(InputTypes, ", "))
				ok = false
			}
			in.Type = s
		} else {
			ok = false
		}
	}
	if v := m["description"]; v != nil {
		in.Description, _ = d.str(v, join(path, "description"))
	}
	if v := m["required"]; v != nil {
		in.Required, _ = d.boolean(v, join(path, "required"))
	}
	if v := m["regex"]; v != nil {
		if s, good := d.str(v, join(path, "regex")); good {
			if _, err := regexp.Compile(s); err != nil {
				d.add(v, join(path, "regex"), "invalid regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
				ok = false
			} else {
				in.Regex = s
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  **float64
	}{{"min", &in.Min}, {"max", &in.Max}} {
		if v := m[f.name]; v != nil {
			if x, good := d.number(v, join(path, f.name)); good {
				*f.dst = &x
			}
		}
	}
	if in.Min != nil && in.Max != nil && *in.Min > *in.Max {
		d.add(m["max"], join(path, "max"), "must not be less than min")
		ok = false
	}
	if v := m["values"]; v != nil {
		if vals, good := d.value(v, join(path, "values")); good {
			list, isList := vals.([]any)
			for i, x := range list {
				s, isStr := x.(string)
				if !isStr {
					d.add(v.Content[i], index(join(path, "values"), i), "must be a string")
					continue
				}
				if slices.Contains(in.Values, s) {
					d.add(v.Content[i], index(join(path, "values"), i), "duplicate value %q", s)
				}
				in.Values = append(in.Values, s)
			}
			if !isList {
				d.add(v, join(path, "values"), "must be a list of strings")
			}
		}
		if in.Type != "" && in.Type != InputEnum {
			d.add(v, join(path, "values"), "only an enum has values")
		}
	}
	if in.Type == InputEnum && len(in.Values) == 0 && m["values"] == nil {
		d.add(n, join(path, "values"), "an enum needs values")
		ok = false
	}
	if v := m["items"]; v != nil {
		if s, good := d.str(v, join(path, "items")); good {
			if !slices.Contains([]string{InputString, InputInt, InputBool}, s) {
				d.add(v, join(path, "items"), "must be string, int or bool")
			}
			in.Items = s
		}
		if in.Type != "" && in.Type != InputList {
			d.add(v, join(path, "items"), "only a list has items")
		}
	}
	if in.Type == InputList && in.Items == "" {
		in.Items = InputString
	}
	if v := m["default"]; v != nil {
		def, good := d.value(v, join(path, "default"))
		switch {
		case !good:
		case in.Type == InputSecret:
			d.add(v, join(path, "default"), "a secret has no default")
		case def == nil:
		case slices.Contains(InputTypes, in.Type):
			if norm, err := in.Check(def); err != nil {
				d.add(v, join(path, "default"), "default %s", err)
			} else {
				in.Default = norm
			}
		}
	}
	return in, ok
}

// steps decodes a list of steps run in order, each seeing sc and the
// steps before it. It returns the steps and the steps visible after the
// list (itself and what the nested non-loop lists export).
func (d *decoder) steps(n *yaml.Node, path string, sc *scope, container *Step, depth int) ([]*Step, []*Step) {
	if n = d.deref(n, path); n == nil {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		d.add(n, path, "must be a list of steps, not %s", describe(n))
		return nil, nil
	}
	if depth >= MaxDepth {
		d.add(n, path, "steps nest deeper than %d levels", MaxDepth)
		return nil, nil
	}
	var out, exported []*Step
	for i, c := range n.Content {
		s, exp := d.step(c, index(path, i), sc, container, depth)
		if s == nil {
			continue
		}
		out = append(out, s)
		for _, e := range exp {
			sc = sc.with(e)
		}
		exported = append(exported, exp...)
	}
	return out, exported
}

func (d *decoder) step(n *yaml.Node, path string, sc *scope, container *Step, depth int) (*Step, []*Step) {
	s := &Step{Pos: Pos{n.Line, n.Column}}
	m := d.mapping(n, path, "id", "name", "kind", "with", "when", "retry", "timeout", "on_failure", "outputs")
	if m == nil {
		return nil, nil
	}
	d.require(n, path, m, "id", "kind")
	d.order++
	if v := m["id"]; v != nil {
		if id, ok := d.str(v, join(path, "id")); ok {
			switch {
			case !identRE.MatchString(id) || slices.Contains(celReserved, id):
				d.add(v, join(path, "id"), "must be an identifier: letters, digits, '_', not starting with a digit (it is read as steps.%s)", id)
			case d.ids[id] != nil:
				d.add(v, join(path, "id"), "duplicate step id %q (first at line %d)", id, d.ids[id].line)
			default:
				d.ids[id] = &stepInfo{step: s, order: d.order, container: container, line: v.Line}
			}
			s.ID = id
		}
	}
	if v := m["name"]; v != nil {
		s.Name, _ = d.str(v, join(path, "name"))
	}
	var kind *Kind
	if v := m["kind"]; v != nil {
		if k, ok := d.str(v, join(path, "kind")); ok {
			s.Kind = k
			if kind, ok = d.reg.Kind(k); !ok {
				d.add(v, join(path, "kind"), "unknown step kind %q (known: %s)", k, strings.Join(d.reg.names(), ", "))
			}
		}
	}
	if v := m["when"]; v != nil {
		if e, ok := d.str(v, join(path, "when")); ok {
			s.When = e
			d.sites = append(d.sites, &site{node: v, path: join(path, "when"), text: e, want: wantBool, owner: s, scope: sc})
		}
	}
	var exported []*Step
	if kind != nil {
		c := &argCtx{owner: s, scope: sc, depth: depth}
		s.With = d.with(kind, m["with"], n, join(path, "with"), c)
		exported = c.exports
	}
	if v := m["outputs"]; v != nil {
		s.Outputs = d.outputs(v, join(path, "outputs"), s, kind, sc)
	}
	if v := m["retry"]; v != nil {
		s.Retry = d.retry(v, join(path, "retry"))
	}
	if v := m["timeout"]; v != nil {
		s.Timeout, _ = d.duration(v, join(path, "timeout"))
	}
	if v := m["on_failure"]; v != nil {
		p := join(path, "on_failure")
		if v.Kind == yaml.SequenceNode {
			comp, _ := d.steps(v, p, sc.with(s), s, depth+1)
			s.OnFailure = &OnFailure{Action: OnFailureCompensate, Steps: comp}
			if len(v.Content) == 0 {
				d.add(v, p, "give at least one compensation step, or fail or continue")
			}
		} else if a, ok := d.str(v, p); ok {
			if a != OnFailureFail && a != OnFailureContinue {
				d.add(v, p, "must be fail, continue or a list of compensation steps")
			} else {
				s.OnFailure = &OnFailure{Action: a}
			}
		}
	}
	return s, append([]*Step{s}, exported...)
}

func (d *decoder) retry(n *yaml.Node, path string) *Retry {
	m := d.mapping(n, path, "attempts", "backoff", "factor", "max_backoff")
	if m == nil {
		return nil
	}
	d.require(n, path, m, "attempts")
	r := &Retry{}
	if v := m["attempts"]; v != nil {
		if a, ok := d.integer(v, join(path, "attempts")); ok {
			if a < 1 || a > 100 {
				d.add(v, join(path, "attempts"), "must be from 1 to 100")
			}
			r.Attempts = int(a)
		}
	}
	if v := m["backoff"]; v != nil {
		r.Backoff, _ = d.duration(v, join(path, "backoff"))
	}
	if v := m["max_backoff"]; v != nil {
		r.MaxBackoff, _ = d.duration(v, join(path, "max_backoff"))
	}
	if v := m["factor"]; v != nil {
		if f, ok := d.number(v, join(path, "factor")); ok {
			if f < 1 || f > 10 {
				d.add(v, join(path, "factor"), "must be from 1 to 10")
			}
			r.Factor = f
		}
	}
	return r
}

func (d *decoder) outputs(n *yaml.Node, path string, s *Step, kind *Kind, sc *scope) map[string]string {
	keys := d.mappingKeys(n, path, nil)
	if keys == nil {
		return nil
	}
	out := map[string]string{}
	for _, kv := range keys {
		name, p := kv[0].Value, join(path, kv[0].Value)
		switch {
		case !identRE.MatchString(name) || slices.Contains(celReserved, name):
			d.add(kv[0], p, "must be an identifier: letters, digits, '_', not starting with a digit")
			continue
		case kind != nil && slices.ContainsFunc(kind.Outputs, func(o Output) bool { return o.Name == name }):
			d.add(kv[0], p, "%s steps already have an output %q", kind.Name, name)
			continue
		}
		e, ok := d.str(kv[1], p)
		if !ok {
			continue
		}
		out[name] = e
		d.sites = append(d.sites, &site{node: kv[1], path: p, text: e, owner: s, scope: sc, result: kind, output: name})
	}
	return out
}

// argCtx is what decoding a step's arguments needs: the step (owner of
// the expressions), what it sees, how deep it is, and the nested steps
// that become visible after it.
type argCtx struct {
	owner   *Step
	scope   *scope
	depth   int
	exports []*Step
}

func (d *decoder) with(k *Kind, n, stepNode *yaml.Node, path string, c *argCtx) map[string]any {
	if n == nil {
		for _, a := range k.Args {
			if a.Required {
				d.add(stepNode, join(path, a.Name), "required")
			}
		}
		if len(k.OneOf) > 0 {
			for _, g := range k.OneOf {
				d.add(stepNode, path, "give one of %s", strings.Join(g, ", "))
			}
		}
		return nil
	}
	out, keyNodes := d.object(k.Args, k.OneOf, n, path, c)
	if out != nil && k.Check != nil {
		k.Check(out, func(arg, reason string) {
			at := n
			if kn := keyNodes[strings.Split(arg, ".")[0]]; kn != nil {
				at = kn
			}
			d.add(at, join(path, arg), "%s", reason)
		})
	}
	return out
}

// object decodes a mapping of the named fields.
func (d *decoder) object(fields []*Arg, oneOf [][]string, n *yaml.Node, path string, c *argCtx) (map[string]any, map[string]*yaml.Node) {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	keys := d.mappingKeys(n, path, names)
	if keys == nil {
		return nil, nil
	}
	out := map[string]any{}
	keyNodes := map[string]*yaml.Node{}
	for _, kv := range keys {
		keyNodes[kv[0].Value] = kv[0]
	}
	for _, f := range fields {
		var v *yaml.Node
		for _, kv := range keys {
			if kv[0].Value == f.Name {
				v = kv[1]
			}
		}
		if v == nil {
			if f.Required {
				d.add(n, join(path, f.Name), "required")
			}
			continue
		}
		if x, ok := d.arg(f, v, join(path, f.Name), c); ok {
			out[f.Name] = x
		}
	}
	for _, g := range oneOf {
		var given []string
		for _, name := range g {
			if keyNodes[name] != nil {
				given = append(given, name)
			}
		}
		switch {
		case len(given) == 0:
			d.add(n, path, "give one of %s", strings.Join(g, ", "))
		case len(given) > 1:
			d.add(keyNodes[given[1]], join(path, given[1]), "give only one of %s", strings.Join(g, ", "))
		}
	}
	return out, keyNodes
}

// Wanted expression types.
const (
	wantBool   = "bool"
	wantInt    = "int"
	wantString = "string"
	wantList   = "list"
	wantMap    = "map"
)

// arg decodes one argument value by its spec.
func (d *decoder) arg(a *Arg, n *yaml.Node, path string, c *argCtx) (any, bool) {
	if n = d.deref(n, path); n == nil {
		return nil, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && strings.Contains(n.Value, "${{") {
		return d.interpolated(a, n, path, c)
	}
	switch a.Type {
	case ArgString:
		return d.str(n, path)
	case ArgInt:
		v, ok := d.integer(n, path)
		if ok && a.Min != nil && v < *a.Min {
			d.add(n, path, "must be at least %d", *a.Min)
			return nil, false
		}
		return v, ok
	case ArgBool:
		return d.boolean(n, path)
	case ArgDuration:
		return d.duration(n, path)
	case ArgEnum:
		s, ok := d.str(n, path)
		if ok && !slices.Contains(a.Values, s) {
			d.add(n, path, "must be one of %s", strings.Join(a.Values, ", "))
			return nil, false
		}
		return s, ok
	case ArgSelector:
		s, ok := d.str(n, path)
		if ok {
			if _, err := labels.Parse(s); err != nil {
				d.add(n, path, "invalid label selector: %s", strings.TrimPrefix(err.Error(), "unable to parse requirement: "))
				return nil, false
			}
		}
		return s, ok
	case ArgList:
		if n.Kind != yaml.SequenceNode {
			d.add(n, path, "must be a list, not %s", describe(n))
			return nil, false
		}
		if a.Min != nil && int64(len(n.Content)) < *a.Min {
			d.add(n, path, "needs at least %d items", *a.Min)
		}
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			if v, ok := d.arg(a.Items, e, index(path, i), c); ok {
				out = append(out, v)
			}
		}
		return out, true
	case ArgMap:
		keys := d.mappingKeys(n, path, nil)
		if keys == nil {
			return nil, false
		}
		out := map[string]any{}
		for _, kv := range keys {
			if v, ok := d.arg(a.Items, kv[1], join(path, kv[0].Value), c); ok {
				out[kv[0].Value] = v
			}
		}
		return out, true
	case ArgObject:
		out, _ := d.object(a.Fields, a.OneOf, n, path, c)
		return out, out != nil
	case ArgAny:
		return d.anyArg(n, path, c)
	case ArgSteps:
		sc := c.scope
		if a.Loop {
			sc = &scope{parent: sc, loop: true}
		}
		list, exported := d.steps(n, path, sc, c.owner, c.depth+1)
		if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			d.add(n, path, "needs at least one step")
		}
		if !a.Loop {
			c.exports = append(c.exports, exported...)
		}
		return list, list != nil
	}
	d.add(n, path, "argument of unknown type %q", a.Type)
	return nil, false
}

// anyArg decodes a free value, checking the interpolations of its
// strings.
func (d *decoder) anyArg(n *yaml.Node, path string, c *argCtx) (any, bool) {
	if n = d.deref(n, path); n == nil {
		return nil, false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!str" && strings.Contains(n.Value, "${{") {
			return d.interpolated(&Arg{Type: ArgAny}, n, path, c)
		}
		return d.value(n, path)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, _ := d.anyArg(e, index(path, i), c)
			out = append(out, v)
		}
		return out, true
	case yaml.MappingNode:
		keys := d.mappingKeys(n, path, nil)
		out := map[string]any{}
		for _, kv := range keys {
			v, _ := d.anyArg(kv[1], join(path, kv[0].Value), c)
			out[kv[0].Value] = v
		}
		return out, keys != nil
	}
	return d.value(n, path)
}

// interpolated records the ${{ }} expressions of a string argument.
// String-valued types (string, duration, enum, selector) may embed
// expressions; an int, bool, list or map must be exactly one expression.
// An argument that is exactly one expression must have a fitting type;
// the value itself is checked when the step runs.
func (d *decoder) interpolated(a *Arg, n *yaml.Node, path string, c *argCtx) (any, bool) {
	segs, err := splitInterpolation(n.Value)
	if err != nil {
		d.add(n, path, "%s", err)
		return nil, false
	}
	full := len(segs) == 1 && segs[0].full
	want := ""
	switch a.Type {
	case ArgString, ArgAny:
	case ArgInt:
		want = wantInt
	case ArgBool:
		want = wantBool
	case ArgDuration, ArgEnum, ArgSelector:
		want = wantString
	case ArgList:
		want = wantList
	case ArgMap, ArgObject:
		want = wantMap
	case ArgSteps:
		d.add(n, path, "steps cannot come from an expression")
		return nil, false
	}
	if want != "" && want != wantString && !full {
		d.add(n, path, "must be %s or exactly one ${{ expression }}", a.Type)
		return nil, false
	}
	for _, sg := range segs {
		st := &site{node: n, path: path, text: sg.expr, offset: sg.offset, owner: c.owner, scope: c.scope}
		if full {
			st.want = want
		}
		d.sites = append(d.sites, st)
	}
	return n.Value, true
}
