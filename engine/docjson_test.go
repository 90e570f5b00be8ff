package engine

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/notifiers"
)

// decodeAny is JSON decoded into plain maps: field names, omissions and
// values, whatever the key order or escaping.
func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

// TestDocJSONIsEncodingJSON: the hand-written document and candidates
// decode to what encoding/json's encoding of the same values decodes to.
func TestDocJSONIsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("MSK", 3*3600))
	docs := []notifiers.Notification{
		{},
		{ID: "01J", IdempotencyKey: "r/o-1", Rule: "r", Priority: "high", To: notifiers.Recipient{Customer: "c-1"},
			Locale: "ru", Subject: "Заказ <o-1> & \"co\"", Body: "line\nnext\t\u2028 \x00 é", Entity: notifiers.EntityRef{Type: "order", Key: "o-1"},
			Vars: map[string]any{"new_eta": "2026-11-23", "n": 3, "f": 2.5, "big": 1e21, "small": 1e-7, "list": []any{1, "a", nil, true, map[string]any{"x": []any{}}}, "nil": nil,
				"when": at, "dur": 90 * time.Minute},
			CreatedAt: at},
		{ID: "x", To: notifiers.Recipient{Address: "a@b"}, HTML: "<p>hi</p>", Channel: "email", Vars: map[string]any{}, CreatedAt: time.Unix(0, 0).UTC()},
		{ID: "y", To: notifiers.Recipient{Customer: "c", Address: "a@b"}, Body: "\xff\xfe invalid utf-8", CreatedAt: at.UTC()},
	}
	for i := range docs {
		got, err := appendDoc(nil, &docs[i])
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		want, err := json.Marshal(&docs[i])
		if err != nil {
			t.Fatal(err)
		}
		if g, w := decodeAny(t, got), decodeAny(t, want); !reflect.DeepEqual(g, w) {
			t.Errorf("doc %d:\n got %s\nwant %s", i, got, want)
		}
		if g := docJSON(&docs[i]); !reflect.DeepEqual(decodeAny(t, g), decodeAny(t, want)) {
			t.Errorf("docJSON %d: %s", i, g)
		}
	}
	for _, cands := range [][]policy.Candidate{nil, {}, {{Channel: "email", Address: "a@b"}, {Channel: "push"}}, {{Channel: "sms", Address: "+7 <900>"}}} {
		want, _ := json.Marshal(cands)
		if got := appendCandidates(nil, cands); !reflect.DeepEqual(decodeAny(t, got), decodeAny(t, want)) {
			t.Errorf("candidates %v:\n got %s\nwant %s", cands, got, want)
		}
	}
	// A time encoding/json refuses is refused, and docJSON falls back to
	// what encoding/json writes (nothing): the row then fails as before.
	bad := notifiers.Notification{ID: "z", CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := appendDoc(nil, &bad); err == nil {
		t.Error("year 10000 encoded")
	}
}
