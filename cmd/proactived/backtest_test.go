package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

const backtestRules = `
entities:
  order:    { key: event.order_id, subjects: ["orders.>"] }
  customer: { key: event.customer_id, subjects: ["customers.>"] }
rules:
  - name: big-order
    on: orders.created
    entity: order
    if: order.total >= 100
    notify: { to: order.customer_id, template: note }
templates:
  note:
    en: { subject: "Order {{ .order.order_id }}", body: "About {{ .order.order_id }}." }
`

// TestBacktestVerb runs the verb as a user would, against a real NATS
// server holding a stream but no daemon database: the report says there is
// nothing to compare with, and counts what the rules would send.
func TestBacktestVerb(t *testing.T) {
	ns := natstest.Run(t)
	nc := ns.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROACTIVE_EVENTS", Subjects: []string{"orders.>", "customers.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range [][2]string{
		{"customers.updated", `{"customer_id":"c-1","email":"a@example.com"}`},
		{"orders.created", `{"order_id":"o-1","customer_id":"c-1","total":150}`},
		{"orders.created", `{"order_id":"o-2","customer_id":"c-1","total":50}`},
		{"orders.created", `{"customer_id":"c-1"}`}, // no order key: a dead letter
	} {
		if _, err := js.Publish(ctx, ev[0], []byte(ev[1])); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "rules.yaml"), []byte(backtestRules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "proactived.yaml")
	cfgText := "nats: { url: \"" + ns.URL + "\" }\ndata: " + filepath.Join(dir, "data") + "\nrules: " + rulesDir + `
channels:
  email: { type: log, address_field: email }
defaults: { channels: [email] }
policy: { quiet_hours: { start: "00:00", end: "00:00" } }
log: { level: error }
`
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	if code := Main(ctx, []string{"backtest", "--config", cfgPath, "--since", "1h", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	var rep struct {
		Events, Replayed, Rejected int
		LiveNote                   string `json:"live_note"`
		Rules                      []struct {
			Name      string `json:"name"`
			WouldSend int    `json:"would_send"`
			Customers int    `json:"customers"`
		} `json:"rules"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if rep.Events != 4 || rep.Replayed != 3 || rep.Rejected != 1 || len(rep.Rules) != 1 ||
		rep.Rules[0].Name != "big-order" || rep.Rules[0].WouldSend != 1 || rep.Rules[0].Customers != 1 {
		t.Errorf("report: %+v\n%s", rep, out.String())
	}
	if !strings.HasPrefix(rep.LiveNote, "no live database at ") {
		t.Errorf("live note %q", rep.LiveNote)
	}
	if errb.Len() != 0 {
		t.Errorf("stderr is not a terminal, so no progress should be drawn: %q", errb.String())
	}

	out.Reset()
	errb.Reset()
	if code := Main(ctx, []string{"backtest", "--config", cfgPath, "--since", "1h"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"big-order  ", "total: would send 1\n", "1 events rejected (dead letters): missing_key 1\n", "events/s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBacktestVerbUsage(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"backtest"}, 2, "usage: proactived backtest --since DUR"},
		{[]string{"backtest", "--since", "soon"}, 2, `--since "soon"`},
		{[]string{"backtest", "--since", "1h", "--until", "yesterday"}, 2, `--until "yesterday"`},
		{[]string{"backtest", "--since", "1h", "extra"}, 2, "usage:"},
		{[]string{"backtest", "--since", "1h", "--rules", filepath.Join(t.TempDir(), "missing"), "--config", os.DevNull}, 1, "rules "},
	} {
		var out, errb bytes.Buffer
		if code := Main(ctx, c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errb.String(), c.code, c.msg)
		}
	}
}

func TestParseUntil(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-19T08:30:00Z":      time.Date(2026, 11, 19, 8, 30, 0, 0, time.UTC),
		"2026-11-19T11:30:00+03:00": time.Date(2026, 11, 19, 8, 30, 0, 0, time.UTC),
		"1d":                        now.Add(-24 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
	} {
		got, err := parseUntil(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseUntil(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parseUntil("next week", now); err == nil {
		t.Error("parseUntil accepted nonsense")
	}
}
