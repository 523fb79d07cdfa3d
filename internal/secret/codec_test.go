package secret

import (
	"errors"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// TestStrictCodec: what the codec sealed opens again; a payload it did
// not seal (plain JSON, as a client without the key sends) is refused,
// not passed through; an empty list is fine.
func TestStrictCodec(t *testing.T) {
	k, _ := ParseKey(NewKey())
	keys, _ := NewKeyring(k)
	c := &PayloadCodec{Keys: keys}
	plain, err := converter.GetDefaultDataConverter().ToPayload(map[string]string{"Voter": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encode([]*commonpb.Payload{plain})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.Decode(enc)
	if err != nil || string(dec[0].Data) != string(plain.Data) {
		t.Fatalf("round trip: %v %v", dec, err)
	}
	if _, err := c.Decode([]*commonpb.Payload{plain}); !errors.Is(err, ErrUnencryptedPayload) {
		t.Fatalf("unencrypted payload: %v", err)
	}
	if _, err := c.Decode([]*commonpb.Payload{enc[0], plain}); !errors.Is(err, ErrUnencryptedPayload) {
		t.Fatalf("an unencrypted payload among sealed ones: %v", err)
	}
	forged := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/encrypted")}, Data: plain.Data}
	if _, err := c.Decode([]*commonpb.Payload{forged}); err == nil {
		t.Fatal("a payload marked encrypted but not sealed with the key was accepted")
	}
	if out, err := c.Decode(nil); err != nil || len(out) != 0 {
		t.Fatalf("empty list: %v %v", out, err)
	}
}
