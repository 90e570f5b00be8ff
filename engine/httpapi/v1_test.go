package httpapi

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePreferences(t *testing.T) {
	channels := []string{"console", "email", "sms"}
	good := []struct {
		body string
		want map[string]any
	}{
		{`{"email":"ann@example.com","phone":"+7916","push_token":"tok","locale":"ru-RU"}`,
			map[string]any{"email": "ann@example.com", "phone": "+7916", "push_token": "tok", "locale": "ru-RU"}},
		{`{"timezone":"Europe/Moscow","channels":["sms","email"]}`,
			map[string]any{"timezone": "Europe/Moscow", "channels": []any{"sms", "email"}}},
		{`{"opt_out":"all"}`, map[string]any{"opt_out": "all"}},
		{`{"opt_out":["sms"],"tier":"gold"}`, map[string]any{"opt_out": []any{"sms"}, "tier": "gold"}},
		{`{"tier":3}`, map[string]any{"tier": 3}},
		{`{"phone":null,"channels":[]}`, map[string]any{"phone": nil, "channels": []any{}}},
		{`{"timezone":""}`, map[string]any{"timezone": ""}},
	}
	for _, c := range good {
		got, err := parsePreferences([]byte(c.body), channels)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %#v %v, want %#v", c.body, got, err, c.want)
		}
	}
	bad := []struct{ body, err string }{
		{``, "JSON object"},
		{`null`, "JSON object"},
		{`"x"`, "JSON object"},
		{`{} {}`, "one JSON object"},
		{`{}`, "no preferences"},
		{`{"name":"Ann"}`, `unknown field "name"`},
		{`{"email":"not-an-address"}`, "not an address"},
		{`{"email":5}`, "email: want a string"},
		{`{"locale":"english please"}`, "language tag"},
		{`{"timezone":"Local"}`, "IANA"},
		{`{"timezone":"Europe/Atlantis"}`, "unknown IANA zone"},
		{`{"channels":["pigeon"]}`, `"pigeon" is not a configured channel`},
		{`{"channels":["sms","sms"]}`, "listed twice"},
		{`{"channels":[1]}`, "list of strings"},
		{`{"opt_out":"sms"}`, `want "all"`},
		{`{"opt_out":["fax"]}`, `"fax" is not a configured channel`},
		{`{"opt_out":true}`, `want "all"`},
		{`{"tier":true}`, "tier: want a string or a number"},
		{`{"tier":{}}`, "tier: want a string or a number"},
	}
	for _, c := range bad {
		_, err := parsePreferences([]byte(c.body), channels)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want %q", c.body, err, c.err)
		}
		if _, ok := err.(badRequest); err != nil && !ok {
			t.Errorf("%s: %T is not a bad request", c.body, err)
		}
	}
	// Every problem is reported, not only the first.
	_, err := parsePreferences([]byte(`{"email":"x","locale":"??"}`), channels)
	if err == nil || !strings.Contains(err.Error(), "email") || !strings.Contains(err.Error(), "locale") {
		t.Errorf("all problems: %v", err)
	}
}
