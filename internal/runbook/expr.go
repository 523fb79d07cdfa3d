package runbook

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"gopkg.in/yaml.v3"
)

// Expressions are CEL with the standard library and ext.Strings: nothing
// that reads the clock, randomness or the outside, so a workflow that
// evaluates one on replay gets the same value.
//
// What an expression reads:
//
//	inputs.<name>                  an input, typed by its declaration
//	steps.<id>.status              succeeded, failed or skipped
//	steps.<id>.outputs.<name>      an output of a step that finished before
//	item, index                    in a foreach body: the current item
//	result.<name>                  in a step's outputs: the kind's outputs
const (
	maxExprBytes = 4096
	maxExprDepth = 32
	// maxEvalCost bounds one evaluation (CEL's cost units, roughly one per
	// operation), so a runbook cannot spin a worker.
	maxEvalCost = 1_000_000
)

var celOptions = []cel.EnvOption{
	ext.Strings(ext.StringsVersion(4)),
	cel.CrossTypeNumericComparisons(true),
	cel.ParserExpressionSizeLimit(maxExprBytes),
	cel.ParserRecursionLimit(maxExprDepth),
}

// checkEnv is the base of every checking environment; each expression
// extends it with the names it reads, typed.
var checkEnv = sync.OnceValue(func() *cel.Env {
	env, err := cel.NewEnv(celOptions...)
	if err != nil {
		panic(err)
	}
	return env
})

// evalEnv evaluates expressions already checked at save time: the roots
// are dynamic, and maps iterate in key order.
var evalEnv = sync.OnceValue(func() *cel.Env {
	env, err := cel.NewEnv(append(slices.Clone(celOptions),
		cel.CustomTypeAdapter(sortedAdapter{}),
		cel.Variable("inputs", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("steps", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("result", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("item", cel.DynType),
		cel.Variable("index", cel.IntType),
	)...)
	if err != nil {
		panic(err)
	}
	return env
})

// site is one expression in the document: a when, an output or a ${{ }}
// of an argument, with what it may read.
type site struct {
	node   *yaml.Node
	path   string
	text   string
	offset int    // where text starts in node.Value (runes)
	want   string // wantBool, …; "" any
	owner  *Step
	scope  *scope
	result *Kind  // outputs: result.<name> reads this kind's outputs
	output string // outputs: the output this expression defines
}

// outType is a step output's type as later expressions see it.
type outType = *cel.Type

// pos maps a location in the expression to the document. Where the
// scalar sits on one line exactly as written (plain, or quoted without
// escapes) the column points into the expression; otherwise it is the
// scalar's own.
func (d *decoder) pos(s *site, loc common.Location) (int, int) {
	n := s.node
	if loc == nil || loc.Line() != 1 || n.Line < 1 || n.Line > len(d.lines) {
		return n.Line, n.Column
	}
	line := d.lines[n.Line-1]
	written := []rune(n.Value)
	quote := 0
	switch n.Style {
	case yaml.DoubleQuotedStyle:
		written = []rune(`"` + n.Value + `"`)
		quote = 1
	case yaml.SingleQuotedStyle:
		written = []rune(`'` + n.Value + `'`)
		quote = 1
	case 0, yaml.FlowStyle:
	default:
		return n.Line, n.Column
	}
	start := n.Column - 1
	if start < 0 || start+len(written) > len(line) || string(line[start:start+len(written)]) != string(written) {
		return n.Line, n.Column
	}
	return n.Line, n.Column + quote + s.offset + loc.Column()
}

func (d *decoder) checkSites() {
	for _, s := range d.sites {
		d.checkSite(s)
	}
}

func (d *decoder) siteErr(s *site, loc common.Location, format string, args ...any) {
	line, col := d.pos(s, loc)
	d.addAt(line, col, s.path, fmt.Sprintf(format, args...))
}

func (d *decoder) checkSite(s *site) {
	if strings.TrimSpace(s.text) == "" {
		d.siteErr(s, nil, "empty expression")
		return
	}
	parsed, iss := checkEnv().Parse(s.text)
	if iss.Err() != nil {
		e := iss.Errors()[0]
		d.siteErr(s, e.Location, "expression does not compile: %s", e.Message)
		return
	}
	native := parsed.NativeRep()
	info := native.SourceInfo()
	var decls []cel.EnvOption
	declared := map[string]bool{}
	declare := func(name string, t *cel.Type) {
		if !declared[name] {
			declared[name] = true
			decls = append(decls, cel.Variable(name, t))
		}
	}
	bad := false
	report := func(id int64, format string, args ...any) {
		bad = true
		d.siteErr(s, info.GetStartLocation(id), format, args...)
	}
	visitRefs(native.Expr(), func(root string, rootID int64, fields []string) {
		switch root {
		case "inputs":
			if len(fields) == 0 {
				report(rootID, "read an input as inputs.<name>")
				return
			}
			in := d.inputs[fields[0]]
			if in == nil {
				report(rootID, "no input named %q", fields[0])
				return
			}
			declare("inputs."+fields[0], inputCELType(in))
		case "steps":
			if t := d.stepRef(s, rootID, fields, report); t != nil {
				declare("steps."+strings.Join(fields[:min(3, len(fields))], "."), t)
			}
		case "item", "index":
			if !s.scope.inLoop() {
				report(rootID, "%s is defined only in a foreach body", root)
				return
			}
			if root == "item" {
				declare("item", cel.DynType)
			} else {
				declare("index", cel.IntType)
			}
		case "result":
			if s.result == nil {
				report(rootID, "result is defined only in a step's outputs")
				return
			}
			if len(fields) == 0 {
				report(rootID, "read a result as result.<name>")
				return
			}
			i := slices.IndexFunc(s.result.Outputs, func(o Output) bool { return o.Name == fields[0] })
			if i < 0 {
				report(rootID, "%s steps have no output %q", s.result.Name, fields[0])
				return
			}
			declare("result."+fields[0], outCELType(s.result.Outputs[i].Type))
		}
	})
	if bad {
		return
	}
	env, err := checkEnv().Extend(decls...)
	if err != nil {
		d.siteErr(s, nil, "expression environment: %s", err)
		return
	}
	checked, iss := env.Check(parsed)
	if iss.Err() != nil {
		e := iss.Errors()[0]
		d.siteErr(s, e.Location, "expression does not type-check: %s", e.Message)
		return
	}
	out := checked.OutputType()
	if want := wantCELType(s.want); want != nil && out.Kind() != types.DynKind && !want.IsAssignableType(out) {
		d.siteErr(s, nil, "must be a %s expression, not %s", s.want, out)
		return
	}
	if s.output != "" {
		if d.outTypes[s.owner] == nil {
			d.outTypes[s.owner] = map[string]outType{}
		}
		d.outTypes[s.owner][s.output] = out
	}
}

// stepRef checks a reference steps.<fields…> from site s and returns the
// type of what it reads.
func (d *decoder) stepRef(s *site, id int64, fields []string, report func(int64, string, ...any)) *cel.Type {
	if len(fields) < 2 {
		report(id, "read a step as steps.<id>.status or steps.<id>.outputs.<name>")
		return nil
	}
	ref := fields[0]
	info := d.ids[ref]
	switch {
	case info == nil:
		report(id, "no step %q", ref)
		return nil
	case info.step == s.owner:
		if s.output != "" {
			report(id, "step %q refers to itself: read its own outputs as result.<name>", ref)
		} else {
			report(id, "step %q refers to itself", ref)
		}
		return nil
	case !s.scope.visible(ref):
		if ownerInfo := d.ids[s.owner.ID]; ownerInfo == nil || ownerInfo.step != s.owner || info.order > ownerInfo.order {
			report(id, "step %q runs after this one: a step reads only steps that finished before it", ref)
		} else if info.container != nil {
			report(id, "step %q is not visible here: it runs inside %s step %q", ref, info.container.Kind, info.container.ID)
		} else {
			report(id, "step %q is not visible here", ref)
		}
		return nil
	}
	switch fields[1] {
	case "status":
		return cel.StringType
	case "outputs":
		if len(fields) < 3 {
			report(id, "name an output: steps.%s.outputs.<name>", ref)
			return nil
		}
		if t, ok := d.outTypes[info.step][fields[2]]; ok {
			return t
		}
		if k, ok := d.reg.Kind(info.step.Kind); ok {
			for _, o := range k.Outputs {
				if o.Name == fields[2] {
					return outCELType(o.Type)
				}
			}
		}
		if _, ok := info.step.Outputs[fields[2]]; ok {
			return cel.DynType // its own expression did not check; that is reported there
		}
		report(id, "step %q (%s) has no output %q", ref, info.step.Kind, fields[2])
		return nil
	}
	report(id, "a step has status and outputs, not %q", fields[1])
	return nil
}

// visitRefs calls f for every maximal select chain rooted at an
// identifier (inputs.env → "inputs", ["env"]); other identifiers are left
// to the type checker.
func visitRefs(e celast.Expr, f func(root string, rootID int64, fields []string)) {
	if e == nil {
		return
	}
	if root, id, fields, ok := selectChain(e); ok {
		f(root, id, fields)
		return
	}
	switch e.Kind() {
	case celast.SelectKind:
		visitRefs(e.AsSelect().Operand(), f)
	case celast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			visitRefs(c.Target(), f)
		}
		for _, a := range c.Args() {
			visitRefs(a, f)
		}
	case celast.ListKind:
		for _, x := range e.AsList().Elements() {
			visitRefs(x, f)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			visitRefs(me.Key(), f)
			visitRefs(me.Value(), f)
		}
	case celast.StructKind:
		for _, fl := range e.AsStruct().Fields() {
			visitRefs(fl.AsStructField().Value(), f)
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		// The loop variables shadow nothing we check: their names are
		// the user's, and the checker resolves them.
		visitRefs(c.IterRange(), f)
		visitRefs(c.AccuInit(), f)
		visitRefs(c.LoopCondition(), f)
		visitRefs(c.LoopStep(), f)
		visitRefs(c.Result(), f)
	}
}

var roots = []string{"inputs", "steps", "item", "index", "result"}

func selectChain(e celast.Expr) (string, int64, []string, bool) {
	var fields []string
	for e.Kind() == celast.SelectKind {
		sel := e.AsSelect()
		fields = append(fields, sel.FieldName())
		e = sel.Operand()
	}
	if e.Kind() != celast.IdentKind || !slices.Contains(roots, e.AsIdent()) {
		return "", 0, nil, false
	}
	slices.Reverse(fields)
	return e.AsIdent(), e.ID(), fields, true
}

func inputCELType(in *Input) *cel.Type {
	switch in.Type {
	case InputInt:
		return cel.IntType
	case InputBool:
		return cel.BoolType
	case InputList:
		return cel.ListType(inputCELType(&Input{Type: in.Items}))
	case InputString, InputSecret, InputEnum, InputSelector:
		return cel.StringType
	}
	return cel.DynType
}

func outCELType(t string) *cel.Type {
	switch t {
	case OutString:
		return cel.StringType
	case OutInt:
		return cel.IntType
	case OutBool:
		return cel.BoolType
	case OutList:
		return cel.ListType(cel.DynType)
	case OutMap:
		return cel.MapType(cel.StringType, cel.DynType)
	}
	return cel.DynType
}

func wantCELType(w string) *cel.Type {
	switch w {
	case wantBool:
		return cel.BoolType
	case wantInt:
		return cel.IntType
	case wantString:
		return cel.StringType
	case wantList:
		return cel.ListType(cel.DynType)
	case wantMap:
		return cel.MapType(cel.StringType, cel.DynType)
	}
	return nil
}

// segment is one ${{ expr }} of a string.
type segment struct {
	expr   string
	offset int  // runes from the start of the string to expr
	full   bool // the string is this one expression and nothing else
}

// splitInterpolation finds the ${{ … }} of s. The first "}}" ends an
// expression; there is no escape for a literal "${{".
func splitInterpolation(s string) ([]segment, error) {
	var out []segment
	rest, base := s, 0
	for {
		i := strings.Index(rest, "${{")
		if i < 0 {
			return out, nil
		}
		j := strings.Index(rest[i+3:], "}}")
		if j < 0 {
			return nil, errors.New("unterminated ${{: close it with }}")
		}
		start := base + i + 3
		expr := rest[i+3 : i+3+j]
		if strings.TrimSpace(expr) == "" {
			return nil, errors.New("empty ${{ }}")
		}
		end := start + j + 2
		out = append(out, segment{expr: expr, offset: len([]rune(s[:start])), full: base+i == 0 && end == len(s)})
		rest, base = s[end:], end
	}
}

// Vars are the values an expression reads when it runs: the run's inputs
// (as Input.Check returns them), the steps that finished, and in a
// foreach body the item and its index; Result is a step's own outputs
// while its outputs expressions run.
type Vars struct {
	Inputs map[string]any
	Steps  map[string]StepResult
	Item   any
	Index  int
	Result map[string]any
}

// StepResult is what steps.<id> reads.
type StepResult struct {
	Status  string
	Outputs map[string]any
}

func (v Vars) activation() map[string]any {
	steps := make(map[string]any, len(v.Steps))
	for id, r := range v.Steps {
		steps[id] = map[string]any{"status": r.Status, "outputs": orEmpty(r.Outputs)}
	}
	return map[string]any{
		"inputs": orEmpty(v.Inputs),
		"steps":  steps,
		"item":   v.Item,
		"index":  int64(v.Index),
		"result": orEmpty(v.Result),
	}
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Eval evaluates a CEL expression and returns its value as plain Go:
// string, int64, uint64, float64, bool, nil, []byte, []any,
// map[string]any, time.Time or time.Duration.
func Eval(expr string, vars Vars) (any, error) {
	env := evalEnv()
	parsed, iss := env.Parse(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("runbook: eval: %w", iss.Err())
	}
	prg, err := env.Program(parsed, cel.CostLimit(maxEvalCost))
	if err != nil {
		return nil, fmt.Errorf("runbook: eval: %w", err)
	}
	val, _, err := prg.Eval(vars.activation())
	if err != nil {
		return nil, fmt.Errorf("runbook: eval %q: %w", expr, err)
	}
	return toGo(val), nil
}

// EvalWhen evaluates a step's when expression.
func EvalWhen(expr string, vars Vars) (bool, error) {
	v, err := Eval(expr, vars)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("runbook: when %q: got %T, not a bool", expr, v)
	}
	return b, nil
}

// Interpolate expands the ${{ }} of a string argument. A string that is
// exactly one ${{ expr }} gives the expression's value, of its type; in
// any other, each value is written in: strings as they are, anything else
// as JSON would write it (with string map keys).
func Interpolate(s string, vars Vars) (any, error) {
	segs, err := splitInterpolation(s)
	if err != nil {
		return nil, fmt.Errorf("runbook: interpolate: %w", err)
	}
	if len(segs) == 0 {
		return s, nil
	}
	if len(segs) == 1 && segs[0].full {
		return Eval(segs[0].expr, vars)
	}
	var b strings.Builder
	rest := s
	for _, sg := range segs {
		i := strings.Index(rest, "${{")
		b.WriteString(rest[:i])
		v, err := Eval(sg.expr, vars)
		if err != nil {
			return nil, err
		}
		b.WriteString(text(v))
		rest = rest[i+3+len(sg.expr)+2:]
	}
	b.WriteString(rest)
	return b.String(), nil
}

// InterpolateAll expands every string in an argument value (as a step's
// With holds it), leaving nested steps alone.
func InterpolateAll(v any, vars Vars) (any, error) {
	switch v := v.(type) {
	case string:
		return Interpolate(v, vars)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := InterpolateAll(e, vars)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for _, k := range sortedKeys(v) {
			x, err := InterpolateAll(v[k], vars)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	}
	return v, nil
}

func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return "null"
	case []any, map[string]any:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	}
	return fmt.Sprint(v)
}

func toGo(v ref.Val) any {
	switch v := v.(type) {
	case traits.Mapper:
		out := map[string]any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			out[fmt.Sprint(toGo(k))] = toGo(v.Get(k))
		}
		return out
	case traits.Lister:
		out := []any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			out = append(out, toGo(it.Next()))
		}
		return out
	case types.Null:
		return nil
	}
	return v.Value()
}

// sortedAdapter hands Go maps to CEL as maps that iterate in key order,
// so that comprehensions over them (keys.map(…), .filter(…)) come out the
// same on every replay.
type sortedAdapter struct{}

func (a sortedAdapter) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case map[string]any:
		return sortedMap{Mapper: types.NewStringInterfaceMap(a, v), keys: sortedKeys(v)}
	case map[string]string:
		return sortedMap{Mapper: types.NewStringStringMap(a, v), keys: sortedKeys(v)}
	case []any:
		return types.NewDynamicList(a, v)
	case int:
		return types.Int(v)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

type sortedMap struct {
	traits.Mapper
	keys []string
}

func (m sortedMap) Iterator() traits.Iterator { return &keyIterator{keys: m.keys} }

type keyIterator struct {
	keys []string
	i    int
}

func (it *keyIterator) HasNext() ref.Val { return types.Bool(it.i < len(it.keys)) }

func (it *keyIterator) Next() ref.Val {
	if it.i >= len(it.keys) {
		return nil
	}
	it.i++
	return types.String(it.keys[it.i-1])
}

func (it *keyIterator) ConvertToNative(reflect.Type) (any, error) {
	return nil, errors.New("iterator: no native value")
}
func (it *keyIterator) ConvertToType(ref.Type) ref.Val {
	return types.NewErr("iterator: no conversion")
}
func (it *keyIterator) Equal(ref.Val) ref.Val { return types.False }
func (it *keyIterator) Type() ref.Type        { return types.IteratorType }
func (it *keyIterator) Value() any            { return it }
