package api

import (
	"errors"
	"testing"
)

// FuzzDecodeBody: whatever arrives, decoding either succeeds or fails with
// a 4xx API error — never a panic, never a 5xx.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{}`, `{"username":"a","role":"viewer"}`, `{"username":1}`, `[`, `null`, `{"x":1}`, `{"steps":"3"}`, "\x00", `{"a":1}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&createUserRequest{}, &updateUserRequest{}, &createTokenRequest{}, &startDemoRequest{}} {
			err := decodeBody(body, v)
			if err == nil {
				continue
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status >= 500 || ae.Code == "" || ae.Message == "" {
				t.Fatalf("decode %q into %T: %#v", body, v, err)
			}
		}
	})
}
