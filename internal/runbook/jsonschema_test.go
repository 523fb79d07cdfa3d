package runbook_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/opsflow/opsflow/internal/runbook"
)

func TestJSONSchemaNamesEveryKind(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(runbook.JSONSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" || schema["$id"] != runbook.SchemaID {
		t.Errorf("$schema %v, $id %v", schema["$schema"], schema["$id"])
	}
	defs := schema["$defs"].(map[string]any)
	kindEnum := defs["step"].(map[string]any)["properties"].(map[string]any)["kind"].(map[string]any)["enum"].([]any)
	for _, k := range runbook.Builtin().Kinds() {
		if !slices.Contains(kindEnum, any(k.Name)) {
			t.Errorf("kind %s is not in the step kind enum", k.Name)
		}
		with, ok := defs["with."+k.Name].(map[string]any)
		if !ok {
			t.Errorf("no $defs/with.%s", k.Name)
			continue
		}
		props, _ := with["properties"].(map[string]any)
		for _, a := range k.Args {
			if props[a.Name] == nil {
				t.Errorf("with.%s has no property %s", k.Name, a.Name)
			}
		}
	}
}

// TestJSONSchemaAgreesWithParse validates documents against the schema
// with a small validator of the keywords it uses: the shipped runbooks
// fit, and documents Parse refuses for a schema reason do not.
func TestJSONSchemaAgreesWithParse(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(runbook.JSONSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	v := &schemaValidator{root: schema}
	for _, f := range exampleFiles(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if errs := v.validate(schema, yamlValue(t, src), ""); len(errs) > 0 {
			t.Errorf("%s does not fit the schema:\n%s", f, strings.Join(errs, "\n"))
		}
	}
	bad := map[string]string{
		"unknown kind":     "steps: [{id: a, kind: nope}]",
		"unknown field":    "steps: [{id: a, kind: fail, with: {message: m}, needs: [b]}]",
		"missing argument": "steps: [{id: a, kind: fail, with: {}}]",
		"unknown argument": "steps: [{id: a, kind: fail, with: {message: m, code: 1}}]",
		"int as string":    "steps: [{id: a, kind: foreach, with: {items: [1], concurrency: two, steps: [{id: b, kind: fail, with: {message: m}}]}}]",
		"both one-of":      "steps: [{id: a, kind: wait, with: {duration: 1s, until: '2030-01-01T00:00:00Z'}}]",
		"bad duration":     "steps: [{id: a, kind: wait, with: {duration: soon}}]",
		"bad id":           "steps: [{id: a-b, kind: fail, with: {message: m}}]",
		"bad default":      "inputs: [{name: n, type: int, default: ten}]\nsteps: [{id: a, kind: fail, with: {message: m}}]",
		"secret default":   "inputs: [{name: n, type: secret, default: x}]\nsteps: [{id: a, kind: fail, with: {message: m}}]",
		"bad on_failure":   "steps: [{id: a, kind: fail, with: {message: m}, on_failure: retry}]",
	}
	for name, body := range bad {
		src := "apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: x}\n" + body + "\n"
		if _, err := runbook.Parse([]byte(src)); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
		if errs := v.validate(schema, yamlValue(t, []byte(src)), ""); len(errs) == 0 {
			t.Errorf("%s: the schema accepted it", name)
		}
	}
}

func yamlValue(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// schemaValidator checks the JSON Schema keywords JSONSchema emits.
type schemaValidator struct{ root map[string]any }

func (v *schemaValidator) validate(s map[string]any, x any, at string) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	if r, ok := s["$ref"].(string); ok {
		def := v.root["$defs"].(map[string]any)[strings.TrimPrefix(r, "#/$defs/")]
		if def == nil {
			return []string{at + ": unresolved " + r}
		}
		errs = append(errs, v.validate(def.(map[string]any), x, at)...)
	}
	if t, ok := s["type"].(string); ok && !hasType(x, t) {
		fail("want %s, got %T", t, x)
		return errs
	}
	if c, ok := s["const"]; ok && c != x {
		fail("want %v", c)
	}
	if e, ok := s["enum"].([]any); ok && !slices.Contains(e, x) {
		fail("want one of %v, got %v", e, x)
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := x.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			fail("%q does not match %s", str, p)
		}
	}
	if n, ok := x.(float64); ok {
		if m, ok := s["minimum"].(float64); ok && n < m {
			fail("below %v", m)
		}
		if m, ok := s["maximum"].(float64); ok && n > m {
			fail("above %v", m)
		}
	}
	if obj, ok := x.(map[string]any); ok {
		props, _ := s["properties"].(map[string]any)
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				fail("missing %s", r)
			}
		}
		for k, val := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, v.validate(ps, val, at+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("unknown property %s", k)
				}
			case map[string]any:
				errs = append(errs, v.validate(ap, val, at+"."+k)...)
			}
			if pn, ok := s["propertyNames"].(map[string]any); ok {
				errs = append(errs, v.validate(pn, k, at+"."+k)...)
			}
		}
	}
	if list, ok := x.([]any); ok {
		if m, ok := s["minItems"].(float64); ok && float64(len(list)) < m {
			fail("fewer than %v items", m)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range list {
				errs = append(errs, v.validate(items, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	for _, sub := range asList(s["allOf"]) {
		errs = append(errs, v.validate(sub.(map[string]any), x, at)...)
	}
	if alts := asList(s["anyOf"]); alts != nil && v.matching(alts, x, at) == 0 {
		fail("fits none of anyOf")
	}
	if alts := asList(s["oneOf"]); alts != nil && v.matching(alts, x, at) != 1 {
		fail("fits not exactly one of oneOf")
	}
	if cond, ok := s["if"].(map[string]any); ok && len(v.validate(cond, x, at)) == 0 {
		if then, ok := s["then"].(map[string]any); ok {
			errs = append(errs, v.validate(then, x, at)...)
		}
	}
	if not, ok := s["not"].(map[string]any); ok && len(v.validate(not, x, at)) == 0 {
		fail("matches a not")
	}
	return errs
}

func (v *schemaValidator) matching(alts []any, x any, at string) int {
	n := 0
	for _, a := range alts {
		if len(v.validate(a.(map[string]any), x, at)) == 0 {
			n++
		}
	}
	return n
}

func asList(v any) []any { l, _ := v.([]any); return l }

func hasType(x any, t string) bool {
	switch t {
	case "object":
		_, ok := x.(map[string]any)
		return ok
	case "array":
		_, ok := x.([]any)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "number":
		_, ok := x.(float64)
		return ok
	case "integer":
		f, ok := x.(float64)
		return ok && f == math.Trunc(f)
	}
	return false
}
