package schema_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

func TestScriptsVersionsAndRisk(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			name := fmt.Sprintf("disk-report-%s-%d", engine, time.Now().UnixNano())
			sc, v1, err := s.CreateScript(ctx, schema.ScriptInput{Name: name, Content: "df -h $MOUNT", Tags: []string{"disk"},
				Parameters: []schema.ParamDef{{Name: "MOUNT", Type: schema.ParamString, Default: "/"}}}, "alice")
			if err != nil || v1.Version != 1 || v1.Interpreter != "bash" || v1.Risk != schema.RiskNone || sc.LatestVersion != 1 {
				t.Fatalf("create: %+v %+v %v", sc, v1, err)
			}
			v2, err := s.AddScriptVersion(ctx, sc.ID, schema.ScriptInput{Content: "df -h $MOUNT && sudo reboot", Interpreter: "sh"}, "bob")
			if err != nil || v2.Version != 2 || v2.Risk != schema.RiskApproval || len(v2.RiskMatches) != 1 {
				t.Fatalf("v2: %+v %v", v2, err)
			}
			v3, err := s.AddScriptVersion(ctx, sc.ID, schema.ScriptInput{Content: "cleanup() { rm -rf / ; }\nreboot"}, "bob")
			if err != nil || v3.Risk != schema.RiskBlocked || len(v3.RiskMatches) != 2 {
				t.Fatalf("v3: %+v %v", v3, err)
			}
			// Versions are immutable: v1 still reads as written.
			got, err := s.ScriptVersion(ctx, sc.ID, 1)
			if err != nil || got.Content != "df -h $MOUNT" || got.Author != "alice" {
				t.Fatalf("v1: %+v %v", got, err)
			}
			if vs, _ := s.ScriptVersions(ctx, sc.ID); len(vs) != 3 || vs[0].Version != 3 {
				t.Fatalf("versions: %+v", vs)
			}
			_, _, err = s.CreateScript(ctx, schema.ScriptInput{Name: "bad name", Content: "", Interpreter: "perl",
				Parameters: []schema.ParamDef{{Name: "1x", Type: "float"}, {Name: "P", Type: schema.ParamSecret, Default: "x"}}}, "alice")
			f := fieldsOf(t, err)
			for _, k := range []string{"name", "content", "interpreter", "parameters[0].name", "parameters[0].type", "parameters[1].default"} {
				if f[k] == "" {
					t.Errorf("field %s not named: %v", k, f)
				}
			}
			if _, _, err := s.CreateScript(ctx, schema.ScriptInput{Name: name, Content: "true"}, "x"); fieldsOf(t, err)["name"] == "" {
				t.Fatal("duplicate name accepted")
			}
		})
	}
}

func TestParamCheck(t *testing.T) {
	one, ten := 1.0, 10.0
	cases := []struct {
		def  schema.ParamDef
		raw  string
		want string
		ok   bool
	}{
		{schema.ParamDef{Type: schema.ParamInt, Min: &one, Max: &ten}, `5`, "5", true},
		{schema.ParamDef{Type: schema.ParamInt, Min: &one, Max: &ten}, `11`, "", false},
		{schema.ParamDef{Type: schema.ParamInt}, `"5"`, "", false},
		{schema.ParamDef{Type: schema.ParamInt}, `1.5`, "", false},
		{schema.ParamDef{Type: schema.ParamBool}, `true`, "true", true},
		{schema.ParamDef{Type: schema.ParamEnum, Values: []string{"a", "b"}}, `"c"`, "", false},
		{schema.ParamDef{Type: schema.ParamString, Regex: `^/`}, `"/var"`, "/var", true},
		{schema.ParamDef{Type: schema.ParamString, Regex: `^/`}, `"var"`, "", false},
		{schema.ParamDef{Type: schema.ParamSecret}, `null`, "", false},
	}
	for i, c := range cases {
		got, err := c.def.Check(json.RawMessage(c.raw))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("case %d: %q %v", i, got, err)
		}
	}
}

// TestRiskSeesThroughShellSpelling: the builtin rules match a command
// however the shell lets it be spelled, and not a harmless lookalike.
func TestRiskSeesThroughShellSpelling(t *testing.T) {
	for _, c := range []struct {
		script string
		want   string
	}{
		{`rm -rf /`, schema.RiskBlocked},
		{`rm -rf "/"`, schema.RiskBlocked},
		{`rm -rf '/'`, schema.RiskBlocked},
		{`rm -rf \/`, schema.RiskBlocked},
		{`rm --recursive --force /`, schema.RiskBlocked},
		{`rm --force --recursive -- /`, schema.RiskBlocked},
		{`rm -r -f /`, schema.RiskBlocked},
		{`rm -R -f /`, schema.RiskBlocked},
		{`rm -fr /*`, schema.RiskBlocked},
		{`rm -rf //`, schema.RiskBlocked},
		{`rm -rf /./`, schema.RiskBlocked},
		{`/bin/rm -rf /`, schema.RiskBlocked},
		{`\rm -rf /`, schema.RiskBlocked},
		{`r\m -r\f /`, schema.RiskBlocked},
		{`"rm" "-rf" "/"`, schema.RiskBlocked},
		{`sudo rm -rf "$HOME"`, schema.RiskBlocked},
		{`rm -rf ~/`, schema.RiskBlocked},
		{`rm -rf $'/'`, schema.RiskBlocked},
		{"echo start; rm \\\n  -rf /", schema.RiskBlocked},
		{`cd /tmp && rm -rf "/" && echo done`, schema.RiskBlocked},
		{`"/sbin/reboot"`, schema.RiskApproval},
		{`sudo 'shutdown' -h now`, schema.RiskApproval},
		{`rm -rf /tmp/build`, schema.RiskNone},
		{`rm -rf "/var/lib/app/cache"`, schema.RiskNone},
		{`echo '# not a comment' ; ls /`, schema.RiskNone},
		{`rm -f /tmp/x.lock`, schema.RiskNone},
	} {
		got, matches := schema.AssessRisk(c.script, schema.BuiltinRiskRules)
		if got != c.want {
			t.Errorf("%q: risk %s %v, want %s (reads %q)", c.script, got, matches, c.want, schema.ShellWords(c.script))
		}
	}
}
