package testenv

import (
	"testing"
	"time"
)

// Eventually polls f until it returns true or d passes, then fails the test
// naming what it waited for. Tests wait on conditions, never on a fixed
// sleep: a busy machine only makes them slower.
func Eventually(tb testing.TB, d time.Duration, what string, f func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
