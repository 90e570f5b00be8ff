package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseOverDefaults(t *testing.T) {
	cfg := Default()
	err := Parse(cfg, "p.yaml", []byte(`
nats: { url: "nats://n1:4222", stream: EV }
http: { addr: "0.0.0.0:9000", token: "${TOKEN}" }
policy:
  frequency_cap: { max: 5, per: 2d }
  quiet_hours: { start: "22:30", end: "07:00" }
channels:
  email: { type: smtp, host: h, from: f, password: "${PW}" }
  sms:   { type: webhook, url: "https://x", timeout: 3s, max_in_flight: 1 }
  chat:  { type: log, address_field: slack_id }
defaults: { channels: [email, sms] }
`), env(map[string]string{"TOKEN": "tok-123", "PW": "pa:ss\nword"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != "nats://n1:4222" || cfg.NATS.Stream != "EV" || cfg.NATS.Consumer != "proactived" {
		t.Errorf("nats %+v", cfg.NATS)
	}
	if cfg.HTTP.Token.Reveal() != "tok-123" || cfg.Policy.FrequencyCap.Per.D() != 48*time.Hour {
		t.Errorf("http %+v cap %+v", cfg.HTTP, cfg.Policy.FrequencyCap)
	}
	if cfg.Intake.MaxEventBytes != 1<<20 || cfg.Defaults.Locale != "en" {
		t.Errorf("defaults lost: %+v %+v", cfg.Intake, cfg.Defaults)
	}
	email, sms, chat := cfg.Channels["email"], cfg.Channels["sms"], cfg.Channels["chat"]
	if email.Type != "smtp" || email.AddressField != "email" || sms.AddressField != "phone" || sms.Timeout != 3*time.Second || sms.MaxInFlight != 1 || chat.MaxInFlight != 0 || chat.AddressField != "slack_id" {
		t.Errorf("channels %+v %+v %+v", email, sms, chat)
	}
	if _, ok := cfg.Channels["console"]; !ok {
		t.Error("built-in console channel missing")
	}
	// The secret with a newline and colon did not break the document, and
	// the common keys were taken out of the type-specific spec.
	var pw string
	for i := 0; i+1 < len(email.Spec.Content); i += 2 {
		if email.Spec.Content[i].Value == "password" {
			pw = email.Spec.Content[i+1].Value
		}
		if email.Spec.Content[i].Value == "type" {
			t.Error("type left in the channel spec")
		}
	}
	if pw != "pa:ss\nword" {
		t.Errorf("password %q", pw)
	}
	if s := cfg.HTTP.Token.String(); s != "<secret>" {
		t.Errorf("token prints as %q", s)
	}
}

func TestParseErrorsArePositionedAndSecretFree(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"unknown key", "nats:\n  urll: x\n", `p.yaml:2:3: unknown key "urll" in nats`},
		{"unknown top key", "polcy: {}\n", `p.yaml:1:1: unknown key "polcy"`},
		{"unset env", "http: { token: \"${NOPE}\" }\n", `p.yaml:1:16: environment variable NOPE is not set`},
		{"bad duration", "policy:\n  frequency_cap: { per: 3x }\n", `line 2:25`},
		{"second document", "data: x\n---\ndata: y\n", `a second YAML document is not allowed`},
		{"channel without type", "channels:\n  email: { host: h }\n", `p.yaml:2:3: channel "email": missing type`},
		{"unknown default channel", "defaults: { channels: [fax] }\n", `unknown channel "fax"`},
		{"bad quiet hours", "policy: { quiet_hours: { start: \"25:00\", end: \"07:00\" } }\n", `invalid time of day "25:00"`},
		{"retention too short", "retention: 2h\n", `retention must be at least 24h (or 0 to keep history forever)`},
		{"retention below the cap's window", "policy: { frequency_cap: { per: 14d } }\nretention: 7d\n", `retention (7d) must cover policy.frequency_cap.per (14d)`},
		{"negative retention", "retention: -1d\n", `retention must not be negative`},
		{"negative id window", "intake: { id_window: -1h }\n", `intake.id_window must not be negative`},
		{"max_in_flight zero", "channels:\n  sms: { type: log, max_in_flight: 0 }\n", `p.yaml:2:36: channel "sms": max_in_flight: want a whole number of at least 1, got "0"`},
		{"max_in_flight not a number", "channels:\n  sms: { type: log, max_in_flight: few }\n", `channel "sms": max_in_flight: want a whole number`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Parse(Default(), "p.yaml", []byte(c.doc), env(map[string]string{"SECRET": "hunter2"}))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("secret in error")
			}
		})
	}
}

// TestRetention: 90 days unless set; 0 keeps history forever.
func TestRetention(t *testing.T) {
	if got := Default().Retention; got.D() != 90*24*time.Hour || got.String() != "90d" {
		t.Errorf("default retention %v", got)
	}
	for doc, want := range map[string]time.Duration{"retention: 0\n": 0, "retention: 400d\n": 400 * 24 * time.Hour, "retention: 36h\n": 36 * time.Hour} {
		cfg := Default()
		if err := Parse(cfg, "p.yaml", []byte(doc), env(nil)); err != nil || cfg.Retention.D() != want {
			t.Errorf("%q: retention %v, err %v; want %v", doc, cfg.Retention, err, want)
		}
	}
}

// TestIDWindow: producers' event ids are remembered 7 days unless set; 0
// is "as long as retention".
func TestIDWindow(t *testing.T) {
	if got := Default().Intake.IDWindowOrDefault(); got != 7*24*time.Hour {
		t.Errorf("default id window %v", got)
	}
	for doc, want := range map[string]time.Duration{"intake: { id_window: 0 }\n": 0, "intake: { id_window: 24h }\n": 24 * time.Hour, "intake: { id_window: 30d }\n": 30 * 24 * time.Hour} {
		cfg := Default()
		if err := Parse(cfg, "p.yaml", []byte(doc), env(nil)); err != nil || cfg.Intake.IDWindowOrDefault() != want {
			t.Errorf("%q: id window %v, err %v; want %v", doc, cfg.Intake.IDWindowOrDefault(), err, want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load("/nonexistent/proactived.yaml", false); err != nil {
		t.Fatalf("optional missing config: %v", err)
	}
	if _, err := Load("/nonexistent/proactived.yaml", true); err == nil {
		t.Fatal("--config naming a missing file must fail")
	}
}

func TestParseClock(t *testing.T) {
	for in, want := range map[string]int{"00:00": 0, "09:30": 9*3600 + 1800, "23:59:58": 86398} {
		if got, err := ParseClock(in); err != nil || got != want {
			t.Errorf("ParseClock(%q) = %d, %v", in, got, err)
		}
	}
}
