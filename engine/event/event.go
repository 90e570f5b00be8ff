// Package event decodes what producers publish into the engine's Event:
// a plain JSON object, or a CloudEvents structured-mode document (it has
// "specversion"). Everything else is a Rejection with a reason that names
// the dead-letter subject it goes to.
package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// Event is one decoded event, decoded once and shared by every rule.
type Event struct {
	Subject string
	ID      string
	Time    time.Time
	Type    string // CloudEvents type; empty for plain events
	Data    map[string]any
	// RawData is Data as it arrived, when the body was the data itself (a
	// plain JSON event): the journal stores it instead of encoding Data
	// again. It shares Raw.Body's memory. Nil for CloudEvents.
	RawData []byte
	// Seq is the stream sequence; 0 when the event did not come from the
	// stream (rule tests, backtest from a file).
	Seq uint64
	// ExplicitID is true when the id came from the producer (Nats-Msg-Id or
	// CloudEvents id) rather than from the stream sequence.
	ExplicitID bool
}

// Reasons for rejecting an event; each is the last token of its
// dead-letter subject (proactive.dead.<reason>).
const (
	ReasonNotJSON      = "not_json"
	ReasonNotObject    = "not_object"
	ReasonTooLarge     = "too_large"
	ReasonMissingKey   = "missing_key"
	ReasonBadCloudEvnt = "bad_cloudevent"
)

// Rejection says why an event cannot be processed.
type Rejection struct {
	Reason string
	Msg    string
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Msg }

// Raw is a message as it arrived.
type Raw struct {
	Subject string
	// Body is the message. The decoded Event may keep it (RawData): do
	// not reuse its buffer after Decode.
	Body  []byte
	MsgID string    // Nats-Msg-Id header
	Seq   uint64    // stream sequence
	Time  time.Time // stream timestamp
	// CE holds CloudEvents attributes sent in binary content mode
	// (ce-* headers); the body is then the event's data.
	CE *CEHeaders
}

// CEHeaders are CloudEvents attributes from ce-* message headers.
type CEHeaders struct {
	SpecVersion, ID, Type, Time, Source string
}

// Decode turns a raw message into an Event.
func Decode(m Raw, maxBytes int) (*Event, *Rejection) { return DecodeWith(m, maxBytes, nil) }

// DecodeWith is Decode sharing keys and short values through in (nil: no
// sharing).
func DecodeWith(m Raw, maxBytes int, in *Interner) (*Event, *Rejection) {
	if maxBytes > 0 && len(m.Body) > maxBytes {
		return nil, &Rejection{ReasonTooLarge, fmt.Sprintf("event is %d bytes, limit is %d (intake.max_event_bytes)", len(m.Body), maxBytes)}
	}
	body := bytes.Trim(m.Body, jsonSpace)
	if len(body) == 0 {
		return nil, &Rejection{ReasonNotJSON, "empty body"}
	}
	if body[0] != '{' {
		if json.Valid(body) {
			return nil, &Rejection{ReasonNotObject, "event must be a JSON object, got " + kindOf(body[0])}
		}
		return nil, &Rejection{ReasonNotJSON, "body is not JSON"}
	}
	data, err := DecodeObjectWith(body, in)
	switch {
	case errors.Is(err, errTrailing):
		return nil, &Rejection{ReasonNotJSON, "body has data after the JSON object"}
	case err != nil:
		return nil, &Rejection{ReasonNotJSON, "body is not JSON: " + err.Error()}
	}
	ev := &Event{Subject: m.Subject, Seq: m.Seq, Time: m.Time.UTC()}
	if m.CE != nil {
		ce := map[string]any{"specversion": m.CE.SpecVersion, "id": m.CE.ID, "type": m.CE.Type, "data": data}
		if m.CE.Time != "" {
			ce["time"] = m.CE.Time
		}
		if rej := fromCloudEvent(ev, ce); rej != nil {
			return nil, rej
		}
	} else if _, ok := data["specversion"]; ok {
		if rej := fromCloudEvent(ev, data); rej != nil {
			return nil, rej
		}
	} else {
		ev.Data, ev.RawData = data, body
	}
	switch {
	case m.MsgID != "" && ev.ID == "":
		ev.ID, ev.ExplicitID = m.MsgID, true
	case ev.ID == "":
		ev.ID = "seq-" + strconv.FormatUint(m.Seq, 10)
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	return ev, nil
}

func fromCloudEvent(ev *Event, ce map[string]any) *Rejection {
	id, _ := ce["id"].(string)
	if id == "" {
		return &Rejection{ReasonBadCloudEvnt, "cloudevent without id"}
	}
	ev.ID, ev.ExplicitID = id, true
	ev.Type, _ = ce["type"].(string)
	if ts, ok := ce["time"].(string); ok && ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return &Rejection{ReasonBadCloudEvnt, fmt.Sprintf("cloudevent time %q is not RFC 3339", ts)}
		}
		ev.Time = t.UTC()
	}
	switch d := ce["data"].(type) {
	case map[string]any:
		ev.Data = d
	case nil:
		b64, ok := ce["data_base64"].(string)
		if !ok {
			ev.Data = map[string]any{}
			return nil
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return &Rejection{ReasonBadCloudEvnt, "cloudevent data_base64 is not base64"}
		}
		var data map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		// null decodes into a nil map without an error: not an object.
		if err := dec.Decode(&data); err != nil || data == nil || trailing(dec, raw) {
			return &Rejection{ReasonNotObject, "cloudevent data_base64 is not a JSON object"}
		}
		normalize(data)
		ev.Data = data
	default:
		return &Rejection{ReasonNotObject, "cloudevent data must be a JSON object"}
	}
	return nil
}

// trailing reports whether anything but white space follows the value dec
// decoded from src (dec.More misses a stray "}" or "]").
func trailing(dec *json.Decoder, src []byte) bool {
	return len(bytes.Trim(src[dec.InputOffset():], jsonSpace)) > 0
}

// jsonSpace is the white space JSON allows around a value (bytes.TrimSpace
// would also accept a form feed or a non-breaking space).
const jsonSpace = " \t\r\n"

// normalize turns json.Number into int (when integral) or float64, so
// expressions compare `order.total >= 50000` without surprises and
// identifiers like 1234567890123 keep every digit.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// Normalize is normalize for callers holding decoded JSON (stored state).
func Normalize(v any) any { return normalize(v) }

// DecodeObject decodes a JSON object (stored entity state) into the map an
// event's data decodes to: the same fast path, the same numbers (integral
// ones as int). Decoding stored state with encoding/json made every number
// a float64, so a total of 1234567 read back after a restart printed as
// 1.234567e+06 in a template, and it cost several times more (a third of
// an entity load from SQLite).
//
// Plain well-formed JSON takes the fast parser; anything else, encoding/json
// decides, and its error words the failure.
func DecodeObject(b []byte) (map[string]any, error) { return DecodeObjectWith(b, nil) }

// DecodeObjectWith is DecodeObject sharing keys and short values through
// in (nil: no sharing).
func DecodeObjectWith(b []byte, in *Interner) (map[string]any, error) {
	if m, ok := fastObject(b, in); ok {
		return m, nil
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if trailing(dec, b) {
		return nil, errTrailing
	}
	normalize(m)
	return m, nil
}

// errTrailing is DecodeObject's error for data after the object.
var errTrailing = errors.New("data after the JSON object")

func kindOf(b byte) string {
	switch b {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// KeyString renders an entity key value: strings as they are, integral
// numbers without a decimal point. Empty means "no key".
func KeyString(v any) string {
	switch k := v.(type) {
	case string:
		return k
	case int:
		return strconv.Itoa(k)
	case int64:
		return strconv.FormatInt(k, 10)
	case float64:
		// Within int64's range only: converting a larger float is
		// implementation-defined.
		if k >= -(1<<63) && k < 1<<63 && k == math.Trunc(k) {
			return strconv.FormatInt(int64(k), 10)
		}
		return strconv.FormatFloat(k, 'f', -1, 64)
	case nil:
		return ""
	}
	// A list or map (a dedup key of several fields) prints with fmt, but a
	// huge one is no key: a list holding one long string a thousand times
	// is small in memory and a gigabyte as text.
	if !printsWithin(reflect.ValueOf(v), new(MaxKeyBytes)) {
		return ""
	}
	return fmt.Sprint(v)
}

// MaxKeyBytes bounds a key KeyString prints from a list or map.
const MaxKeyBytes = 4 << 10

// printsWithin reports whether fmt prints v in at most *left bytes (an
// upper bound), spending *left. Every value costs at least one byte, so the
// walk ends within MaxKeyBytes steps whatever v is.
func printsWithin(v reflect.Value, left *int) bool {
	*left--
	if *left < 0 {
		return false
	}
	switch v.Kind() {
	case reflect.String:
		*left -= v.Len()
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if !printsWithin(v.Index(i), left) {
				return false
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if !printsWithin(it.Key(), left) || !printsWithin(it.Value(), left) {
				return false
			}
		}
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			return printsWithin(v.Elem(), left)
		}
		*left -= 5
	case reflect.Struct:
		*left -= 96 // time.Time; other structs are not event data
	default:
		*left -= 32 // numbers, booleans, <nil>
	}
	return *left >= 0
}
