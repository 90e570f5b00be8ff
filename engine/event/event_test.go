package event

import (
	"strings"
	"testing"
	"time"
)

var ts = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func TestDecodePlainAndCloudEvents(t *testing.T) {
	ev, rej := Decode(Raw{Subject: "orders.created", Body: []byte(`{"order_id":"o-1","total":50000,"big":1234567890123,"f":1.5,"skus":["a"]}`), Seq: 7, Time: ts}, 1<<20)
	if rej != nil {
		t.Fatal(rej)
	}
	if ev.ID != "seq-7" || ev.ExplicitID || !ev.Time.Equal(ts) || ev.Type != "" {
		t.Errorf("envelope %+v", ev)
	}
	if ev.Data["total"] != 50000 || ev.Data["big"] != 1234567890123 || ev.Data["f"] != 1.5 {
		t.Errorf("numbers %#v %#v %#v", ev.Data["total"], ev.Data["big"], ev.Data["f"])
	}
	// The journal keeps a plain event's data as it arrived (no second
	// encoding); a CloudEvent's data is only part of its body.
	if string(ev.RawData) != `{"order_id":"o-1","total":50000,"big":1234567890123,"f":1.5,"skus":["a"]}` {
		t.Errorf("raw data %q", ev.RawData)
	}
	ev, _ = Decode(Raw{Subject: "s", Body: []byte(" {\"a\":1}\n"), MsgID: "m-1", Seq: 8, Time: ts}, 0)
	if string(ev.RawData) != `{"a":1}` {
		t.Errorf("raw data %q, want the object without the white space around it", ev.RawData)
	}
	if ev.ID != "m-1" || !ev.ExplicitID {
		t.Errorf("Nats-Msg-Id not used: %+v", ev)
	}
	ce := `{"specversion":"1.0","id":"ce-1","source":"/x","type":"order.created","time":"2026-11-19T08:00:00+03:00","data":{"order_id":"o-2"}}`
	ev, rej = Decode(Raw{Subject: "s", Body: []byte(ce), MsgID: "ignored", Seq: 9, Time: ts}, 0)
	if rej != nil {
		t.Fatal(rej)
	}
	if ev.RawData != nil {
		t.Errorf("cloudevent kept its whole body as data: %q", ev.RawData)
	}
	if ev.ID != "ce-1" || ev.Type != "order.created" || !ev.Time.Equal(time.Date(2026, 11, 19, 5, 0, 0, 0, time.UTC)) || ev.Data["order_id"] != "o-2" {
		t.Errorf("cloudevent %+v", ev)
	}
	bin := Raw{Subject: "s", Body: []byte(`{"order_id":"o-4"}`), Time: ts, CE: &CEHeaders{SpecVersion: "1.0", ID: "ce-bin", Type: "t.x", Time: "2026-11-19T08:00:00Z"}}
	if ev, rej = Decode(bin, 0); rej != nil || ev.ID != "ce-bin" || !ev.ExplicitID || ev.Type != "t.x" || ev.Data["order_id"] != "o-4" || ev.Time.Hour() != 8 {
		t.Errorf("binary mode: %+v %v", ev, rej)
	}
	b64 := `{"specversion":"1.0","id":"ce-2","source":"/x","type":"t","data_base64":"eyJvcmRlcl9pZCI6Im8tMyJ9"}`
	if ev, rej = Decode(Raw{Body: []byte(b64), Time: ts}, 0); rej != nil || ev.Data["order_id"] != "o-3" {
		t.Errorf("data_base64: %+v %v", ev, rej)
	}
}

func TestDecodeRejections(t *testing.T) {
	cases := []struct{ body, reason, msg string }{
		{``, ReasonNotJSON, "empty body"},
		{`oops`, ReasonNotJSON, "not JSON"},
		{`{"a":1} {"b":2}`, ReasonNotJSON, "after the JSON object"},
		{`{"a":`, ReasonNotJSON, "not JSON"},
		{`[1,2]`, ReasonNotObject, "an array"},
		{`"x"`, ReasonNotObject, "a string"},
		{`42`, ReasonNotObject, "a number"},
		{`{"specversion":"1.0","data":{}}`, ReasonBadCloudEvnt, "without id"},
		{`{"specversion":"1.0","id":"x","time":"yesterday"}`, ReasonBadCloudEvnt, "RFC 3339"},
		{`{"specversion":"1.0","id":"x","data":[1]}`, ReasonNotObject, "data must be a JSON object"},
		{`{"pad":"` + strings.Repeat("x", 100) + `"}`, ReasonTooLarge, "limit is 64"},
	}
	for _, c := range cases {
		_, rej := Decode(Raw{Subject: "s", Body: []byte(c.body), Time: ts}, 64)
		if rej == nil || rej.Reason != c.reason || !strings.Contains(rej.Msg, c.msg) {
			t.Errorf("Decode(%.30q) = %v, want %s containing %q", c.body, rej, c.reason, c.msg)
		}
	}
}

func TestKeyString(t *testing.T) {
	for v, want := range map[any]string{"o-1": "o-1", 42: "42", 1.0: "1", 2.5: "2.5", nil: "", true: "true"} {
		if got := KeyString(v); got != want {
			t.Errorf("KeyString(%#v) = %q, want %q", v, got, want)
		}
	}
}
