package event

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bodies (plain JSON, CloudEvents structured and
// binary mode, garbage) to Decode. Seeds: testdata/fuzz/FuzzDecode. It
// checks that Decode never panics, that it gives exactly one of an event
// and a rejection, that an accepted event is complete (non-nil data, an id,
// a UTC time) and holds only normalized values, that a rejection names a
// known reason, and that KeyString never panics on any decoded value.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"order_id":"o-1"}`), "", false, "", "", uint64(1), 1<<20)
	f.Fuzz(func(t *testing.T, body []byte, msgID string, binary bool, ceID, ceTime string, seq uint64, maxBytes int) {
		raw := Raw{Subject: "orders.created", Body: body, MsgID: msgID, Seq: seq, Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.FixedZone("x", 3600))}
		if binary {
			raw.CE = &CEHeaders{SpecVersion: "1.0", ID: ceID, Type: "t", Time: ceTime, Source: "/fuzz"}
		}
		ev, rej := Decode(raw, maxBytes)
		if (ev == nil) == (rej == nil) {
			t.Fatalf("Decode gave event %v and rejection %v: want exactly one", ev, rej)
		}
		if maxBytes > 0 && len(body) > maxBytes && (rej == nil || rej.Reason != ReasonTooLarge) {
			t.Fatalf("%d bytes over a %d limit: got %v", len(body), maxBytes, rej)
		}
		if rej != nil {
			switch rej.Reason {
			case ReasonNotJSON, ReasonNotObject, ReasonTooLarge, ReasonMissingKey, ReasonBadCloudEvnt:
			default:
				t.Fatalf("unknown reason %q", rej.Reason)
			}
			if rej.Msg == "" || rej.Error() == "" {
				t.Fatalf("rejection %q without a message", rej.Reason)
			}
			return
		}
		if ev.Data == nil {
			t.Fatal("accepted event with nil data")
		}
		if ev.ID == "" || ev.Time.IsZero() || ev.Time.Location() != time.UTC || ev.Subject != raw.Subject || ev.Seq != seq {
			t.Fatalf("incomplete envelope: %+v", ev)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		// The journal stores RawData as the event's data: the JSON object
		// that was decoded, and only for a plain event.
		if ev.RawData != nil && (!json.Valid(ev.RawData) || ev.RawData[0] != '{' || binary || ev.Type != "") {
			t.Fatalf("raw data %q kept for event %+v", ev.RawData, ev)
		}
		KeyString(ev.Data) // a map as a key: must not panic
		checkValues(t, ev.Data, 0)
	})
}

// checkValues walks decoded data: only the types normalize produces, and
// KeyString of each scalar is sane. (Containers are printed once, by the
// caller: printing every level of a deep object would be quadratic.)
func checkValues(t *testing.T, v any, depth int) {
	if depth > 20_000 {
		t.Fatal("nesting deeper than encoding/json allows")
	}
	var k string
	switch v.(type) {
	case map[string]any, []any:
	default:
		k = KeyString(v)
	}
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			checkValues(t, e, depth+1)
		}
	case []any:
		for _, e := range x {
			checkValues(t, e, depth+1)
		}
	case string:
		if k != x {
			t.Fatalf("KeyString(%q) = %q", x, k)
		}
	case int:
		if k != strconv.Itoa(x) {
			t.Fatalf("KeyString(%d) = %q", x, k)
		}
	case float64:
		if _, err := strconv.ParseFloat(k, 64); err != nil {
			t.Fatalf("KeyString(%v) = %q: not a number", x, k)
		}
	case nil:
		if k != "" {
			t.Fatalf("KeyString(nil) = %q", k)
		}
	case bool:
	default:
		t.Fatalf("decoded value of type %T (json.Number must be normalized)", v)
	}
}

// TestKeyStringOfListsIsBounded: a list or map prints as a key, unless the
// text would be huge.
func TestKeyStringOfListsIsBounded(t *testing.T) {
	if got := KeyString([]any{"o-1", 2, nil}); got != "[o-1 2 <nil>]" {
		t.Errorf("small list: %q", got)
	}
	long := strings.Repeat("x", 1<<20)
	refs := make([]any, 1000)
	for i := range refs {
		refs[i] = long
	}
	for _, v := range []any{refs, map[string]any{"a": refs}, []any{strings.Repeat("y", MaxKeyBytes)}} {
		if got := KeyString(v); got != "" {
			t.Errorf("huge key of %d bytes", len(got))
		}
	}
	if got := KeyString(long); got != long {
		t.Error("a string is its own key, however long")
	}
}
