package schema

import (
	"errors"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// selectorSQL turns a Kubernetes label selector ("env=prod,role in
// (web,api),!deprecated") into conditions over cis aliased ci, with ?
// placeholders: each requirement is an (NOT) EXISTS over ci_labels, served
// by its (key, value) index.
func selectorSQL(selector string) ([]string, []any, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, nil, errors.New("invalid label selector: " + strings.TrimPrefix(err.Error(), "unable to parse requirement: "))
	}
	reqs, _ := sel.Requirements()
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
