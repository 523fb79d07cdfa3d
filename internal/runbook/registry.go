package runbook

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
)

// Argument types of a step kind. Every scalar type but string also takes a
// string that is exactly one ${{ expr }}, checked when the step runs;
// strings (and strings anywhere in an Any) may embed ${{ expr }}.
const (
	ArgString   = "string"
	ArgInt      = "int"
	ArgBool     = "bool"
	ArgDuration = "duration" // a Go duration such as 90s or 5m
	ArgEnum     = "enum"     // one of Values
	ArgSelector = "selector" // a CMDB label selector
	ArgList     = "list"     // a list of Items
	ArgMap      = "map"      // string keys, values of Items
	ArgObject   = "object"   // the named Fields
	ArgAny      = "any"      // any value
	ArgSteps    = "steps"    // a list of nested steps
)

// Output types a step kind declares, as CEL sees them.
const (
	OutString = "string"
	OutInt    = "int"
	OutBool   = "bool"
	OutList   = "list"
	OutMap    = "map"
	OutDyn    = "dyn"
)

// Arg describes one argument of a step kind, or an element or field of
// one.
type Arg struct {
	Name        string
	Type        string
	Description string
	Required    bool
	Values      []string // ArgEnum
	Min         *int64   // ArgInt: smallest value; ArgList: fewest items
	Items       *Arg     // ArgList, ArgMap
	Fields      []*Arg   // ArgObject
	// OneOf lists groups of Fields of which exactly one must be given.
	OneOf [][]string
	// Loop marks an ArgSteps body run once per item: its steps read item
	// and index, and no step outside the body reads them.
	Loop bool
}

// Output is a value a step kind produces, read as steps.<id>.outputs.<name>.
type Output struct {
	Name        string
	Type        string
	Description string
}

// Kind is a step kind: its name, what it takes under "with" and what it
// produces. Check, if set, adds rules the argument specs cannot say; it
// sees the decoded arguments and reports by argument path (e.g.
// "targets.hosts").
type Kind struct {
	Name        string
	Description string
	Args        []*Arg
	// OneOf lists groups of Args of which exactly one must be given.
	OneOf   [][]string
	Outputs []Output
	Check   func(with map[string]any, report func(arg, reason string))
}

// Registry maps kind names to kinds. Later capabilities (Kubernetes
// actions, alert remediation, environment provisioning) add theirs with
// Register; the parser, the expression checker and JSONSchema all read
// kinds from here.
type Registry struct {
	kinds map[string]*Kind
}

var kindNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

// NewRegistry returns an empty registry; Builtin returns one holding the
// kinds of this package.
func NewRegistry() *Registry { return &Registry{kinds: map[string]*Kind{}} }

// Builtin returns a new registry holding the built-in kinds; add more with
// Register.
func Builtin() *Registry {
	r := NewRegistry()
	for _, k := range builtinKinds() {
		if err := r.Register(k); err != nil {
			panic(err) // a built-in kind is wrong: a programming error caught by any test
		}
	}
	return r
}

// Register adds a kind. A name taken, a malformed name or a malformed
// argument spec is an error.
func (r *Registry) Register(k *Kind) error {
	if !kindNameRE.MatchString(k.Name) {
		return fmt.Errorf("runbook: register kind %q: name must be lowercase words joined by '.'", k.Name)
	}
	if _, ok := r.kinds[k.Name]; ok {
		return fmt.Errorf("runbook: register kind %q: already registered", k.Name)
	}
	if err := checkArgs(k.Args, k.OneOf); err != nil {
		return fmt.Errorf("runbook: register kind %q: %w", k.Name, err)
	}
	for _, o := range k.Outputs {
		if !slices.Contains([]string{OutString, OutInt, OutBool, OutList, OutMap, OutDyn}, o.Type) {
			return fmt.Errorf("runbook: register kind %q: output %s: unknown type %q", k.Name, o.Name, o.Type)
		}
	}
	r.kinds[k.Name] = k
	return nil
}

func checkArgs(args []*Arg, oneOf [][]string) error {
	names := map[string]bool{}
	for _, a := range args {
		if a.Name == "" || names[a.Name] {
			return fmt.Errorf("argument %q: empty or duplicate name", a.Name)
		}
		names[a.Name] = true
		if err := checkArg(a); err != nil {
			return fmt.Errorf("argument %s: %w", a.Name, err)
		}
	}
	for _, g := range oneOf {
		for _, n := range g {
			if !names[n] {
				return fmt.Errorf("one-of group names unknown argument %q", n)
			}
		}
	}
	return nil
}

func checkArg(a *Arg) error {
	switch a.Type {
	case ArgString, ArgInt, ArgBool, ArgDuration, ArgSelector, ArgAny, ArgSteps:
	case ArgEnum:
		if len(a.Values) == 0 {
			return fmt.Errorf("an enum needs values")
		}
	case ArgList, ArgMap:
		if a.Items == nil {
			return fmt.Errorf("a %s needs items", a.Type)
		}
		return checkArg(a.Items)
	case ArgObject:
		return checkArgs(a.Fields, a.OneOf)
	default:
		return fmt.Errorf("unknown type %q", a.Type)
	}
	return nil
}

// Kind returns the kind named name.
func (r *Registry) Kind(name string) (*Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Kinds returns every kind, sorted by name.
func (r *Registry) Kinds() []*Kind {
	out := make([]*Kind, 0, len(r.kinds))
	for _, k := range r.kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (r *Registry) names() []string {
	var out []string
	for _, k := range r.Kinds() {
		out = append(out, k.Name)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
