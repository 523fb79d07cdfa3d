// Package runbook is the runbook document: its types, parsing from YAML or
// JSON, validation with every error at its line and column, the step-kind
// registry, the CEL expressions steps use, and the JSON Schema derived from
// all of it. It is pure: no database, no Temporal. The interpreter workflow
// and the API build on it.
//
// A runbook is a list of steps run in order. A step has an id, a kind and
// the kind's arguments under "with"; nested steps (parallel branches, a
// foreach body) are arguments too, so every kind — built in or registered
// later — has the same shape:
//
//	apiVersion: opsflow/v1
//	kind: Runbook
//	metadata: {name: restart-web}
//	inputs:
//	  - {name: env, type: enum, values: [staging, prod], required: true}
//	steps:
//	  - id: restart
//	    kind: script
//	    with:
//	      script: restart-service
//	      targets: {selector: "role=web,env=${{ inputs.env }}"}
//	  - id: check
//	    kind: http
//	    when: steps.restart.outputs.failed == 0
//	    with: {url: "https://web.${{ inputs.env }}.example.com/health"}
//
// Expressions are CEL. "when" and the values of "outputs" are bare
// expressions; string arguments may embed ${{ expr }}, and an argument that
// is exactly one ${{ expr }} takes the expression's value and type.
package runbook

// Document identity.
const (
	APIVersion = "opsflow/v1"
	KindName   = "Runbook"
)

// Input types; string, int, bool, enum and secret are those of script
// parameters (schema.ParamDef), with the same rules.
const (
	InputString   = "string"
	InputInt      = "int"
	InputBool     = "bool"
	InputEnum     = "enum"
	InputSecret   = "secret"
	InputSelector = "selector" // a CMDB label selector, e.g. "env=prod,role in (web,api)"
	InputList     = "list"     // a list of Items (string by default)
)

// InputTypes lists the input types in the order the documentation gives them.
var InputTypes = []string{InputString, InputInt, InputBool, InputEnum, InputSecret, InputSelector, InputList}

// Step statuses, as steps.<id>.status reads them.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusSkipped   = "skipped"
)

// On-failure actions. A list of steps under on_failure means
// OnFailureCompensate.
const (
	OnFailureFail       = "fail"
	OnFailureContinue   = "continue"
	OnFailureCompensate = "compensate"
)

// Runbook is a parsed, valid runbook document.
type Runbook struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Inputs     []Input  `json:"inputs,omitempty"`
	Steps      []*Step  `json:"steps"`
}

// Metadata names and describes a runbook.
type Metadata struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Input declares a runbook input. The fields are those of a script
// parameter: Regex applies to strings, Min and Max bound an int's value or
// a list's length, Values lists an enum's choices. Items is a list's
// element type (string, int or bool). A secret has no default.
type Input struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required,omitempty"`
	Default     any      `json:"default,omitempty"`
	Regex       string   `json:"regex,omitempty"`
	Min         *float64 `json:"min,omitempty"`
	Max         *float64 `json:"max,omitempty"`
	Values      []string `json:"values,omitempty"`
	Items       string   `json:"items,omitempty"`

	Pos Pos `json:"-"`
}

// Step is one step. With holds the kind's arguments as the registry
// decoded them: strings (possibly holding ${{ }}), int64, bool, []any,
// map[string]any, and []*Step for arguments of type steps.
type Step struct {
	ID        string            `json:"id"`
	Name      string            `json:"name,omitempty"`
	Kind      string            `json:"kind"`
	With      map[string]any    `json:"with,omitempty"`
	When      string            `json:"when,omitempty"`
	Retry     *Retry            `json:"retry,omitempty"`
	Timeout   string            `json:"timeout,omitempty"`
	OnFailure *OnFailure        `json:"on_failure,omitempty"`
	Outputs   map[string]string `json:"outputs,omitempty"`

	Pos Pos `json:"-"`
}

// Retry retries a failed step: Attempts in all (the first included),
// waiting Backoff, multiplied by Factor (default 2) after each attempt up
// to MaxBackoff.
type Retry struct {
	Attempts   int     `json:"attempts"`
	Backoff    string  `json:"backoff,omitempty"`
	Factor     float64 `json:"factor,omitempty"`
	MaxBackoff string  `json:"max_backoff,omitempty"`
}

// OnFailure says what follows a step's failure (after its retries): fail
// the run (the default), continue with the next step, or run Steps to
// compensate and then fail the run.
type OnFailure struct {
	Action string  `json:"action"`
	Steps  []*Step `json:"steps,omitempty"`
}

// Pos is a 1-based line and column in the source document.
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Nested returns the step lists the step holds in its arguments (the
// branches of a parallel in order, the body of a foreach), arguments
// taken by name; compensation steps are in OnFailure.
func (s *Step) Nested() [][]*Step {
	var out [][]*Step
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case []*Step:
			out = append(out, v)
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, k := range sortedKeys(v) {
				walk(v[k])
			}
		}
	}
	for _, k := range sortedKeys(s.With) {
		walk(s.With[k])
	}
	return out
}

// Walk calls f for every step of the runbook, depth first: a step, then
// its Nested lists, then its compensation steps.
func (r *Runbook) Walk(f func(s *Step)) { walkSteps(r.Steps, f) }

func walkSteps(steps []*Step, f func(s *Step)) {
	for _, s := range steps {
		f(s)
		for _, list := range s.Nested() {
			walkSteps(list, f)
		}
		if s.OnFailure != nil {
			walkSteps(s.OnFailure.Steps, f)
		}
	}
}

// Step finds a step by id anywhere in the runbook.
func (r *Runbook) Step(id string) *Step {
	var found *Step
	r.Walk(func(s *Step) {
		if found == nil && s.ID == id {
			found = s
		}
	})
	return found
}
