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

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/notifiers/all"
	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

const explainRules = `
entities:
  order:
    key: event.order_id
    subjects: ["orders.>"]
  customer:
    key: event.customer_id
    subjects: ["customers.>"]
rules:
  - name: order-late
    on: orders.eta
    entity: order
    if: date(order.eta) > date(order.promised_at)
    notify: { to: order.customer_id, template: late }
    dedup: { key: order.order_id + "/" + order.eta }
templates:
  late:
    en: { subject: "Order {{ .order.order_id }} is late", body: "New date: {{ .order.eta }}" }
`

func runExplain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(t.Context(), append([]string{"explain"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestExplainVerb runs the real daemon to produce a data directory, then
// explains from it with the CLI — while the daemon runs (WAL, read-only)
// and after it stopped.
func TestExplainVerb(t *testing.T) {
	ns := natstest.Run(t)
	nc := ns.Connect(t)
	rulesDir, data := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "rules.yaml"), []byte(explainRules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Rules, cfg.Data, cfg.NATS.URL, cfg.HTTP.Addr = rulesDir, data, ns.URL, "off"
	cfg.Policy.QuietHours = config.QuietHours{} // the wall clock may be at night
	cfg.Intake.MaxWait = config.Duration(5 * time.Millisecond)
	d, err := daemon.New(daemon.Options{Config: cfg, Registry: all.Registry(), DispatchEvery: 20 * time.Millisecond,
		WatchDebounce: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := d.Stop(context.Background()); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	}
	defer stop()
	for _, m := range [][2]string{
		{"customers.updated", `{"customer_id":"c-1","locale":"en"}`},
		{"orders.created", `{"order_id":"o-1","customer_id":"c-1","promised_at":"2026-11-22T18:00:00Z"}`},
		{"orders.eta", `{"order_id":"o-1","eta":"2026-11-23T18:00:00Z"}`},
		{"orders.eta", `{"order_id":"o-1","eta":"2026-11-23T18:00:00Z"}`},
	} {
		if err := nc.Publish(m[0], []byte(m[1])); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := d.Store().R.QueryRow(`SELECT count(*) FROM decisions WHERE verdict IN ('deduped', 'delivered')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not decide: %d decisions", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The event journal is its own file, written a little after the
	// decisions (it lingers up to 100ms to batch rows): wait until it holds
	// the four events (stream sequences 1–4) before reading it.
	for d.Store().Journal.Durable() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("journal did not catch up: through %d", d.Store().Journal.Durable())
		}
		time.Sleep(10 * time.Millisecond)
	}

	check := func(when string) {
		code, out, errOut := runExplain(t, "--data", data, "order:o-1")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", when, code, errOut)
		}
		for _, s := range []string{"order:o-1  (entity timeline)", `state: {"customer_id":"c-1","eta":"2026-11-23T18:00:00Z"`,
			"SENT", "queued for console", "DEDUPED", "same dedup key o-1/2026-11-23T18:00:00Z", "DELIVERED", "attempt", "orders.eta", "Order o-1 is late",
			"(history older than 90d is deleted: retention)"} {
			if !strings.Contains(out, s) {
				t.Errorf("%s: output lacks %q:\n%s", when, s, out)
			}
		}
		// Flags may follow the entity, and --json gives the API's document.
		code, out, errOut = runExplain(t, "order:o-1", "--json", "--data", data)
		var tl explain.Timeline
		if err := json.Unmarshal([]byte(out), &tl); code != 0 || err != nil {
			t.Fatalf("%s: --json: exit %d %v: %s %s", when, code, err, errOut, out)
		}
		if tl.Entity.String() != "order:o-1" || len(tl.Notifications) != 1 || tl.Notifications[0].Status != "sent" {
			t.Errorf("%s: json %+v", when, tl)
		}
		code, out, errOut = runExplain(t, "--data", data, "--customer", "c-1")
		if code != 0 || !strings.Contains(out, "customer:c-1  (customer view") || !strings.Contains(out, "order:o-1") {
			t.Errorf("%s: --customer: exit %d: %s%s", when, code, errOut, out)
		}
	}
	check("daemon running")
	stop()
	check("daemon stopped")

	code, _, errOut := runExplain(t, "--data", data, "order:o-404")
	if code != 1 || !strings.Contains(errOut, "order:o-404: nothing recorded in "+filepath.Join(data, "proactived.db")) || !strings.Contains(errOut, "after 90d (retention)") {
		t.Errorf("unknown entity: exit %d: %s", code, errOut)
	}
	empty := t.TempDir()
	code, _, errOut = runExplain(t, "--data", empty, "order:o-1")
	if code != 1 || !strings.Contains(errOut, "no database at "+filepath.Join(empty, "proactived.db")) {
		t.Errorf("missing database: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(empty, "proactived.db")); err == nil {
		t.Error("explain created a database")
	}
	for _, args := range [][]string{{}, {"order"}, {"--customer", "c-1", "order:o-1"}, {"a:b", "c:d"}, {"--limit", "0", "order:o-1"}} {
		code, _, errOut := runExplain(t, append(args, "--data", data)...)
		if code != 2 || !strings.Contains(errOut, "usage: proactived explain") {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
}
