// Package axe checks the page open in a chromedp tab with axe-core
// (vendored from npm: axe.min.js, see ui/static/vendor/README.md). It is
// for tests only: the product never serves axe.
package axe

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/chromedp/chromedp"
)

//go:embed axe.min.js
var source string

// Violation is one axe rule that the page breaks, with the elements that
// break it.
type Violation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []Node `json:"nodes"`
}

// Node is one element breaking a rule: its CSS selector, its opening
// HTML and axe's account of what is wrong.
type Node struct {
	Target  string `json:"target"`
	HTML    string `json:"html"`
	Failure string `json:"failure"`
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", v.ID, v.Impact, v.Help)
	for i, n := range v.Nodes {
		if i == 3 {
			fmt.Fprintf(&b, "\n    … and %d more", len(v.Nodes)-i)
			break
		}
		fmt.Fprintf(&b, "\n    %s %s: %s", n.Target, n.HTML, strings.ReplaceAll(n.Failure, "\n", " "))
	}
	return b.String()
}

// run is evaluated after axe is in the page: the serious and critical
// violations against WCAG 2.x A and AA (plus axe's best practices).
const run = `axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations
  .filter(v => v.impact === "serious" || v.impact === "critical")
  .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => ({
    target: [].concat(n.target).join(" "), html: (n.html || "").slice(0, 200), failure: n.failureSummary || ""}))})))`

// Serious injects axe-core into the tab's current page (once per page) and
// returns its violations of impact serious or critical.
func Serious(ctx context.Context) ([]Violation, error) {
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`if (!window.axe) {`+source+`}; true`)); err != nil {
		return nil, fmt.Errorf("axe: inject: %w", err)
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]Violation](run, chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, fmt.Errorf("axe: run: %w", err)
	}
	return vs, nil
}
