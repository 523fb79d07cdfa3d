package activities

import (
	"errors"
	"strings"
	"testing"

	"github.com/opsflow/opsflow/internal/runbook"
)

func TestParseGitDocumentsPlacesErrors(t *testing.T) {
	reg := runbook.Builtin()
	cases := []struct {
		name, src string
		want      string // file:line: path prefix of the first error
	}{
		{"bad interpreter", "apiVersion: opsflow/v1\nkind: Script\nmetadata:\n  name: s\nspec:\n  content: echo\n  interpreter: perl\n", "f.yaml:7: spec.interpreter"},
		{"missing content", "apiVersion: opsflow/v1\nkind: Script\nmetadata:\n  name: s\nspec:\n  interpreter: bash\n", "f.yaml:5: spec.content"},
		{"unknown field", "apiVersion: opsflow/v1\nkind: CMDBType\nmetadata: {name: t}\nspec:\n  description: x\n  colour: red\n", "f.yaml:6: spec.colour"},
		{"bad param", "apiVersion: opsflow/v1\nkind: Script\nmetadata: {name: s}\nspec:\n  content: echo\n  parameters:\n    - name: ok\n      type: string\n    - name: 9bad\n      type: string\n", "f.yaml:9: spec.parameters[1].name"},
		{"bad name", "apiVersion: opsflow/v1\nkind: ApprovalPolicy\nmetadata:\n  name: 'a b'\nspec:\n  levels: [{roles: [approver], rule: any}]\n", "f.yaml:4: metadata.name"},
		{"bad rule", "apiVersion: opsflow/v1\nkind: RiskRule\nspec:\n  pattern: '('\n  action: block\n", "f.yaml:4: spec.pattern"},
		{"unknown kind", "apiVersion: opsflow/v1\nkind: Deployment\n", "f.yaml:2: kind"},
		{"runbook", "apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: r}\nsteps:\n  - id: a\n    kind: nope\n", "f.yaml:6:11: steps[0].kind"},
		{"bad yaml", "apiVersion: opsflow/v1\nkind: [\n", "f.yaml:2: invalid YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseGitDocuments(map[string][]byte{"f.yaml": []byte(c.src)}, reg)
			var es DocumentErrors
			if !errors.As(err, &es) || !strings.HasPrefix(es[0].Error(), c.want) {
				t.Fatalf("got %v, want %s…", err, c.want)
			}
		})
	}
	docs, err := ParseGitDocuments(map[string][]byte{
		"a.yaml":    []byte("apiVersion: opsflow/v1\nkind: RiskRule\nspec: {pattern: x, action: block}\n"),
		"b.yml":     []byte("apiVersion: v1\nkind: ConfigMap\n"),
		"notes.txt": []byte("apiVersion: opsflow/v1\nkind: Nope\n"),
	}, reg)
	if err != nil || len(docs) != 1 || docs[0].Name != "x" {
		t.Fatalf("docs %+v, %v", docs, err)
	}
	_, err = ParseGitDocuments(map[string][]byte{
		"a.yaml": []byte("apiVersion: opsflow/v1\nkind: RiskRule\nspec: {pattern: x, action: block}\n"),
		"b.yaml": []byte("apiVersion: opsflow/v1\nkind: RiskRule\nspec: {pattern: x, action: approval}\n"),
	}, reg)
	if err == nil || !strings.Contains(err.Error(), "also defined in a.yaml") {
		t.Fatalf("duplicate: %v", err)
	}
}
