package engine_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const policyRules = `
rules:
  - name: late
    on: shipments.eta_updated
    entity: order
    if: date(event.eta) > date(order.promised_at)
    notify: { to: order.customer_id, template: t, priority: normal }
    dedup: { key: order.order_id + "/" + event.eta }
    inhibited_by: [cancelled]
    promise: { next_update_within: 24h, template: followup }
  - name: cancelled
    on: orders.cancelled
    entity: order
    notify: { to: order.customer_id, template: t, priority: high }
  - name: promo
    on: orders.promo
    entity: order
    notify: { to: order.customer_id, template: t, priority: low }
    dedup: { key: event.n }
  - name: recall
    on: orders.recall
    entity: order
    notify: { to: order.customer_id, template: t, priority: critical }
  - name: held
    on: orders.held
    entity: order
    holdout: 50%
    notify: { to: order.customer_id, template: t }
templates:
  t: { en: { subject: "{{ .rule }}", body: "{{ .rule }} {{ .order.order_id }}{{ with .promise }} next by {{ .by }}{{ end }}" } }
  followup: { en: { body: "still on it {{ .order.order_id }}" } }
`

func noQuiet(h *harness) {
	h.cfg.Policy.QuietHours.Start, h.cfg.Policy.QuietHours.End = "", ""
	h.restart()
}

func TestQuietHoursDeferAndSupersede(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	h.clk.Set(time.Date(2026, 11, 20, 19, 30, 0, 0, time.UTC)) // 22:30 in Moscow
	h.customer("c-1", map[string]any{"email": "a@x", "timezone": "Europe/Moscow"})
	h.customer("c-2", map[string]any{"email": "b@x", "timezone": "Europe/Moscow"})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("orders.created", order("o-2", "c-2"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	h.emit("shipments.eta_updated", eta("o-2", "2026-11-22T12:00:00Z"))
	h.emit("orders.recall", map[string]any{"order_id": "o-1"}) // critical: goes at night
	// Before 09:00 Moscow the parcel o-2 turns out on time after all.
	h.advance(5 * time.Hour)
	h.emit("shipments.eta_updated", eta("o-2", "2026-11-21T09:00:00Z"))
	h.advance(10 * time.Hour)
	var got []string
	for _, s := range h.sent() {
		got = append(got, fmt.Sprintf("%s %s %s", s.n.Rule, s.n.Entity.Key, s.at.In(mustLoc(t, "Europe/Moscow")).Format("15:04")))
	}
	eq(t, "sent (Moscow time)", got, []string{"recall o-1 22:30", "late o-1 09:00"})
	if r := strings.Join(h.reasons("superseded"), "|"); !strings.Contains(r, "no longer true") {
		t.Fatalf("superseded reasons %q", r)
	}
	if r := strings.Join(h.reasons("deferred"), "|"); !strings.Contains(r, "2026-11-21T06:00:00Z") {
		t.Fatalf("deferred reasons %q", r)
	}
}

func mustLoc(t *testing.T, name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCollapseOnlyNewestWaitingGoes(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	h.clk.Set(time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC)) // night in UTC
	h.customer("c-1", map[string]any{"email": "a@x"})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-23T12:00:00Z"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-24T12:00:00Z"))
	h.advance(12 * time.Hour)
	if s := h.sent(); len(s) != 1 || !strings.Contains(s[0].n.IdempotencyKey, "2026-11-24") {
		t.Fatalf("sent %v", h.sentSummary())
	}
	if n := len(h.reasons("superseded")); n != 2 {
		t.Fatalf("%d superseded, want 2", n)
	}
}

func TestFrequencyCapPreemptsLowerPriority(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	h.clk.Set(time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC)) // quiet hours: things wait in the outbox
	h.customer("c-1", map[string]any{"email": "a@x"})
	// One customer, five orders; one budget across all of them.
	for i := 0; i < 5; i++ {
		h.emit("orders.created", order(fmt.Sprintf("o-%d", i), "c-1"))
	}
	for i := 0; i < 3; i++ {
		h.emit("orders.promo", map[string]any{"order_id": fmt.Sprintf("o-%d", i), "n": i}) // 3 low: the budget (3/24h)
	}
	h.emit("orders.promo", map[string]any{"order_id": "o-3", "n": 9}) // low: capped
	h.emit("orders.cancelled", map[string]any{"order_id": "o-4"})     // high: pre-empts a queued low
	h.emit("orders.recall", map[string]any{"order_id": "o-4"})        // critical: bypasses
	h.advance(12 * time.Hour)
	got := map[string]int{}
	for _, s := range h.sent() {
		got[s.n.Rule]++
	}
	if got["promo"] != 2 || got["cancelled"] != 1 || got["recall"] != 1 {
		t.Fatalf("sent %v", h.sentSummary())
	}
	capped := h.reasons("capped")
	if len(capped) != 2 || !strings.Contains(capped[0], "budget 3 per 24h0m0s spent") || !strings.Contains(capped[1], "pre-empted by higher-priority rule cancelled") {
		t.Fatalf("capped reasons %q", capped)
	}
}

func TestInhibitionByRuleAndOpenContact(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	noQuiet(h)
	for _, c := range []string{"c-1", "c-2"} {
		h.customer(c, map[string]any{"email": c + "@x"})
	}
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("orders.created", order("o-2", "c-2"))
	h.emit("orders.cancelled", map[string]any{"order_id": "o-1"})
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z")) // inhibited by cancelled
	// c-2 is on the phone with support about o-2.
	h.emit("support.contacts", map[string]any{"customer": "c-2", "entity": map[string]any{"type": "order", "key": "o-2"}, "topic": "order_status", "status": "opened", "channel": "phone"})
	h.emit("shipments.eta_updated", eta("o-2", "2026-11-22T12:00:00Z")) // inhibited: open contact
	h.emit("orders.recall", map[string]any{"order_id": "o-2"})          // critical passes
	h.emit("support.contacts", map[string]any{"customer": "c-2", "entity": map[string]any{"type": "order", "key": "o-2"}, "status": "closed"})
	h.emit("shipments.eta_updated", eta("o-2", "2026-11-23T12:00:00Z")) // contact closed: goes
	eq(t, "sent", h.sentSummary(), []string{"cancelled o-1 email +0s", "late o-2 email +0s", "recall o-2 email +0s"})
	for _, s := range h.sent() {
		if s.n.Rule == "late" && !strings.Contains(s.n.IdempotencyKey, "2026-11-23") {
			t.Fatalf("the late notice sent is %s, want the one after the contact closed", s.n.IdempotencyKey)
		}
	}
	inh := h.reasons("inhibited")
	if len(inh) != 2 || !strings.Contains(inh[0], "inhibited by rule cancelled") || !strings.Contains(inh[1], "open support contact") {
		t.Fatalf("inhibited reasons %q", inh)
	}
}

func TestFallbackAndMissingAddress(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	noQuiet(h)
	h.rec.fail["sms"] = true
	// c-1 prefers push (no such address: skip), then sms (down), then email.
	h.cfg.Channels["push"] = h.cfg.Channels["sms"]
	h.customer("c-1", map[string]any{"email": "a@x", "phone": "+1555", "channels": []string{"push", "sms", "email"}})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("orders.cancelled", map[string]any{"order_id": "o-1"})
	h.advance(10 * time.Minute) // sms retries once after 1m, then falls back
	eq(t, "sent", h.sentSummary(), []string{"cancelled o-1 email +1m0s"})
	got := strings.Join(h.verdicts("cancelled"), ",")
	if got != "cancelled o-1 sent,cancelled o-1 fallback,cancelled o-1 delivered" {
		t.Fatalf("verdicts %s", got)
	}
	if r := h.reasons("fallback"); !strings.Contains(r[0], "sms failed after 2 attempt(s): sms is down; falling back to email") {
		t.Fatalf("fallback reason %q", r)
	}
}

func TestPromiseKeptAndBroken(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	noQuiet(h)
	h.customer("c-1", map[string]any{"email": "a@x"})
	h.customer("c-2", map[string]any{"email": "b@x"})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("orders.created", order("o-2", "c-2"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	h.emit("shipments.eta_updated", eta("o-2", "2026-11-22T12:00:00Z"))
	h.advance(20 * time.Hour)
	h.emit("shipments.eta_updated", eta("o-2", "2026-11-23T12:00:00Z")) // news for o-2 within 24h: promise kept
	h.advance(30 * time.Hour)
	// o-2's second notice makes a promise of its own, broken at +44h.
	eq(t, "sent", h.sentSummary(), []string{"late o-1 email +0s", "late o-2 email +0s", "late o-2 email +20h0m0s", "late o-1 email +24h0m0s", "late o-2 email +44h0m0s"})
	last := h.sent()[3].n
	if last.Body != "still on it o-1" {
		t.Fatalf("follow-up body %q", last.Body)
	}
	if !strings.Contains(h.sent()[0].n.Body, "next by 2026-11-21 10:00:00") {
		t.Fatalf("promise time not in the message: %q", h.sent()[0].n.Body)
	}
	p := strings.Join(h.reasons("promise"), "|")
	if !strings.Contains(p, "kept") || !strings.Contains(p, "broken") {
		t.Fatalf("promise verdicts %q", p)
	}
}

func TestHoldoutIsRecordedNotSent(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	noQuiet(h)
	h.customer("c-1", map[string]any{"email": "a@x"})
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("o-%d", i)
		h.emit("orders.created", order(id, "c-1"))
		h.emit("orders.held", map[string]any{"order_id": id})
	}
	held, sent := 0, 0
	for _, v := range h.verdicts("held") {
		switch {
		case strings.HasSuffix(v, " held_out"):
			held++
		case strings.HasSuffix(v, " sent"):
			sent++
		}
	}
	// The budget caps sends at 3, the rest of the treated group is capped.
	if held < 10 || held > 30 || len(h.reasons("capped"))+sent != 40-held {
		t.Fatalf("held %d, sent %d, capped %d", held, sent, len(h.reasons("capped")))
	}
	for _, s := range h.sent() {
		for _, v := range h.verdicts("held") {
			if v == "held "+s.n.Entity.Key+" held_out" {
				t.Fatalf("held-out entity %s was sent", s.n.Entity.Key)
			}
		}
	}
}

// TestDedupAndSupersedeAcrossRestart: the dedup marks and waiting
// notifications of before a restart still count after it — the engine
// loads the pairs it skips SQLite look-ups for from the store at start —
// and pairs written after the restart count too.
func TestDedupAndSupersedeAcrossRestart(t *testing.T) {
	t.Run("supersede", func(t *testing.T) {
		h := newHarness(t, policyRules, baseConfig)
		h.clk.Set(time.Date(2026, 11, 20, 19, 30, 0, 0, time.UTC)) // 22:30 in Moscow: deferred
		h.customer("c-1", map[string]any{"email": "a@x", "timezone": "Europe/Moscow"})
		h.emit("orders.created", order("o-1", "c-1"))
		h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
		h.restart()
		h.emit("shipments.eta_updated", eta("o-1", "2026-11-23T12:00:00Z"))
		h.advance(12 * time.Hour)
		if r := strings.Join(h.reasons("superseded"), "|"); !strings.Contains(r, "replaced by newer notification") {
			t.Fatalf("superseded reasons %q: the notification deferred before the restart was not replaced", r)
		}
		if n := len(h.sent()); n != 1 {
			t.Fatalf("%d notifications sent at 09:00, want the newer one only", n)
		}
	})
	h := newHarness(t, policyRules, baseConfig)
	noQuiet(h)
	h.customer("c-1", map[string]any{"email": "a@x"})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("orders.promo", map[string]any{"order_id": "o-1", "n": "spring"})
	h.restart()
	h.emit("orders.promo", map[string]any{"order_id": "o-1", "n": "spring"}) // a repeat: deduped
	h.emit("orders.promo", map[string]any{"order_id": "o-1", "n": "autumn"})
	h.emit("orders.promo", map[string]any{"order_id": "o-1", "n": "autumn"}) // a repeat: deduped
	got := map[string]int{}
	for _, v := range h.verdicts("promo") {
		got[v[strings.LastIndexByte(v, ' ')+1:]]++
	}
	if got["sent"] != 2 || got["deduped"] != 2 {
		t.Errorf("promo verdicts %v, want 2 sent and 2 deduped", h.verdicts("promo"))
	}
}
