package secret

import (
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Payload metadata marking an encrypted payload.
const (
	encodingEncrypted = "binary/encrypted"
	metaEncoding      = "encoding"
	payloadContext    = "temporal-payload"
)

// PayloadCodec encrypts every Temporal payload (workflow and activity
// inputs, results, heartbeats, memos) with the keyring, so nothing crosses
// Temporal — or sits in its history — in clear. The Temporal Web UI
// decodes through the codec endpoint the API serves.
type PayloadCodec struct {
	Keys *Keyring
}

var _ converter.PayloadCodec = (*PayloadCodec)(nil)

// Encode seals each payload whole (metadata and data).
func (c *PayloadCodec) Encode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(ps))
	for i, p := range ps {
		b, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("codec: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{metaEncoding: []byte(encodingEncrypted)},
			Data:     []byte(c.Keys.Seal(b, payloadContext)),
		}
	}
	return out, nil
}

// ErrUnencryptedPayload refuses a payload the codec did not seal.
var ErrUnencryptedPayload = errors.New("codec: refused an unencrypted payload: only holders of opsflow's secret key may talk to its workflows")

// Decode opens sealed payloads and refuses any other (strict): whoever
// can reach the Temporal frontend but does not hold the key cannot start
// opsflow's workflows or send them updates or signals, since their input
// never decodes. What Temporal itself creates and passes to workflows
// (a schedule's start, with the action's arguments as the client encoded
// them) was sealed by a key holder; search attributes do not pass through
// the codec. An empty list is fine.
func (c *PayloadCodec) Decode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(ps))
	for i, p := range ps {
		if string(p.GetMetadata()[metaEncoding]) != encodingEncrypted {
			return nil, ErrUnencryptedPayload
		}
		b, err := c.Keys.Open(string(p.GetData()), payloadContext)
		if err != nil {
			return nil, fmt.Errorf("codec: %w", err)
		}
		var orig commonpb.Payload
		if err := proto.Unmarshal(b, &orig); err != nil {
			return nil, fmt.Errorf("codec: %w", err)
		}
		out[i] = &orig
	}
	return out, nil
}

// DataConverter wraps the SDK's default converter with the codec.
func (k *Keyring) DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), &PayloadCodec{Keys: k})
}
