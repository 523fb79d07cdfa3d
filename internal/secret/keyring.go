// Package secret encrypts secrets at rest with AES-256-GCM under a keyring:
// one primary key that seals, older keys that still open, so keys rotate
// without a flag day.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Keyring seals with its primary key and opens with any of its keys.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

// ErrNoKey is returned when no key is configured.
var ErrNoKey = errors.New("no secret key: set OPSFLOW_SECRET_KEY (32 bytes, base64) or OPSFLOW_SECRET_KEY_FILE")

// NewKeyring builds a keyring from 32-byte keys; the first is primary.
func NewKeyring(primary []byte, old ...[]byte) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{primary}, old...) {
		if len(key) != 32 {
			return nil, fmt.Errorf("secret key %d: want 32 bytes, got %d", i, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := keyID(key)
		if i == 0 {
			k.primary = id
		}
		k.aeads[id] = aead
	}
	return k, nil
}

func keyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// ParseKey reads a key written as base64 (standard or URL) or hex.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if b, err := dec(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("secret key must be 32 bytes, written as base64 or hex")
}

// FromEnv loads the keyring from OPSFLOW_SECRET_KEY or the file named by
// OPSFLOW_SECRET_KEY_FILE, plus retired keys in OPSFLOW_SECRET_OLD_KEYS
// (comma-separated) that still open what they sealed.
func FromEnv() (*Keyring, error) {
	v := os.Getenv("OPSFLOW_SECRET_KEY")
	if v == "" {
		if f := os.Getenv("OPSFLOW_SECRET_KEY_FILE"); f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("secret key file: %w", err)
			}
			v = string(b)
		}
	}
	if v == "" {
		return nil, ErrNoKey
	}
	primary, err := ParseKey(v)
	if err != nil {
		return nil, err
	}
	var old [][]byte
	for _, s := range strings.Split(os.Getenv("OPSFLOW_SECRET_OLD_KEYS"), ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("OPSFLOW_SECRET_OLD_KEYS: %w", err)
		}
		old = append(old, k)
	}
	return NewKeyring(primary, old...)
}

// NewKey returns a random key, base64-encoded.
func NewKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

const prefix = "v1."

// Seal encrypts plaintext bound to context (which must be given again to
// open it), as "v1.<key id>.<base64 nonce+ciphertext>".
func (k *Keyring) Seal(plaintext []byte, context string) string {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	ct := aead.Seal(nonce, nonce, plaintext, []byte(context))
	return prefix + k.primary + "." + base64.RawStdEncoding.EncodeToString(ct)
}

// Open decrypts what Seal produced under any key of the ring.
func (k *Keyring) Open(sealed, context string) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	id, data, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return nil, errors.New("secret: not a sealed value")
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("secret: sealed with key %s, which is not configured", id)
	}
	ct, err := base64.RawStdEncoding.DecodeString(data)
	if err != nil || len(ct) < aead.NonceSize() {
		return nil, errors.New("secret: corrupt sealed value")
	}
	pt, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], []byte(context))
	if err != nil {
		return nil, errors.New("secret: cannot decrypt (wrong key or context)")
	}
	return pt, nil
}

// Stale reports whether sealed was made with a key other than the primary
// and should be re-sealed.
func (k *Keyring) Stale(sealed string) bool {
	rest, _ := strings.CutPrefix(sealed, prefix)
	id, _, _ := strings.Cut(rest, ".")
	return id != k.primary
}
