package sshexec

import (
	"slices"
	"strings"
	"testing"
)

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

// TestOutputSink: live readers get complete lines only, secrets masked
// (also one split between two reads); after Hold the pieces wait for
// TakeHeld; nothing past OutputCap is stored, and the tail keeps the end.
func TestOutputSink(t *testing.T) {
	var stored []string
	o := NewOutputSink(func(s string) { stored = append(stored, s) }, []string{"hunter2"})
	o.Write("one\ntwo hun")
	o.Write("ter2\nthr")
	if want := []string{"one\n", "two ***\n"}; !slices.Equal(stored, want) {
		t.Fatalf("stored %q, want %q", stored, want)
	}
	if o.Size() != int64(len("one\ntwo hunter2\nthr")) {
		t.Fatalf("size %d", o.Size())
	}
	o.Hold()
	o.Write("ee\n")
	o.Finish()
	if held := o.TakeHeld(); !slices.Equal(held, []string{"three\n"}) || len(stored) != 2 {
		t.Fatalf("held %q, stored %q", held, stored)
	}
	if o.TakeHeld() != nil {
		t.Fatal("held pieces returned twice")
	}
	if got := o.Tail(); got != "one\ntwo ***\nthree\n" || o.Total() != int64(len(got)) {
		t.Fatalf("tail %q total %d", got, o.Total())
	}

	stored = nil
	big := NewOutputSink(func(s string) { stored = append(stored, s) }, nil)
	line := strings.Repeat("x", 1023) + "\n"
	for range 3 * OutputCap / len(line) {
		big.Write(line)
	}
	big.Write("end\n")
	n := 0
	for _, s := range stored {
		n += len(s)
	}
	if n != OutputCap || big.Total() != 3*OutputCap+4 {
		t.Fatalf("stored %d bytes, total %d", n, big.Total())
	}
	if tail := big.Tail(); len(tail) != OutputCap || !strings.HasSuffix(tail, "x\nend\n") {
		t.Fatalf("tail of %d bytes ends %q", len(tail), tail[len(tail)-10:])
	}
}
