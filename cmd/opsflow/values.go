package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// values are the --param/--input k=v and --param-json/--input-json k=JSON
// flags of a command, by name. The API checks each value strictly against
// its declared type (a string input refuses 8080, an int input "8080"), so
// k=v is typed by the declaration the command fetched (valueFor); k=JSON is
// sent as given.
type values struct {
	text  map[string]string
	typed map[string]json.RawMessage
}

func newValues() *values {
	return &values{text: map[string]string{}, typed: map[string]json.RawMessage{}}
}

// textFlag is the k=v flag.
func (v *values) textFlag() *assignFlag { return &assignFlag{v: v} }

// jsonFlag is the k=JSON flag.
func (v *values) jsonFlag() *assignFlag { return &assignFlag{v: v, json: true} }

type assignFlag struct {
	v    *values
	json bool
}

func (f *assignFlag) String() string { return "" }

func (f *assignFlag) Set(s string) error {
	k, val, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want NAME=VALUE", s)
	}
	if _, dup := f.v.text[k]; dup {
		return fmt.Errorf("%s given twice", k)
	}
	if _, dup := f.v.typed[k]; dup {
		return fmt.Errorf("%s given twice", k)
	}
	if !f.json {
		f.v.text[k] = val
		return nil
	}
	if !json.Valid([]byte(val)) {
		return fmt.Errorf("%s: %q is not JSON (a string is \"…\" in quotes)", k, val)
	}
	f.v.typed[k] = json.RawMessage(val)
	return nil
}

// declared is a parameter's or input's type as its script version or
// runbook declares it: int, bool, list (of items) or a string kind.
type declared struct {
	Name  string `json:"name" yaml:"name"`
	Type  string `json:"type" yaml:"type"`
	Items string `json:"items" yaml:"items"`
}

// resolve returns every value as JSON, k=v typed by decls. known is false
// when the declarations could not be read: then a k=v that reads as a JSON
// number or true/false is sent as one, anything else as a string.
func (v *values) resolve(decls []declared, known bool) map[string]json.RawMessage {
	types := map[string]declared{}
	for _, d := range decls {
		types[d.Name] = d
	}
	out := make(map[string]json.RawMessage, len(v.text)+len(v.typed))
	for k, s := range v.text {
		d, ok := types[k]
		switch {
		case ok:
			out[k] = valueFor(d.Type, d.Items, s)
		case known:
			out[k] = jsonString(s) // undeclared: the API names it
		default:
			out[k] = guessValue(s)
		}
	}
	for k, raw := range v.typed {
		out[k] = raw
	}
	return out
}

// valueFor types s as a value of type typ: an int or bool that does not
// parse stays a string, for the API to say what it wants; a list is
// comma-separated items of type items.
func valueFor(typ, items, s string) json.RawMessage {
	switch typ {
	case "int":
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return json.RawMessage(s)
		}
	case "bool":
		if s == "true" || s == "false" {
			return json.RawMessage(s)
		}
	case "list":
		list := []json.RawMessage{}
		if strings.TrimSpace(s) != "" {
			for _, e := range strings.Split(s, ",") {
				list = append(list, valueFor(items, "", strings.TrimSpace(e)))
			}
		}
		b, _ := json.Marshal(list)
		return b
	}
	return jsonString(s)
}

// guessValue is a JSON number, true or false when s reads as one, else s
// as a string.
func guessValue(s string) json.RawMessage {
	var x any
	if json.Unmarshal([]byte(s), &x) == nil {
		switch x.(type) {
		case float64, bool:
			return json.RawMessage(s)
		}
	}
	return jsonString(s)
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// runbookInputs reads the declared inputs of a runbook document (YAML or
// JSON) without checking the rest, so a server with step kinds this
// binary does not know still types the values right.
func runbookInputs(src string) ([]declared, bool) {
	var doc struct {
		Inputs []declared `yaml:"inputs"`
	}
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, false
	}
	return doc.Inputs, true
}

// parseArgs parses fs's flags wherever they stand among the positional
// arguments (flag.Parse stops at the first), as in `opsflow runbook run
// NAME --wait`; after "--" all are positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}
