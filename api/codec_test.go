package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestPayloadsEncryptedInHistory starts a run whose input carries a
// marker, reads the raw history from the Temporal server, and finds only
// ciphertext there; the codec endpoint decodes it for a logged-in user
// (CORS for the Temporal UI's origin) and refuses anonymous callers.
func TestPayloadsEncryptedInHistory(t *testing.T) {
	e := newEnv(t)
	const marker = "marker-4f9c2a"
	res := e.do(http.MethodPost, "/api/v1/demo/runs", "operator", map[string]any{"steps": 1, "target": "host-" + marker})
	var run runView
	res.json(t, &run)
	if res.Status != 201 {
		t.Fatalf("start: %d %s", res.Status, res.Body)
	}
	ctx := context.Background()
	if err := e.temporal.GetWorkflow(ctx, run.WorkflowID, "").Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	it := e.temporal.GetWorkflowHistory(ctx, run.WorkflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var input *commonpb.Payloads
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := protojson.Marshal(ev)
		// Search attributes (kind, starter, target) stay readable for
		// filtering; they carry no secrets. Everything else is sealed.
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			input = a.GetInput()
			raw, _ = protojson.Marshal(a.GetInput())
		}
		if strings.Contains(string(raw), marker) || strings.Contains(string(raw), base64.StdEncoding.EncodeToString([]byte(marker))[:8]) {
			t.Fatalf("history event %s carries the input in clear", ev.GetEventType())
		}
	}
	if input == nil || string(input.Payloads[0].Metadata["encoding"]) != "binary/encrypted" {
		t.Fatalf("input payload not encrypted: %v", input)
	}
	body, _ := protojson.Marshal(input)
	// Decoding is for operators and admins; encoding for admins only.
	if r := e.do(http.MethodPost, "/codec/decode", "viewer", string(body), "Origin", "http://temporal-ui.test"); r.Status != 403 {
		t.Fatalf("a viewer's decode: %d %s", r.Status, r.Body)
	}
	plain, _ := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}}})
	if r := e.do(http.MethodPost, "/codec/encode", "operator", string(plain)); r.Status != 403 {
		t.Fatalf("an operator's encode: %d %s", r.Status, r.Body)
	}
	var encoded commonpb.Payloads
	if r := e.do(http.MethodPost, "/codec/encode", "admin", string(plain)); r.Status != 200 || protojson.Unmarshal(r.Body, &encoded) != nil ||
		len(encoded.Payloads) != 1 || string(encoded.Payloads[0].Metadata["encoding"]) != "binary/encrypted" {
		t.Fatalf("an admin's encode: %d %s", r.Status, r.Body)
	}
	dec := e.do(http.MethodPost, "/codec/decode", "operator", string(body), "Origin", "http://temporal-ui.test")
	if dec.Status != 200 || dec.Header.Get("Access-Control-Allow-Origin") != "http://temporal-ui.test" {
		t.Fatalf("decode: %d %s %v", dec.Status, dec.Body, dec.Header)
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal(dec.Body, &out); err != nil {
		t.Fatal(err)
	}
	var in map[string]any
	if err := json.Unmarshal(out.Payloads[0].Data, &in); err != nil || !strings.Contains(in["Target"].(string), marker) {
		t.Fatalf("decoded %s %v", out.Payloads[0].Data, err)
	}
	// Without a session the refusal still carries CORS for the Temporal
	// UI, which then shows its "log in to opsflow" message rather than a
	// CORS error.
	if anon := e.do(http.MethodPost, "/codec/decode", "", string(body), "Origin", "http://temporal-ui.test"); anon.Status != 401 ||
		anon.Header.Get("Access-Control-Allow-Origin") != "http://temporal-ui.test" || anon.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("anonymous decode: %d %v", anon.Status, anon.Header)
	}
	if anon := e.do(http.MethodPost, "/codec/decode", "", string(body), "Origin", "http://evil.test"); anon.Status != 401 || anon.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("anonymous decode from another origin: %d %v", anon.Status, anon.Header)
	}
	if other := e.do(http.MethodPost, "/codec/decode", "operator", string(body), "Origin", "http://evil.test"); other.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS granted to another origin")
	}
}
