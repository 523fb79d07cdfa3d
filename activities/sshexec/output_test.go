package sshexec

import "testing"

func TestMaskTail(t *testing.T) {
	for _, c := range []struct {
		buf  string
		keep int
		want string
	}{
		{"xxSECRETyy", 4, "***yy"},
		{"SECRETabcd", 4, "abcd"},
		{"abSECRETcdSECRET", 8, "cd***"},
		{"abSECRETcdSECRET", 9, "***cd***"},
		{"abcdefgh", 3, "fgh"},
	} {
		if got := maskTail(c.buf, []string{"SECRET"}, c.keep); got != c.want {
			t.Errorf("maskTail(%q, %d) = %q, want %q", c.buf, c.keep, got, c.want)
		}
	}
}
