package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckNeverPrintsSecrets runs `proactived check` on a config whose
// channels are all broken and whose secrets come from ${ENV}: every problem
// is reported, no secret value is printed (docs/security.md).
func TestCheckNeverPrintsSecrets(t *testing.T) {
	secrets := map[string]string{
		"PROACTIVED_TOKEN": "tok-SECRET-1",
		"SMTP_USER":        "user-SECRET-2",
		"SMTP_PASSWORD":    "pw-SECRET-3",
		"SMS_BASIC":        "basic-SECRET-4",
		"SMS_HMAC":         "hmac-SECRET-5",
		"SMS_KEY":          "key-SECRET-6",
		"OPS_SLACK_URL":    "slack://xoxb-SECRET-7@",
		"OPS_TOKEN2":       "tok2-SECRET-8",
		"LEGACY_TOKEN":     "legacy-SECRET-9",
		"HOOK_PASS":        "hook-SECRET-10",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "proactived.yaml")
	writeSecFile(t, cfg, `
http: { addr: "0.0.0.0:8080", token: "${PROACTIVED_TOKEN}" }
channels:
  email:  { type: smtp, host: smtp.example.com, port: 99999, tls: starttls, from: "Shop <noreply@example.com>", username: "${SMTP_USER}", password: "${SMTP_PASSWORD}" }
  sms:    { type: webhook, url: "https://gw:${SMS_BASIC}@sms-gw.example.com/send", secret: "${SMS_HMAC}", headers: { X-Api-Key: "${SMS_KEY}" }, bogus: 1 }
  ops:    { type: shoutrrr, url: "${OPS_SLACK_URL}" }
  ops2:   { type: shoutrrr, url: "nosuchservice://${OPS_TOKEN2}@x" }
  legacy: { type: exec, command: [], env: { LEGACY_TOKEN: "${LEGACY_TOKEN}" } }
  hook2:  { type: webhook, url: "ftp://u:${HOOK_PASS}@x/", secret: "${SMS_HMAC}" }
`)
	rulesDir := filepath.Join(dir, "rules")
	writeSecFile(t, filepath.Join(rulesDir, "r.yaml"), `
entities:
  order: { key: event.order_id, subjects: ["orders.>"] }
rules:
  - name: r
    on: orders.created
    entity: order
    notify: { channel: legacy, template: t }
templates: { t: { en: { body: "hi" } } }
`)
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"check", "--config", cfg, "--rules", rulesDir}, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	// Every broken channel is reported (so the secrets had their chance
	// to leak).
	for _, ch := range []string{`"email"`, `"sms"`, `"ops"`, `"ops2"`, `"legacy"`, `"hook2"`} {
		if !strings.Contains(out, "channel "+ch) {
			t.Errorf("no problem reported for channel %s:\n%s", ch, out)
		}
	}
	for k, v := range secrets {
		if strings.Contains(out, v) || strings.Contains(out, strings.TrimSuffix(strings.TrimPrefix(v, "slack://"), "@")) {
			t.Errorf("check printed the value of %s:\n%s", k, out)
		}
	}
}

func writeSecFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
