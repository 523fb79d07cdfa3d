package schema

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Bounds on a selector, so that no query outgrows what the database
// takes (SQLite's expression depth and variable count): far above any
// selector a person writes.
const (
	MaxSelectorLen          = 8 << 10
	MaxSelectorRequirements = 64
	MaxSelectorSetValues    = 256
	MaxSelectorValues       = 1024
)

// selectorSQL turns a Kubernetes label selector ("env=prod,role in
// (web,api),!deprecated") into conditions over cis aliased ci, with ?
// placeholders: each requirement is an (NOT) EXISTS over ci_labels, served
// by its (key, value) index.
func selectorSQL(selector string) ([]string, []any, error) {
	if len(selector) > MaxSelectorLen {
		return nil, nil, fmt.Errorf("at most %d bytes", MaxSelectorLen)
	}
	// Counted before parsing: the parser's own work grows with the terms.
	if n := strings.Count(selector, ",") + 1; n > MaxSelectorRequirements+MaxSelectorValues {
		return nil, nil, fmt.Errorf("at most %d requirements of at most %d values each", MaxSelectorRequirements, MaxSelectorSetValues)
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, nil, errors.New("invalid label selector: " + strings.TrimPrefix(err.Error(), "unable to parse requirement: "))
	}
	reqs, _ := sel.Requirements()
	if len(reqs) > MaxSelectorRequirements {
		return nil, nil, fmt.Errorf("at most %d requirements, not %d", MaxSelectorRequirements, len(reqs))
	}
	total := 0
	for _, r := range reqs {
		n := r.Values().Len()
		if n > MaxSelectorSetValues {
			return nil, nil, fmt.Errorf("at most %d values in the set of %s, not %d", MaxSelectorSetValues, r.Key(), n)
		}
		total += n
	}
	if total > MaxSelectorValues {
		return nil, nil, fmt.Errorf("at most %d values in all, not %d", MaxSelectorValues, total)
	}
	var conds []string
	var args []any
	const exists = "EXISTS (SELECT 1 FROM ci_labels l WHERE l.ci_id = ci.id AND l.key = ?"
	in := func(vals []string) string {
		for _, v := range vals {
			args = append(args, v)
		}
		return strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", ")
	}
	for _, r := range reqs {
		vals := r.Values().List()
		args = append(args, r.Key())
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			conds = append(conds, exists+" AND l.value = ?)")
			args = append(args, vals[0])
		case selection.NotEquals:
			conds = append(conds, "NOT "+exists+" AND l.value = ?)")
			args = append(args, vals[0])
		case selection.In:
			conds = append(conds, exists+" AND l.value IN ("+in(vals)+"))")
		case selection.NotIn:
			conds = append(conds, "NOT "+exists+" AND l.value IN ("+in(vals)+"))")
		case selection.Exists:
			conds = append(conds, exists+")")
		case selection.DoesNotExist:
			conds = append(conds, "NOT "+exists+")")
		default:
			return nil, nil, errors.New("operator " + string(r.Operator()) + " is not supported; use =, ==, !=, in, notin, key or !key")
		}
	}
	return conds, args, nil
}

// ValidateSelector reports a selector's syntax error, or nil.
func ValidateSelector(selector string) error {
	_, _, err := selectorSQL(selector)
	return err
}
