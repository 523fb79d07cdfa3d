package schema

import (
	"errors"
	"strings"

	"github.com/uptrace/bun"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// applySelector adds a Kubernetes label selector ("env=prod,role in
// (web,api),!deprecated") to a query over cis aliased ci. Each requirement
// is an (NOT) EXISTS over ci_labels, served by its (key, value) index.
func applySelector(q *bun.SelectQuery, selector string) (*bun.SelectQuery, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, errors.New("invalid label selector: " + strings.TrimPrefix(err.Error(), "unable to parse requirement: "))
	}
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		vals := r.Values().List()
		const exists = "EXISTS (SELECT 1 FROM ci_labels l WHERE l.ci_id = ci.id AND l.key = ?"
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			q = q.Where(exists+" AND l.value = ?)", r.Key(), vals[0])
		case selection.NotEquals:
			q = q.Where("NOT "+exists+" AND l.value = ?)", r.Key(), vals[0])
		case selection.In:
			q = q.Where(exists+" AND l.value IN (?))", r.Key(), bun.In(vals))
		case selection.NotIn:
			q = q.Where("NOT "+exists+" AND l.value IN (?))", r.Key(), bun.In(vals))
		case selection.Exists:
			q = q.Where(exists+")", r.Key())
		case selection.DoesNotExist:
			q = q.Where("NOT "+exists+")", r.Key())
		default:
			return nil, errors.New("operator " + string(r.Operator()) + " is not supported; use =, ==, !=, in, notin, key or !key")
		}
	}
	return q, nil
}

// ValidateSelector reports a selector's syntax error, or nil.
func ValidateSelector(selector string) error {
	_, err := applySelector(bun.NewSelectQuery(nil), selector)
	return err
}
