package runbook

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Check validates a value for the input, as script parameters are
// checked (schema.ParamDef.Check), and returns it normalized: string,
// int64, bool, or []any of those for a list. Numbers may come as any Go
// integer, an integral float64 (JSON) or a json.Number.
func (in *Input) Check(v any) (any, error) {
	switch in.Type {
	case InputString, InputSecret, InputEnum, InputSelector:
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("must be a string")
		}
		if in.Type == InputEnum && !slices.Contains(in.Values, s) {
			return nil, fmt.Errorf("must be one of %s", strings.Join(in.Values, ", "))
		}
		if in.Type == InputSelector {
			if _, err := labels.Parse(s); err != nil {
				return nil, fmt.Errorf("must be a label selector: %s", strings.TrimPrefix(err.Error(), "unable to parse requirement: "))
			}
		}
		if in.Regex != "" {
			if re, err := regexp.Compile(in.Regex); err == nil && !re.MatchString(s) {
				return nil, fmt.Errorf("must match %s", in.Regex)
			}
		}
		return s, nil
	case InputInt:
		n, ok := toInt(v)
		if !ok {
			return nil, errors.New("must be an integer")
		}
		if in.Min != nil && float64(n) < *in.Min || in.Max != nil && float64(n) > *in.Max {
			return nil, errors.New("out of range")
		}
		return n, nil
	case InputBool:
		b, ok := v.(bool)
		if !ok {
			return nil, errors.New("must be true or false")
		}
		return b, nil
	case InputList:
		list, ok := v.([]any)
		if !ok {
			if ss, isStrings := v.([]string); isStrings {
				for _, s := range ss {
					list = append(list, s)
				}
				ok = true
			}
		}
		if !ok {
			return nil, errors.New("must be a list")
		}
		if in.Min != nil && float64(len(list)) < *in.Min || in.Max != nil && float64(len(list)) > *in.Max {
			return nil, errors.New("has too few or too many items")
		}
		item := Input{Type: cmpOr(in.Items, InputString), Regex: in.Regex}
		out := make([]any, len(list))
		for i, e := range list {
			x, err := item.Check(e)
			if err != nil {
				return nil, fmt.Errorf("item %d %s", i, err)
			}
			out[i] = x
		}
		return out, nil
	}
	return nil, errors.New("unknown input type")
}

// zero is an optional input's value when the run gives none, so that an
// expression reads it without a presence test.
func (in *Input) zero() any {
	switch in.Type {
	case InputInt:
		return int64(0)
	case InputBool:
		return false
	case InputList:
		return []any{}
	}
	return ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func toInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		return int64(v), v <= math.MaxInt64
	case float64:
		return int64(v), v == math.Trunc(v) && math.Abs(v) < 1<<53
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}

// CheckInputs validates the inputs a run is started with against the
// runbook's declarations, fills defaults (an optional input without one
// gets its type's zero value: "", 0, false, []), and returns the values (as
// Input.Check normalizes them) or the problems keyed "inputs.<name>".
func (r *Runbook) CheckInputs(given map[string]any) (map[string]any, map[string]string) {
	out := map[string]any{}
	bad := map[string]string{}
	known := map[string]bool{}
	for i := range r.Inputs {
		in := &r.Inputs[i]
		known[in.Name] = true
		v, ok := given[in.Name]
		if !ok || v == nil {
			switch {
			case in.Default != nil:
				out[in.Name] = in.Default
			case in.Required || in.Type == InputSecret:
				bad["inputs."+in.Name] = "required"
			default:
				out[in.Name] = in.zero()
			}
			continue
		}
		x, err := in.Check(v)
		if err != nil {
			bad["inputs."+in.Name] = err.Error()
			continue
		}
		out[in.Name] = x
	}
	for k := range given {
		if !known[k] {
			bad["inputs."+k] = "no such input"
		}
	}
	if len(bad) > 0 {
		return nil, bad
	}
	return out, nil
}
