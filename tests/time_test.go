package tests

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestTimersOnTheWallClock proves deadlines, for:, schedules and quiet-hours
// deferral work on the real clock too, and that a due timer survives a
// restart.
func TestTimersOnTheWallClock(t *testing.T) {
	now := time.Now().UTC()
	// Quiet hours from a second ago to four seconds from now (UTC).
	cfg := fmt.Sprintf(`
channels:
  email: { type: webhook, url: "{{SINK}}/email", address_field: email }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: %q, end: %q }
  frequency_cap: { max: 100, per: 24h }
`, now.Add(-time.Second).Format("15:04:05"), now.Add(4*time.Second).Format("15:04:05"))
	e := start(t, testdata("clock"), cfg)
	e.publish("shop.customer.updated", `{"customer_id":"c-1","email":"a@example.com"}`, "")

	began := time.Now()
	e.publish("shop.order.created", `{"order_id":"o-absent","customer_id":"c-1"}`, "") // never packed
	e.publish("shop.order.created", `{"order_id":"o-packed","customer_id":"c-1"}`, "") // packed in time
	e.publish("shop.order.packed", `{"order_id":"o-packed"}`, "")
	e.publish("shop.order.created", `{"order_id":"o-vip","customer_id":"c-1","vip":true}`, "")
	e.publish("shop.order.packed", `{"order_id":"o-vip"}`, "")
	e.publish("shop.order.eta", `{"order_id":"o-flap","customer_id":"c-1","late":true}`, "")
	e.publish("shop.order.eta", `{"order_id":"o-flap","late":false}`, "") // flap: cancels
	e.publish("shop.order.eta", `{"order_id":"o-late","customer_id":"c-1","late":true}`, "")
	e.publish("shop.order.note", `{"order_id":"o-quiet","customer_id":"c-1"}`, "") // deferred by quiet hours

	// Restart while the deadline and the hold-down are pending.
	time.Sleep(300 * time.Millisecond)
	e.restart()

	want := []string{"eta-late o-late", "not-packed o-absent", "quiet o-quiet", "sweep o-vip"}
	waitFor(t, 15*time.Second, func() error {
		var got []string
		for _, r := range e.sink.all() {
			got = append(got, r.Doc.Rule+" "+r.Doc.Entity.Key)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	for _, r := range e.sink.all() {
		el := r.Arrived.Sub(began)
		switch r.Doc.Rule {
		case "not-packed":
			if el < 2*time.Second {
				t.Errorf("deadline fired after %s, before its 2s", el)
			}
		case "eta-late":
			if el < 1500*time.Millisecond {
				t.Errorf("for: fired after %s, before its 1.5s", el)
			}
		case "quiet":
			if end := now.Add(4 * time.Second).Truncate(time.Second); r.Arrived.Before(end) {
				t.Errorf("quiet-hours notification arrived %s, before the window ended at %s", r.Arrived.Format(time.RFC3339Nano), end.Format(time.RFC3339))
			}
		}
	}
	if d := e.decisions("quiet order:o-quiet deferred"); len(d) != 1 {
		t.Errorf("no deferred decision: %v", e.decisions("quiet"))
	}
	if d := e.decisions("eta-late order:o-flap cancelled"); len(d) != 1 {
		t.Errorf("flap not cancelled: %v", e.decisions("eta-late"))
	}
	// Nothing fires twice.
	time.Sleep(2500 * time.Millisecond)
	if n := len(e.sink.all()); n != len(want) {
		t.Errorf("%d notifications after waiting, want %d", n, len(want))
	}
}
