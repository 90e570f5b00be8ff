package engine_test

import (
	"strings"
	"testing"
	"time"
)

const lateRule = `
rules:
  - name: late
    on: shipments.eta_updated
    entity: order
    if: order.status != "delivered" && date(event.eta) > date(order.promised_at)
    notify: { to: order.customer_id, template: late, priority: high, vars: { eta: event.eta } }
    dedup: { key: order.order_id + "/" + event.eta }
templates:
  late:
    en: { subject: "late {{ .order.order_id }}", body: "eta {{ .vars.eta }}" }
    ru: { subject: "опаздывает {{ .order.order_id }}", body: "eta {{ .vars.eta }}" }
`

func order(id, cust string) map[string]any {
	return map[string]any{"order_id": id, "customer_id": cust, "promised_at": "2026-11-21T12:00:00Z", "status": "paid"}
}

func eta(id, at string) map[string]any { return map[string]any{"order_id": id, "eta": at} }

func TestRedeliveredEventHasNoSecondEffect(t *testing.T) {
	h := newHarness(t, lateRule, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	before := h.verdicts("")
	// JetStream redelivers both (ack lost): same stream sequences.
	h.emitSeq(1, "", "orders.created", order("o-1", "c-1"))
	h.emitSeq(2, "", "shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	// A producer retry with the same explicit id, new sequence.
	h.emitSeq(3, "evt-9", "shipments.eta_updated", eta("o-1", "2026-11-23T12:00:00Z"))
	h.emitSeq(4, "evt-9", "shipments.eta_updated", eta("o-1", "2026-11-23T12:00:00Z"))
	got := h.verdicts("")
	eq(t, "verdicts", got[:len(before)], before)
	eq(t, "new verdicts", got[len(before):], []string{"late o-1 sent", "late o-1 delivered"})
	if n := len(h.sent()); n != 2 {
		t.Fatalf("%d notifications, want 2", n)
	}
	if st, _ := h.eng.Entity(h.ctx, "order", "o-1"); st["eta"] != "2026-11-23T12:00:00Z" {
		t.Fatalf("state %v", st)
	}
}

func TestLocaleFallbackAndExpressionError(t *testing.T) {
	h := newHarness(t, lateRule, baseConfig)
	h.customer("c-ru", map[string]any{"email": "a@x", "locale": "ru-RU"})
	h.customer("c-de", map[string]any{"email": "b@x", "locale": "de"})
	h.emit("orders.created", order("o-ru", "c-ru"))
	h.emit("orders.created", order("o-de", "c-de"))
	h.emit("shipments.eta_updated", eta("o-ru", "2026-11-22T12:00:00Z"))
	h.emit("shipments.eta_updated", eta("o-de", "2026-11-22T12:00:00Z"))
	// eta missing: date(nil) fails at run time → an error decision, no crash.
	h.emit("shipments.eta_updated", map[string]any{"order_id": "o-de"})
	var locales []string
	for _, s := range h.sent() {
		locales = append(locales, s.n.Entity.Key+"="+s.n.Locale+":"+s.n.Subject)
	}
	eq(t, "locales", locales, []string{"o-ru=ru:опаздывает o-ru", "o-de=en:late o-de"})
	if r := h.reasons("error"); len(r) != 1 || !strings.Contains(r[0], "if:") {
		t.Fatalf("error decisions %q", r)
	}
}

const holdRule = `
rules:
  - name: late-held
    on: shipments.eta_updated
    entity: order
    if: date(event.eta) > date(order.promised_at)
    for: 15m
    notify: { to: order.customer_id, template: t }
templates:
  t: { en: { body: "late {{ .event.eta }}" } }
`

func TestForHoldDownDampsFlapsAndSurvivesRestartAndReload(t *testing.T) {
	h := newHarness(t, holdRule, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x"})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z")) // late
	h.advance(10 * time.Minute)
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-21T10:00:00Z")) // on time: cancels
	h.advance(30 * time.Minute)
	if n := len(h.sent()); n != 0 {
		t.Fatalf("flapping ETA sent %d", n)
	}
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T18:00:00Z")) // late again at +40m
	h.advance(5 * time.Minute)
	h.restart() // pending state is in SQLite
	h.advance(5 * time.Minute)
	h.reload(holdRule + "\n# touched\n") // same rule name: state carries over
	h.advance(10 * time.Minute)
	eq(t, "sent", h.sentSummary(), []string{"late-held o-1 email +55m0s"})
	eq(t, "verdicts", h.verdicts("late-held"), []string{
		"late-held o-1 pending", "late-held o-1 cancelled", "late-held o-1 pending", "late-held o-1 sent", "late-held o-1 delivered",
	})
	if !strings.Contains(h.sent()[0].n.Body, "2026-11-22T18:00:00Z") {
		t.Fatalf("body %q does not use the newest event", h.sent()[0].n.Body)
	}
}

const absenceRules = `
rules:
  - name: not-dispatched
    on: orders.created
    entity: order
    expect: shipments.dispatched
    within: 48h
    if: order.status != "cancelled"
    notify: { to: order.customer_id, template: t }
  - name: not-delivered
    on: shipments.dispatched
    entity: order
    expect: shipments.delivered
    deadline: date(order.promised_at) - duration("2h")
    rearm: reset
    notify: { to: order.customer_id, template: t }
templates:
  t: { en: { body: "{{ .rule }} {{ .order.order_id }}" } }
`

func TestAbsenceDeadlines(t *testing.T) {
	h := newHarness(t, absenceRules, baseConfig+"\n")
	h.cfg.Policy.QuietHours.Start = "" // tested elsewhere
	h.restart()
	for _, c := range []string{"c-1", "c-2", "c-3", "c-4"} {
		h.customer(c, map[string]any{"email": c + "@x"})
	}
	h.emit("orders.created", order("o-1", "c-1")) // never dispatched: fires at +48h
	h.emit("orders.created", order("o-2", "c-2")) // dispatched: cancelled
	h.emit("orders.created", order("o-3", "c-3")) // cancelled before the deadline: condition false
	h.advance(10 * time.Hour)
	h.emit("orders.created", order("o-1", "c-1")) // rearm: keep — the first deadline stands
	h.emit("shipments.dispatched", map[string]any{"order_id": "o-2"})
	h.emit("orders.cancelled", map[string]any{"order_id": "o-3", "status": "cancelled"})
	// o-4: deadline from an expression, promised_at - 2h = 2026-11-21T10:00Z (+24h)
	h.emit("orders.created", order("o-4", "c-4"))
	h.emit("shipments.dispatched", map[string]any{"order_id": "o-4"})
	// The daemon is down from +20h to +50h: the due timers fire once on start.
	h.advance(10 * time.Hour)
	h.st.Close()
	h.clk.Set(t0.Add(50 * time.Hour))
	h.open()
	h.settle()
	// o-2 was dispatched but never delivered either.
	eq(t, "sent", h.sentSummary(), []string{"not-delivered o-2 email +50h0m0s", "not-delivered o-4 email +50h0m0s", "not-dispatched o-1 email +50h0m0s"})
	got := strings.Join(h.verdicts(""), "\n")
	for _, want := range []string{"not-dispatched o-2 cancelled", "not-dispatched o-3 cancelled", "not-delivered o-4 armed", "not-dispatched o-1 armed"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Count(got, "not-dispatched o-1 armed") != 1 {
		t.Errorf("rearm keep re-armed:\n%s", got)
	}
	h.advance(72 * time.Hour)
	if n := len(h.sent()); n != 3 {
		t.Fatalf("timers fired again: %v", h.sentSummary())
	}
}

// TestRepeatAfterDedupWindowGetsItsOwnKey: once a rule's dedup window has
// passed, the same dedup key notifies again — as a new notification with
// an idempotency key of its own, so a receiver that honours the key does
// not drop it as a retry of the first.
func TestRepeatAfterDedupWindowGetsItsOwnKey(t *testing.T) {
	rule := strings.Replace(lateRule, `dedup: { key: order.order_id + "/" + event.eta }`, `dedup: { key: order.order_id, window: 1h }`, 1)
	h := newHarness(t, rule, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	h.emit("orders.created", order("o-1", "c-1"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-23T12:00:00Z")) // within the window: a repeat
	h.advance(2 * time.Hour)
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-24T12:00:00Z"))
	sent := h.sent()
	if len(sent) != 2 {
		t.Fatalf("%d notifications sent, want 2: %v", len(sent), h.sentSummary())
	}
	first, second := sent[0].n.IdempotencyKey, sent[1].n.IdempotencyKey
	if first != "late/o-1" || second == first || !strings.HasPrefix(second, "late/o-1/") {
		t.Fatalf("idempotency keys %q and %q, want late/o-1 and a key of its own", first, second)
	}
	if sent[0].n.ID == sent[1].n.ID {
		t.Fatalf("one notification id for both: %s", sent[0].n.ID)
	}
}
