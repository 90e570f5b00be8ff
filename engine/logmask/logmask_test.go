package logmask

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestMask(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"no addresses here", "no addresses here"},
		{"ann@example.com", "a**@example.com"},
		{"to ann@example.com.", "to a**@example.com."},
		{"a@example.com", "*@example.com"},
		{"a**@example.com", "a**@example.com"}, // already masked
		{"550 <bob.smith+news@mail.example.co.uk> unknown", "550 <b*************@mail.example.co.uk> unknown"},
		{"user@localhost", "user@localhost"}, // no dot: not an address
		{"@example.com", "@example.com"},
		{"call +79161234567 now", "call +7*******567 now"},
		{"+1 555 010 0199", "+1**********199"},
		{"+1*****199", "+1*****199"}, // already masked
		{"tz +03:00 and 1e+10", "tz +03:00 and 1e+10"},
		{"+1234567890123456789", "+1234567890123456789"}, // too long for a phone
		{"a@b.io and +15550100", "*@b.io and +1****100"},
	}
	for _, c := range cases {
		if got := Mask(c.in); got != c.want {
			t.Errorf("Mask(%q) = %q, want %q", c.in, got, c.want)
		}
		if got := Mask(Mask(c.in)); got != c.want {
			t.Errorf("Mask is not idempotent on %q: %q", c.in, got)
		}
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log = log.With("component", "x", "owner", "ops@example.com")
	log.Debug("sent to ann@example.com",
		"err", errors.New("550 no such user ann@example.com"),
		"phone", "+79161234567",
		slog.Group("to", "address", "bob@example.org", "n", 3),
		"count", 2)
	log.Info("plain", "k", "v")
	out := buf.String()
	for _, leak := range []string{"ann@example.com", "+79161234567", "bob@example.org", "ops@example.com"} {
		if strings.Contains(out, leak) {
			t.Errorf("%s leaked:\n%s", leak, out)
		}
	}
	for _, want := range []string{`"msg":"sent to a**@example.com"`, `"err":"550 no such user a**@example.com"`,
		`"phone":"+7*******567"`, `"to":{"address":"b**@example.org","n":3}`, `"owner":"o**@example.com"`, `"count":2`, `"msg":"plain","component":"x","owner":"o**@example.com","k":"v"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
	h := New(slog.DiscardHandler)
	if New(h) != h {
		t.Error("wrapping a masking handler again should return it as it is")
	}
}
