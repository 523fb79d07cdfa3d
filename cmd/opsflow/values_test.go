package main

import (
	"encoding/json"
	"flag"
	"slices"
	"testing"
)

func TestValueTyping(t *testing.T) {
	for _, tc := range []struct {
		typ, items, in, want string
	}{
		{"string", "", "8080", `"8080"`},
		{"enum", "", "true", `"true"`},
		{"secret", "", "", `""`},
		{"int", "", "-12", `-12`},
		{"int", "", "1.5", `"1.5"`}, // the API says it wants an integer
		{"bool", "", "true", `true`},
		{"bool", "", "yes", `"yes"`},
		{"list", "", "a, b", `["a","b"]`},
		{"list", "int", "1,x", `[1,"x"]`},
		{"list", "", "", `[]`},
	} {
		if got := string(valueFor(tc.typ, tc.items, tc.in)); got != tc.want {
			t.Errorf("%s %q: %s, want %s", tc.typ, tc.in, got, tc.want)
		}
	}
	for in, want := range map[string]string{"5": `5`, "-1.5e3": `-1.5e3`, "false": `false`, "007": `"007"`, "null": `"null"`, `"q"`: `"\"q\""`, "web": `"web"`} {
		if got := string(guessValue(in)); got != want {
			t.Errorf("guess %q: %s, want %s", in, got, want)
		}
	}

	v := newValues()
	for _, set := range []struct {
		f  *assignFlag
		in string
		ok bool
	}{
		{v.textFlag(), "a=1=2", true}, {v.jsonFlag(), "b=[1]", true}, {v.jsonFlag(), "c=web", false},
		{v.textFlag(), "a=3", false}, {v.textFlag(), "b=3", false}, {v.textFlag(), "=x", false}, {v.textFlag(), "x", false},
	} {
		if err := set.f.Set(set.in); (err == nil) != set.ok {
			t.Errorf("set %q: %v", set.in, err)
		}
	}
	got, _ := json.Marshal(v.resolve([]declared{{Name: "a", Type: "string"}}, true))
	if string(got) != `{"a":"1=2","b":[1]}` {
		t.Errorf("resolved %s", got)
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		wait bool
	}{
		{[]string{"NAME", "--wait"}, []string{"NAME"}, true},
		{[]string{"--wait", "A", "B"}, []string{"A", "B"}, true},
		{[]string{"A", "--", "--wait"}, []string{"A", "--wait"}, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		wait := fs.Bool("wait", false, "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *wait != tc.wait {
			t.Errorf("%q: %q %v %v", tc.args, pos, *wait, err)
		}
	}
}
