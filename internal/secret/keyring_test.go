package secret

import (
	"strings"
	"testing"
)

func TestSealOpenRotate(t *testing.T) {
	k1, _ := ParseKey(NewKey())
	k2, _ := ParseKey(NewKey())
	old, err := NewKeyring(k1)
	if err != nil {
		t.Fatal(err)
	}
	sealed := old.Seal([]byte("hunter2"), "credential:db")
	if strings.Contains(sealed, "hunter2") {
		t.Fatal("plaintext visible")
	}
	if pt, err := old.Open(sealed, "credential:db"); err != nil || string(pt) != "hunter2" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := old.Open(sealed, "credential:other"); err == nil {
		t.Fatal("opened under another context")
	}
	// Rotation: the new primary opens old values and marks them stale.
	rotated, err := NewKeyring(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := rotated.Open(sealed, "credential:db"); err != nil || string(pt) != "hunter2" || !rotated.Stale(sealed) {
		t.Fatalf("rotated open: %q %v stale=%v", pt, err, rotated.Stale(sealed))
	}
	if rotated.Stale(rotated.Seal([]byte("x"), "c")) {
		t.Fatal("fresh value stale")
	}
	// A ring without the old key refuses, naming the key.
	fresh, _ := NewKeyring(k2)
	if _, err := fresh.Open(sealed, "credential:db"); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := ParseKey("short"); err == nil {
		t.Fatal("short key accepted")
	}
}
