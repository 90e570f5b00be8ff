package tests

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/daemon"
)

// TestLogsMaskAddresses runs notifications through the daemon with a JSON
// logger at debug level and checks that the customer's e-mail address and
// phone number never appear unmasked in any line — not even where a
// channel's error reply echoes them back — and that every decision the
// engine records has its debug line.
func TestLogsMaskAddresses(t *testing.T) {
	const email, phone = "bob@example.com", "+15550100"
	// An SMS gateway that refuses the first message quoting the recipient,
	// as real gateways do.
	var smsCalls atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if smsCalls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "recipient %s (%s) temporarily unreachable", phone, email)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(gw.Close)
	cfg := strings.Replace(shopConfig, `url: "{{SINK}}/sms"`, `url: "`+gw.URL+`"`, 1)

	logs := &syncBuffer{}
	e := startWith(t, testdata("shop"), cfg, func(o *daemon.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	seedCustomers(e) // c-en: bob@example.com, +15550100, prefers sms
	e.publish("logistics.parcel.created", `{"parcel_ref":"l-1","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"l-1","eta":"2026-11-22T12:00:00Z"}`, "")
	e.publish("logistics.parcel.weighed", `{"parcel_ref":"l-1"}`, "") // an error decision
	waitFor(t, 10*time.Second, func() error {
		if d := e.decisions("parcel-late parcel:l-1 delivered"); len(d) != 1 {
			return fmt.Errorf("not delivered: %v", e.decisions(""))
		}
		if d := e.decisions("parcel-weight-check parcel:l-1 error"); len(d) != 1 {
			return fmt.Errorf("no error decision: %v", e.decisions(""))
		}
		return nil
	})
	if n := smsCalls.Load(); n != 2 {
		t.Fatalf("%d sms attempts, want 2 (a refusal, then the delivery)", n)
	}
	// The webhook channel put the gateway's reply in its error: it was
	// logged, masked.
	out := logs.String()
	if !strings.Contains(out, "recipient +1****100 (b**@example.com) temporarily unreachable") {
		t.Errorf("the refusal was not logged with masked addresses:\n%s", out)
	}
	for _, leak := range []string{email, phone} {
		if strings.Contains(out, leak) {
			t.Errorf("%s appears unmasked in the log:\n%s", leak, out)
		}
	}

	// One debug line per engine decision, every line valid JSON.
	var decisionLines []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == "decision" {
			if rec["level"] != "DEBUG" {
				t.Errorf("decision logged at %v", rec["level"])
			}
			decisionLines = append(decisionLines, fmt.Sprintf("%v %v %v", rec["rule"], rec["entity"], rec["verdict"]))
		}
	}
	var engineDecisions []string
	for _, d := range e.decisions("") {
		f := strings.Fields(d)
		switch f[2] {
		case "delivered", "fallback", "failed": // the dispatcher's, logged as delivery lines
			continue
		}
		engineDecisions = append(engineDecisions, strings.Join(f[:3], " "))
	}
	if strings.Join(decisionLines, "\n") != strings.Join(engineDecisions, "\n") {
		t.Errorf("decision log lines:\n%s\nrecorded decisions:\n%s", strings.Join(decisionLines, "\n"), strings.Join(engineDecisions, "\n"))
	}
	if len(engineDecisions) < 3 {
		t.Errorf("scenario too small to prove anything: %v", engineDecisions)
	}
}
