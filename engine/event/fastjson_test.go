package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// slowObject is the reference: encoding/json with UseNumber, normalized,
// rejecting trailing data — what Decode did before the fast path.
func slowObject(b []byte) (map[string]any, bool) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false // trailing data
	}
	normalize(m)
	return m, true
}

var fastSeeds = []string{
	benchBody,
	`{}`, ` { } `, `{"a":{}}`, `{"a":[]}`, `{"a":[1,[2,[3]]]}`,
	`{"n":-0,"m":0.0,"e":1e3,"E":-2.5E-3,"big":9223372036854775807,"bigger":9223372036854775808,"neg":-9223372036854775808,"inf":1e400}`,
	`{"s":"\u00e9\ud83d\ude00 \" \\ \/ \b\f\n\r\t","bad":"\ud800","raw":"é☃"}`,
	"{\"inv\":\"\xff\xfe\"}",
	`{"dup":1,"dup":2}`,
	`{"t":true,"f":false,"z":null}`,
	// Rejected by both (the fast path must decline).
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":nul}`,
	`{"a":1,}`, `{,}`, `{"a"}`, `{"a":1}}`, `{"a":1} x`, `{"a":"x` + "\x01" + `"}`, `{"a":"\x"}`,
	`{"a":[1,]}`, `{"a":[1 2]}`, `{'a':1}`, `{"a":1`, `{"a":"\u12"}`, `[1]`, `"s"`, ``,
}

func TestFastObjectMatchesEncodingJSON(t *testing.T) {
	in := NewInterner()
	for _, s := range fastSeeds {
		checkFast(t, []byte(s), in)
	}
}

// checkFast checks b without an interner and with in, which the caller
// shares among its checks as an intake does among its events.
func checkFast(t *testing.T, b []byte, in *Interner) {
	t.Helper()
	checkFastWith(t, b, nil)
	checkFastWith(t, b, in)
}

func checkFastWith(t *testing.T, b []byte, in *Interner) {
	t.Helper()
	got, ok := fastObject(b, in)
	want, wantOK := slowObject(b)
	if ok && !wantOK {
		t.Fatalf("fast path accepted %q, encoding/json rejects it", b)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path (interner %v) decoded %q as\n%#v\nencoding/json as\n%#v", in != nil, b, got, want)
	}
}

// FuzzFastObject: whatever the fast path accepts, encoding/json accepts
// too, with the same normalized value. (Where the fast path declines,
// Decode uses encoding/json itself.)
func FuzzFastObject(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	in := NewInterner()
	f.Fuzz(func(t *testing.T, b []byte) { checkFast(t, b, in) })
}

// TestFastObjectCommonCaseTaken: the events producers send do take the
// fast path (or it would silently never help).
func TestFastObjectCommonCaseTaken(t *testing.T) {
	for _, s := range []string{benchBody, `{"order_id":"o-1","total":50000,"skus":["a","b"],"nested":{"x":1.5}}`} {
		if _, ok := fastObject([]byte(s), nil); !ok {
			t.Errorf("fast path declined %s", s)
		}
	}
}

// DecodeObject (stored entity state) gives what an event's data decodes
// to, on the fast path and on encoding/json's.
func TestDecodeObjectIsEventData(t *testing.T) {
	for _, src := range []string{
		`{"total":1234567,"share":0.25,"n":-3,"big":12345678901234567890,"e":1e3,"s":"x","l":[1,2.5,{"a":null}],"m":{"k":true}}`,
		"{\"bad\":\"\xff\",\"n\":1}", // invalid UTF-8: encoding/json's path
		`{}`,
	} {
		got, err := DecodeObject([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		ev, rej := Decode(Raw{Subject: "s", Body: []byte(src), Seq: 1}, 0)
		if rej != nil {
			t.Fatalf("%q: %v", src, rej)
		}
		if !reflect.DeepEqual(got, ev.Data) {
			t.Fatalf("%q: DecodeObject %#v, event data %#v", src, got, ev.Data)
		}
	}
	for _, src := range []string{``, `{`, `{"a":1} {"b":2}`, `[1]x`} {
		if m, err := DecodeObject([]byte(src)); err == nil {
			t.Errorf("%q: decoded to %v, want an error", src, m)
		}
	}
}

// TestInternerSharesAndIsBounded: two events share their keys and short
// values (no new strings), long values are not kept, and a stream of
// unique keys and values never grows the maps past their bound.
func TestInternerSharesAndIsBounded(t *testing.T) {
	in := NewInterner()
	long := strings.Repeat("x", internValueLen+1)
	a, err := DecodeObjectWith([]byte(`{"status":"in_transit","note":"`+long+`"}`), in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeObjectWith([]byte(`{"status":"in_transit","note":"`+long+`"}`), in)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := a["status"].(string), b["status"].(string)
	if unsafe.StringData(sa) != unsafe.StringData(sb) {
		t.Error("a repeated short value is a new string")
	}
	if _, ok := in.vals[long]; ok {
		t.Error("a long value was kept")
	}
	for k := range b {
		if shared, ok := in.keys[k]; !ok || unsafe.StringData(shared) != unsafe.StringData(k) {
			t.Errorf("key %q is not the shared one", k)
		}
	}
	for i := range 3 * internMax {
		if _, err := DecodeObjectWith(fmt.Appendf(nil, `{"k%d":"v%d"}`, i, i), in); err != nil {
			t.Fatal(err)
		}
		if len(in.keys) > internMax || len(in.vals) > internMax {
			t.Fatalf("after %d unique keys: %d keys, %d values kept", i+1, len(in.keys), len(in.vals))
		}
	}
	// Still right after starting over.
	if m, err := DecodeObjectWith([]byte(`{"k1":"v1"}`), in); err != nil || m["k1"] != "v1" {
		t.Fatalf("%v %v", m, err)
	}
}
