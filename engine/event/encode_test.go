package event

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestAppendJSONRoundTrip: what AppendJSON writes decodes (as the engine
// decodes stored state) to the same normalized value.
func TestAppendJSONRoundTrip(t *testing.T) {
	for _, src := range []string{
		benchBody,
		`{}`,
		`{"a":null,"b":true,"c":false,"n":-12,"big":1234567890123,"f":1.5,"tiny":1e-9,"huge":1e300,"neg":-0.25}`,
		`{"s":"quote \" backslash \\ tab \t nl \n ctl \u0001 html <&> uni é ☃ \ud83d\ude00","k\"ey":1}`,
		`{"list":[1,"two",[3,{"four":4}],null,{"x":[]}],"obj":{"nested":{"deep":"yes"}}}`,
	} {
		var want map[string]any
		if err := json.Unmarshal([]byte(src), &want); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		normalize(want)
		b, err := AppendJSON(nil, want)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: output %s is not JSON: %v", src, b, err)
		}
		normalize(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %s:\n got %#v\nwant %#v\n via %s", src, got, want, b)
		}
	}
	if _, err := AppendJSON(nil, map[string]any{"bad": func() {}}); err == nil {
		t.Error("a func encoded without error")
	}
}
