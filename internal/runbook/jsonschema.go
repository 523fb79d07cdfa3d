package runbook

import (
	"encoding/json"
)

// SchemaID is where the API serves the schema.
const SchemaID = "/api/v1/runbooks/schema.json"

// JSONSchema is the JSON Schema (draft 2020-12) of a runbook with the
// built-in kinds.
func JSONSchema() []byte { return Builtin().JSONSchema() }

// JSONSchema is the JSON Schema (draft 2020-12) of a runbook with the
// registry's kinds, for editors and other tools. It says what the schema
// language can: fields, types, required, enums, one-of groups, and which
// arguments each kind takes. What it cannot — expressions that compile
// and type-check, references to steps, unique ids, kinds' own Check
// rules — only Parse checks; a document Parse accepts always fits it.
func (r *Registry) JSONSchema() []byte {
	kinds := r.Kinds()
	names := make([]any, len(kinds))
	defs := map[string]any{}
	var cases []any
	for i, k := range kinds {
		names[i] = k.Name
		with := objectSchema(k.Args, k.OneOf)
		with["description"] = k.Description
		defs["with."+k.Name] = with
		then := map[string]any{"properties": map[string]any{"with": defRef("with." + k.Name)}}
		if needsWith(k) {
			then["required"] = []any{"with"}
		}
		cases = append(cases, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"kind": map[string]any{"const": k.Name}}, "required": []any{"kind"}},
			"then": then,
		})
	}
	defs["expression"] = map[string]any{
		"description": "exactly one ${{ CEL expression }}, of the argument's type",
		"type":        "string", "pattern": `^\$\{\{[\s\S]*\}\}$`,
	}
	defs["interpolated"] = map[string]any{
		"description": "a string embedding ${{ CEL expressions }}",
		"type":        "string", "pattern": `\$\{\{`,
	}
	defs["duration"] = map[string]any{"type": "string", "anyOf": []any{
		map[string]any{"pattern": `^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$`},
		map[string]any{"pattern": `\$\{\{`},
	}}
	defs["identifier"] = map[string]any{"type": "string", "pattern": identRE.String()}
	defs["steps"] = map[string]any{"type": "array", "minItems": 1, "items": defRef("step")}
	defs["step"] = map[string]any{
		"type":                 "object",
		"required":             []any{"id", "kind"},
		"additionalProperties": false,
		"properties": map[string]any{
			"id":      defRef("identifier"),
			"name":    map[string]any{"type": "string"},
			"kind":    map[string]any{"enum": names},
			"with":    map[string]any{"type": "object"},
			"when":    map[string]any{"type": "string", "description": "CEL expression; the step runs when it is true"},
			"timeout": defRef("duration"),
			"retry": map[string]any{
				"type": "object", "required": []any{"attempts"}, "additionalProperties": false,
				"properties": map[string]any{
					"attempts":    map[string]any{"type": "integer", "minimum": 1, "maximum": 100},
					"backoff":     defRef("duration"),
					"factor":      map[string]any{"type": "number", "minimum": 1, "maximum": 10},
					"max_backoff": defRef("duration"),
				},
			},
			"on_failure": map[string]any{"anyOf": []any{
				map[string]any{"enum": []any{OnFailureFail, OnFailureContinue}},
				defRef("steps"),
			}},
			"outputs": map[string]any{
				"type":                 "object",
				"propertyNames":        defRef("identifier"),
				"additionalProperties": map[string]any{"type": "string", "description": "CEL expression over result.<name>"},
			},
		},
		"allOf": cases,
	}
	defs["input"] = inputSchema()
	schema := map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"$id":                  SchemaID,
		"title":                "opsflow runbook",
		"type":                 "object",
		"required":             []any{"apiVersion", "kind", "metadata", "steps"},
		"additionalProperties": false,
		"properties": map[string]any{
			"apiVersion": map[string]any{"const": APIVersion},
			"kind":       map[string]any{"const": KindName},
			"metadata": map[string]any{
				"type": "object", "required": []any{"name"}, "additionalProperties": false,
				"properties": map[string]any{
					"name":        map[string]any{"type": "string", "pattern": nameRE.String()},
					"description": map[string]any{"type": "string"},
					"labels":      map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}},
				},
			},
			"inputs": map[string]any{"type": "array", "items": defRef("input")},
			"steps":  defRef("steps"),
		},
		"$defs": defs,
	}
	b, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		panic(err) // only maps, slices and strings: cannot fail
	}
	return b
}

func needsWith(k *Kind) bool {
	if len(k.OneOf) > 0 {
		return true
	}
	for _, a := range k.Args {
		if a.Required {
			return true
		}
	}
	return false
}

func defRef(def string) map[string]any { return map[string]any{"$ref": "#/$defs/" + def} }

func objectSchema(fields []*Arg, oneOf [][]string) map[string]any {
	props := map[string]any{}
	var required []any
	for _, f := range fields {
		props[f.Name] = argSchema(f)
		if f.Required {
			required = append(required, f.Name)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	var all []any
	for _, g := range oneOf {
		var alts []any
		for _, name := range g {
			alts = append(alts, map[string]any{"required": []any{name}})
		}
		all = append(all, map[string]any{"oneOf": alts})
	}
	if len(all) > 0 {
		s["allOf"] = all
	}
	return s
}

// argSchema is an argument's schema; every type but string (and those
// that embed expressions) also takes exactly one ${{ expression }}.
func argSchema(a *Arg) map[string]any {
	var s map[string]any
	orExpr := true
	switch a.Type {
	case ArgString, ArgSelector:
		s, orExpr = map[string]any{"type": "string"}, false
	case ArgDuration:
		s, orExpr = defRef("duration"), false
	case ArgInt:
		s = map[string]any{"type": "integer"}
		if a.Min != nil {
			s["minimum"] = *a.Min
		}
	case ArgBool:
		s = map[string]any{"type": "boolean"}
	case ArgEnum:
		vals := make([]any, len(a.Values))
		for i, v := range a.Values {
			vals[i] = v
		}
		s, orExpr = map[string]any{"anyOf": []any{map[string]any{"enum": vals}, defRef("interpolated")}}, false
	case ArgList:
		s = map[string]any{"type": "array", "items": argSchema(a.Items)}
		if a.Min != nil {
			s["minItems"] = *a.Min
		}
	case ArgMap:
		s = map[string]any{"type": "object", "additionalProperties": argSchema(a.Items)}
	case ArgObject:
		s = objectSchema(a.Fields, a.OneOf)
	case ArgSteps:
		s, orExpr = defRef("steps"), false
	default: // ArgAny
		s, orExpr = map[string]any{}, false
	}
	if orExpr {
		s = map[string]any{"anyOf": []any{s, defRef("expression")}}
	}
	if a.Description != "" {
		s["description"] = a.Description
	}
	return s
}

func inputSchema() map[string]any {
	types := make([]any, len(InputTypes))
	for i, t := range InputTypes {
		types[i] = t
	}
	defaultIs := func(typ string, def map[string]any) any {
		return map[string]any{
			"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": typ}}, "required": []any{"type"}},
			"then": map[string]any{"properties": map[string]any{"default": def}},
		}
	}
	return map[string]any{
		"type": "object", "required": []any{"name", "type"}, "additionalProperties": false,
		"properties": map[string]any{
			"name":        defRef("identifier"),
			"type":        map[string]any{"enum": types},
			"description": map[string]any{"type": "string"},
			"required":    map[string]any{"type": "boolean"},
			"default":     map[string]any{},
			"regex":       map[string]any{"type": "string"},
			"min":         map[string]any{"type": "number"},
			"max":         map[string]any{"type": "number"},
			"values":      map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "uniqueItems": true},
			"items":       map[string]any{"enum": []any{InputString, InputInt, InputBool}},
		},
		"allOf": []any{
			defaultIs(InputString, map[string]any{"type": "string"}),
			defaultIs(InputEnum, map[string]any{"type": "string"}),
			defaultIs(InputSelector, map[string]any{"type": "string"}),
			defaultIs(InputInt, map[string]any{"type": "integer"}),
			defaultIs(InputBool, map[string]any{"type": "boolean"}),
			defaultIs(InputList, map[string]any{"type": "array"}),
			map[string]any{
				"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": InputSecret}}, "required": []any{"type"}},
				"then": map[string]any{"not": map[string]any{"required": []any{"default"}}},
			},
			map[string]any{
				"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": InputEnum}}, "required": []any{"type"}},
				"then": map[string]any{"required": []any{"values"}},
			},
		},
	}
}
