package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/simulate"
	"github.com/proactived/proactived/notifiers/all"
	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

const reportRules = `
entities:
  order:
    key: event.order_id
    subjects: ["orders.>", "shipments.>"]
  customer:
    key: event.customer_id
    subjects: ["customers.>"]
rules:
  - name: delivery-delayed
    on: shipments.eta_updated
    entity: order
    if: order.status not in ["delivered", "cancelled"] && date(event.eta) > date(order.promised_at) + duration("1h")
    notify: { to: order.customer_id, template: late, priority: high }
    holdout: 50%
templates:
  late:
    en: { subject: "Order {{ .order.order_id }} is late", body: "New date: {{ .event.eta }}" }
`

const reportConfig = `
http: { token: "s3cret" }
channels:
  email: { type: log }
  sms:   { type: log }
  push:  { type: log }
`

func runReport(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(t.Context(), append([]string{"report"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestReportVerbAndAPI drives the real daemon over NATS with a simulated
// shop, then reads the effectiveness report with the CLI (read-only,
// while the daemon runs) and from GET /api/v1/report: both say the same,
// and both count what the simulated customers did.
func TestReportVerbAndAPI(t *testing.T) {
	ns := natstest.Run(t)
	nc := ns.Connect(t)
	rulesDir, data := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "rules.yaml"), []byte(reportRules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := config.Parse(cfg, "test.yaml", []byte(reportConfig), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	cfg.Rules, cfg.Data, cfg.NATS.URL, cfg.HTTP.Addr = rulesDir, data, ns.URL, "127.0.0.1:0"
	cfg.Policy.QuietHours = config.QuietHours{} // the wall clock may be at night
	cfg.Policy.FrequencyCap.Max = 0
	cfg.Intake.MaxWait = config.Duration(5 * time.Millisecond)
	d, err := daemon.New(daemon.Options{Config: cfg, Registry: all.Registry(), DispatchEvery: 10 * time.Millisecond, WatchDebounce: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	sim := simulate.New(simulate.Config{Seed: 3, Orders: 240, DelayShare: 0.4})
	target := &simulate.NATSTarget{JS: js, DB: d.Store().R, InformedBy: []string{"delivery-delayed"}}
	if err := sim.Run(ctx, target); err != nil {
		t.Fatal(err)
	}
	truth := sim.Truth()
	// Wait for the last contacts (published after the last question).
	if _, err := target.Notified(ctx, "o-1", time.Time{}); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runReport(t, "--data", data, "--json", "--topic", "order_status")
	if code != 0 {
		t.Fatalf("report --json: exit %d: %s", code, errOut)
	}
	var cli report.Report
	if err := json.Unmarshal([]byte(out), &cli); err != nil {
		t.Fatalf("report --json: %v\n%s", err, out)
	}
	if len(cli.Rules) != 1 || cli.Rules[0].Rule != "delivery-delayed" {
		t.Fatalf("rules in the report: %+v", cli.Rules)
	}
	r := cli.Rules[0]
	t.Logf("truth %+v; report treated %d/%d control %d/%d, %s", truth, r.Treated.Contacted, r.Treated.N, r.Control.Contacted, r.Control.N, r.Verdict)
	if r.Treated.N != truth.Informed || r.Treated.Contacted != truth.ContactedInformed ||
		r.Control.N > truth.Uninformed || r.Control.Contacted > truth.ContactedUninformed || r.Control.N < truth.Uninformed*9/10 {
		t.Fatalf("report does not count what the customers did: treated %+v control %+v, truth %+v", r.Treated, r.Control, truth)
	}

	// The API, behind the token, returns the same numbers.
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HTTPAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/api/v1/report", ""); code != http.StatusUnauthorized {
		t.Fatalf("report without the token: %d", code)
	}
	code, body := get("/api/v1/report?topic=order_status&since=30d&window=7d&by=entity", "s3cret")
	var api report.Report
	if err := json.Unmarshal([]byte(body), &api); code != 200 || err != nil {
		t.Fatalf("GET /api/v1/report: %d %v: %s", code, err, body)
	}
	if len(api.Rules) != 1 || api.Rules[0].Treated != r.Treated || api.Rules[0].Control != r.Control || api.Rules[0].Verdict != r.Verdict {
		t.Fatalf("API and CLI disagree:\n api %+v\n cli %+v", api.Rules, cli.Rules)
	}
	if code, body := get("/api/v1/report?by=order", "s3cret"); code != http.StatusBadRequest || !strings.Contains(body, "by") {
		t.Fatalf("bad by: %d %s", code, body)
	}
	if code, body := get("/api/v1/report?format=text", "s3cret"); code != 200 || !strings.Contains(body, "delivery-delayed") || !strings.Contains(body, "held out (control)") {
		t.Fatalf("format=text: %d %s", code, body)
	}

	// Text and CSV forms of the CLI.
	code, out, errOut = runReport(t, "--data", data, "--rule", "delivery-delayed", "--window", "3d")
	if code != 0 || !strings.Contains(out, "delivery-delayed") || !strings.Contains(out, "verdict") || !strings.Contains(out, "within 3d") {
		t.Fatalf("text: exit %d %s\n%s", code, errOut, out)
	}
	code, out, errOut = runReport(t, "--csv", "--data", data, "--by", "customer")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 2 || recs[1][0] != "delivery-delayed" {
		t.Fatalf("csv: exit %d %v %s\n%s", code, err, errOut, out)
	}

	// Usage errors exit 2 and say what is wrong.
	for _, args := range [][]string{{"--by", "order"}, {"--since", "yesterday"}, {"--window", "0"}, {"--json", "--csv"}, {"extra"}} {
		code, _, errOut := runReport(t, append(args, "--data", data)...)
		if code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
	// No store under --data: exit 1 with the reason.
	code, _, errOut = runReport(t, "--data", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "no database") {
		t.Errorf("empty data dir: exit %d: %s", code, errOut)
	}
}
