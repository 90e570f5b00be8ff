package tests

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

const shopConfig = `
channels:
  email: { type: webhook, url: "{{SINK}}/email", secret: "${SINK_SECRET}", address_field: email }
  sms:   { type: webhook, url: "{{SINK}}/sms", address_field: phone }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "00:00", end: "00:00" }
  frequency_cap: { max: 100, per: 24h }
  retry: { attempts: 3, backoff: 50ms, max_backoff: 200ms, timeout: 2s }
`

func seedCustomers(e *env) {
	e.publish("crm.customer.updated", `{"cust":"c-ru","email":"anna@example.ru","locale":"ru-RU","channels":["email"]}`, "")
	e.publish("crm.customer.updated", `{"cust":"c-en","email":"bob@example.com","phone":"+15550100","locale":"en","channels":["sms","email"]}`, "")
}

func TestEventToNotification(t *testing.T) {
	e := start(t, testdata("shop"), shopConfig)
	seedCustomers(e)
	e.publish("logistics.parcel.created", `{"parcel_ref":"p-1","cust":"c-ru","promised":"2026-11-20T18:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-1","eta":"2026-11-22T12:00:00Z"}`, "evt-eta-1")

	waitFor(t, 10*time.Second, func() error {
		if n := len(e.sink.all()); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
	got := e.sink.all()[0]
	doc := got.Doc
	if got.Path != "/email" || doc.Channel != "email" {
		t.Errorf("channel: path %s doc.channel %q, want email", got.Path, doc.Channel)
	}
	if doc.Rule != "parcel-late" || doc.Priority != "high" || doc.To.Customer != "c-ru" || doc.To.Address != "anna@example.ru" {
		t.Errorf("doc = %+v", doc)
	}
	if doc.Entity.Type != "parcel" || doc.Entity.Key != "p-1" || doc.Locale != "ru" {
		t.Errorf("entity/locale = %+v %q", doc.Entity, doc.Locale)
	}
	if doc.Subject != "Посылка p-1 опаздывает" || !strings.Contains(doc.Body, "2026-11-22T12:00:00Z") {
		t.Errorf("rendered %q / %q", doc.Subject, doc.Body)
	}
	if doc.Vars["eta"] != "2026-11-22T12:00:00Z" || doc.ID == "" || doc.CreatedAt.IsZero() {
		t.Errorf("vars/id/created_at: %+v", doc)
	}
	if want := "parcel-late/p-1/2026-11-22T12:00:00Z"; doc.IdempotencyKey != want || got.Header.Get("Idempotency-Key") != want {
		t.Errorf("idempotency key doc %q header %q, want %q", doc.IdempotencyKey, got.Header.Get("Idempotency-Key"), want)
	}
	if !got.SigOK {
		t.Errorf("Proactive-Signature %q does not verify", got.Header.Get("Proactive-Signature"))
	}
	// The shadow rule decided but sent nothing.
	waitFor(t, 5*time.Second, func() error {
		if d := e.decisions("shadow-parcel-late parcel:p-1 shadow"); len(d) != 1 {
			return fmt.Errorf("shadow decisions: %v", e.decisions("shadow"))
		}
		return nil
	})
	if d := e.decisions("parcel-late parcel:p-1 delivered"); len(d) != 1 {
		t.Errorf("delivered decision: %v", e.decisions(""))
	}
	// Health and readiness.
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.api(p); r.StatusCode != 200 {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
	}
}

func TestDedupAndLocale(t *testing.T) {
	e := start(t, testdata("shop"), shopConfig)
	seedCustomers(e)
	e.publish("logistics.parcel.created", `{"parcel_ref":"p-2","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, "")
	// The same ETA three times (distinct events): one notification.
	for i := 0; i < 3; i++ {
		e.publish("logistics.parcel.eta", `{"parcel_ref":"p-2","eta":"2026-11-21T12:00:00Z"}`, "")
	}
	waitFor(t, 10*time.Second, func() error {
		if n := len(e.sink.all()); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
	// A new ETA is a new dedup key: a second notification.
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-2","eta":"2026-11-23T09:00:00Z"}`, "")
	waitFor(t, 10*time.Second, func() error {
		if d := e.decisions("parcel-late parcel:p-2 deduped"); len(d) != 2 {
			return fmt.Errorf("deduped: %v", d)
		}
		if n := len(e.sink.all()); n != 2 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
	// Two new ETAs in quick succession: the first is still queued when the
	// second is decided, so only the newest goes (no flip-flops).
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-2","eta":"2026-11-24T09:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-2","eta":"2026-11-25T09:00:00Z"}`, "")
	waitFor(t, 10*time.Second, func() error {
		got := e.sink.all()
		if len(got) < 3 || got[len(got)-1].Doc.Vars["eta"] != "2026-11-25T09:00:00Z" {
			return fmt.Errorf("%d notifications", len(got))
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	if n := len(e.sink.all()); n > 4 {
		t.Errorf("%d notifications after a collapse, want at most 4", n)
	}
	for _, r := range e.sink.all() {
		// c-en prefers sms, and has a phone.
		if r.Path != "/sms" || r.Doc.Locale != "en" || !strings.HasPrefix(r.Doc.Subject, "Parcel p-2 is late") {
			t.Errorf("got %s %q %q", r.Path, r.Doc.Locale, r.Doc.Subject)
		}
	}
}

func TestDeadLetters(t *testing.T) {
	e := start(t, testdata("shop"), shopConfig)
	dead := make(chan *nats.Msg, 10)
	sub, err := e.nc.ChanSubscribe("proactive.dead.>", dead)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	big := `{"parcel_ref":"p-9","pad":"` + strings.Repeat("x", 1<<20) + `"}`
	cases := []struct{ subject, body, reason, errPart string }{
		{"logistics.parcel.eta", `not json at all`, "not_json", "not JSON"},
		{"logistics.parcel.eta", `[1,2,3]`, "not_object", "JSON object"},
		{"logistics.parcel.eta", big, "too_large", "limit is 1048576"},
		{"logistics.parcel.eta", `{"eta":"2026-11-22T12:00:00Z"}`, "missing_key", "event.parcel_ref"},
	}
	for _, c := range cases {
		e.publish(c.subject, c.body, "")
	}
	for _, c := range cases {
		select {
		case m := <-dead:
			if m.Subject != "proactive.dead."+c.reason {
				t.Errorf("dead letter subject %s, want proactive.dead.%s", m.Subject, c.reason)
			}
			if !strings.Contains(m.Header.Get("Proactive-Error"), c.errPart) || m.Header.Get("Proactive-Subject") != c.subject {
				t.Errorf("%s headers: %v", c.reason, m.Header)
			}
			if string(m.Data) != c.body {
				t.Errorf("%s: body not preserved", c.reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no dead letter for %s", c.reason)
		}
	}
	// The daemon carries on.
	seedCustomers(e)
	e.publish("logistics.parcel.created", `{"parcel_ref":"p-3","cust":"c-ru","promised":"2026-11-20T18:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-3","eta":"2026-11-22T12:00:00Z"}`, "")
	waitFor(t, 10*time.Second, func() error {
		if n := len(e.sink.all()); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
}

func TestCloudEventsAndExpressionErrors(t *testing.T) {
	e := start(t, testdata("shop"), shopConfig)
	seedCustomers(e)
	ce := func(id, typ string, data string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/carrier","type":%q,"time":"2026-11-20T10:00:00Z","datacontenttype":"application/json","data":%s}`, id, typ, data)
	}
	e.publish("logistics.parcel.created", ce("ce-1", "parcel.created", `{"parcel_ref":"p-4","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`), "")
	e.publish("logistics.parcel.eta", ce("ce-2", "parcel.eta", `{"parcel_ref":"p-4","eta":"2026-11-25T12:00:00Z"}`), "")
	// The same CloudEvent id again (a producer retry): no second effect.
	e.publish("logistics.parcel.eta", ce("ce-2", "parcel.eta", `{"parcel_ref":"p-4","eta":"2026-11-26T12:00:00Z"}`), "")
	// weight_kg is missing: `parcel.weight_kg * 2` fails at run time.
	e.publish("logistics.parcel.weighed", `{"parcel_ref":"p-4"}`, "")
	waitFor(t, 10*time.Second, func() error {
		if d := e.decisions("parcel-weight-check parcel:p-4 error"); len(d) != 1 {
			return fmt.Errorf("error decisions: %v", e.decisions(""))
		}
		if n := len(e.sink.all()); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
	if got := e.sink.all()[0].Doc.Vars["eta"]; got != "2026-11-25T12:00:00Z" {
		t.Errorf("eta %v: the duplicate CloudEvent had an effect", got)
	}
	if d := e.decisions("parcel-weight-check parcel:p-4 error"); !strings.Contains(d[0], "weight_kg") && !strings.Contains(d[0], "invalid operation") {
		t.Errorf("error decision does not say why: %s", d[0])
	}
	if r := e.api("/readyz"); r.StatusCode != 200 {
		b, _ := io.ReadAll(r.Body)
		t.Errorf("not ready after an expression error: %s", b)
	}
}

func TestRestartMidStreamAndRedelivery(t *testing.T) {
	e := start(t, testdata("shop"), shopConfig)
	seedCustomers(e)
	const n = 60
	for i := 0; i < n/2; i++ {
		e.publish("logistics.parcel.created", fmt.Sprintf(`{"parcel_ref":"r-%d","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, i), "")
		e.publish("logistics.parcel.eta", fmt.Sprintf(`{"parcel_ref":"r-%d","eta":"2026-11-22T12:00:00Z"}`, i), "")
	}
	e.restart()
	for i := n / 2; i < n; i++ {
		e.publish("logistics.parcel.created", fmt.Sprintf(`{"parcel_ref":"r-%d","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, i), "")
		e.publish("logistics.parcel.eta", fmt.Sprintf(`{"parcel_ref":"r-%d","eta":"2026-11-22T12:00:00Z"}`, i), "")
	}
	waitFor(t, 20*time.Second, func() error {
		if got := len(e.sink.all()); got != n {
			return fmt.Errorf("%d of %d notifications", got, n)
		}
		// The dispatcher records a claimed batch's outcomes after its
		// sends: count decisions below only once they are in.
		delivered := 0
		for _, d := range e.decisions("parcel-late") {
			if strings.Contains(d, " delivered — ") {
				delivered++
			}
		}
		if delivered != n {
			return fmt.Errorf("%d of %d deliveries recorded", delivered, n)
		}
		return nil
	})
	// Entity state survived the restart.
	st, err := e.d.Engine().Entity(t.Context(), "parcel", "r-0")
	if err != nil || st["promised"] != "2026-11-20T18:00:00Z" || st["eta"] != "2026-11-22T12:00:00Z" {
		t.Errorf("state of r-0 after restart: %v %v", st, err)
	}
	before := len(e.decisions(""))

	// Redelivery: drop the durable consumer so JetStream delivers the whole
	// stream again to the restarted daemon. Nothing may happen twice.
	e.stop()
	js, _ := e.nc.JetStream()
	if err := js.DeleteConsumer(e.cfg.NATS.Stream, e.cfg.NATS.Consumer); err != nil {
		t.Fatal(err)
	}
	e.boot()
	e.publish("logistics.parcel.created", `{"parcel_ref":"last","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"last","eta":"2026-11-22T12:00:00Z"}`, "")
	waitFor(t, 20*time.Second, func() error {
		if got := len(e.sink.all()); got != n+1 {
			return fmt.Errorf("%d notifications, want %d", got, n+1)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // let any wrong second effect show up
	seen := map[string]int{}
	for _, r := range e.sink.all() {
		seen[r.Doc.IdempotencyKey]++
		if seen[r.Doc.IdempotencyKey] > 1 {
			t.Errorf("notification %s sent twice", r.Doc.IdempotencyKey)
		}
	}
	// parcel-late + shadow decisions for the one new parcel: 2 decided, 1 delivered.
	if after := len(e.decisions("")); after != before+3 {
		t.Errorf("decisions went from %d to %d after redelivery, want +3 (new parcel only):\n%s", before, after, strings.Join(e.decisions("")[before:], "\n"))
	}
}
