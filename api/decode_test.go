package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/opsflow/opsflow/schema"
)

// requestTypes returns a fresh value of every type a handler decodes a
// JSON body into.
func requestTypes() []any {
	return []any{
		&createUserRequest{}, &updateUserRequest{}, &createTokenRequest{}, &startDemoRequest{},
		&ticketRequest{}, &decisionRequest{}, &policyRequest{}, &delegationRequest{}, &groupRequest{},
		&typeRequest{}, &schema.CIInput{}, &schema.CIPatch{}, &relationRequest{}, &relationTypeRequest{},
		&discoveryRequest{}, &credentialRequest{}, &chatIdentityRequest{}, &schema.JobRequest{},
		&struct {
			Concurrency int `json:"concurrency"`
		}{}, // PATCH /jobs/{id}
		&scheduleRequest{}, &schema.ScriptInput{}, &riskRuleRequest{},
		&[]json.RawMessage{}, &importJSONRow{}, // CMDB JSON import
		&runbookRequest{}, &gitSourceRequest{},
	}
}

// FuzzDecodeBody: whatever arrives, decoding into any request type
// either succeeds or fails with a 4xx API error naming what is wrong —
// never a panic, never a 5xx — and what it lets through holds no NUL,
// no control character but tab and newlines, and valid UTF-8 only.
// testdata/fuzz/FuzzDecodeBody keeps the corpus, including the inputs
// that once broke it.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{}`, `{"username":"a","role":"viewer"}`, `{"username":1}`, `[`, `null`, `{"x":1}`, `{"steps":"3"}`, "\x00", `{"a":1}{}`,
		`{"title":"a\u0000b"}`, `{"comment":"\ud800"}`, `{"members":["x","\u0001"]}`, `{"spec":{"levels":[{"users":["\ud83d\ude00","\udc00"]}]}}`,
		"{\"name\":\"\xff\"}", `[{"name":"订单-api-01","labels":{"k\u0000":"v"}}]`, `{"targets":{"selector":"a in (b,c)","hosts":[1]}}`,
		`{"concurrency":99999999999999999999}`, "apiVersion: opsflow/v1\nkind: Runbook\n\x00", `{"source":"steps: []","comment":"\u0007"}`, `{"\\u0000":1}`, `{"a":"\\\ud800"}`, `"\ud800\udc00"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// A raw document body (a runbook sent as YAML) is checked as text.
		if err := decodeDocument(body); err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status >= 500 || ae.Code == "" || (ae.Code == CodeValidation && len(ae.Fields) == 0) {
				t.Fatalf("decode document %q: %#v", body, err)
			}
		} else if bad := badString(reflect.ValueOf(string(body))); bad != "" {
			t.Fatalf("decode document %q let through %q", body, bad)
		}
		for _, v := range requestTypes() {
			err := decodeBody(body, v)
			if err != nil {
				var ae *Error
				if !errors.As(err, &ae) || ae.Status < 400 || ae.Status >= 500 || ae.Code == "" || ae.Message == "" {
					t.Fatalf("decode %q into %T: %#v", body, v, err)
				}
				if ae.Code == CodeValidation && len(ae.Fields) == 0 {
					t.Fatalf("decode %q into %T: a validation error naming no field: %#v", body, v, ae)
				}
				continue
			}
			if bad := badString(reflect.ValueOf(v)); bad != "" {
				t.Fatalf("decode %q into %T let through %q", body, v, bad)
			}
		}
	})
}

// badString finds a decoded string no field may hold.
func badString(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return badString(v.Elem())
		}
	case reflect.String:
		s := v.String()
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' }) {
			return s
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				if s := badString(v.Field(i)); s != "" {
					return s
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 { // json.RawMessage: checked as the body
			return ""
		}
		for i := range v.Len() {
			if s := badString(v.Index(i)); s != "" {
				return s
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			if s := badString(k); s != "" {
				return s
			}
			if s := badString(v.MapIndex(k)); s != "" {
				return s
			}
		}
	}
	return ""
}

// TestDecodeRefusesHostileText: NUL, control characters, invalid UTF-8
// and lone surrogates are refused with 422 naming the field by its path.
func TestDecodeRefusesHostileText(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`{"title":"a\u0000b","policy":"p"}`, "title"},
		{`{"title":"ok","description":"x\u001by"}`, "description"},
		{`{"comment":"\ud800"}`, "comment"},
		{`{"comment":"a\udc00"}`, "comment"},
		{"{\"comment\":\"\xff\xfe\"}", "comment"},
		{`{"members":["ok","bad\u0000"]}`, "members[1]"},
		{`{"spec":{"levels":[{"users":["a"]},{"users":["b","\ud83d"]}]}}`, "spec.levels[1].users[1]"},
		{`[{"name":"a"},{"name":"b","labels":{"env":"\u0007"}}]`, "[1].labels.env"},
	} {
		err := decodeBody([]byte(c.body), &map[string]any{})
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != 422 || ae.Fields[c.field] == "" {
			t.Errorf("%s: %#v, want 422 naming %s", c.body, err, c.field)
		}
	}
	// Text that only looks odd passes: escapes, pairs, U+FFFD as sent,
	// tabs and newlines, any script.
	for _, ok := range []string{`{"a":"tab\tand\nnewline\r"}`, `{"a":"\ud83d\ude00 😀"}`, `{"a":"\ufffd �"}`, `{"a":"\\u0000 is how you write NUL"}`, `{"a":"订单-api-01"}`} {
		var m map[string]any
		if err := decodeBody([]byte(ok), &m); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
