package engine_test

import "testing"

// The rules of one event share one binding of the environment
// (Engine.bindEnv); each must still see only its own customer: the one
// its notify.to resolved, none without a to, and the entity itself when
// the entity is a customer.
const ownCustomerRules = `
rules:
  - name: a-gold
    on: shipments.eta_updated
    entity: order
    if: customer.tier == "gold"
    notify: { to: order.customer_id, template: t }
  - name: b-internal-sees-no-customer
    on: shipments.eta_updated
    entity: order
    if: customer == nil
    notify: { channel: ops, template: t }
  - name: c-gift-silver
    on: shipments.eta_updated
    entity: order
    if: customer.tier == "silver"
    notify: { to: event.gift_to, template: t }
  - name: d-referrer-silver
    on: customers.updated
    entity: customer
    if: customer.tier == "silver"
    notify: { to: event.referrer, template: t }
  - name: e-internal-sees-the-entity
    on: customers.updated
    entity: customer
    if: customer.tier == "gold"
    notify: { channel: ops, template: t }
templates:
  t:
    en: { body: "x" }
`

func TestRulesOfOneEventSeeTheirOwnCustomer(t *testing.T) {
	h := newHarness(t, ownCustomerRules, baseConfig)
	h.customer("c-gold", map[string]any{"email": "g@x", "tier": "gold"})
	h.customer("c-silver", map[string]any{"email": "s@x", "tier": "silver"})
	h.emit("orders.created", order("o-1", "c-gold"))
	h.emit("shipments.eta_updated", map[string]any{"order_id": "o-1", "gift_to": "c-silver"})
	h.emit("customers.updated", map[string]any{"customer_id": "c-gold", "referrer": "c-silver"})
	got := h.verdicts("")
	var fired []string
	for _, v := range got {
		if len(v) > 5 && v[len(v)-4:] == "sent" {
			fired = append(fired, v)
		}
	}
	eq(t, "sent", fired, []string{
		"a-gold o-1 sent",
		"b-internal-sees-no-customer o-1 sent",
		"c-gift-silver o-1 sent",
		"d-referrer-silver c-gold sent",
		"e-internal-sees-the-entity c-gold sent",
	})
}

// An entity read back from the store holds the numbers an event decodes
// to: a total of 1234567 prints the same in a template before and after a
// restart (stored state decoded with encoding/json printed
// 1.234567e+06).
func TestStoredStateKeepsItsNumbers(t *testing.T) {
	const totalRule = `
rules:
  - name: total
    on: shipments.eta_updated
    entity: order
    notify: { to: order.customer_id, template: t }
    dedup: { key: order.order_id + "/" + event.eta }
templates:
  t:
    en: { body: "total {{ .order.total }}, {{ .order.share }}, {{ .order.n }}" }
`
	h := newHarness(t, totalRule, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x"})
	o := order("o-1", "c-1")
	o["total"], o["share"], o["n"] = 1234567, 0.25, 3
	h.emit("orders.created", o)
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	h.restart()
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-23T12:00:00Z"))
	var bodies []string
	for _, s := range h.sent() {
		bodies = append(bodies, s.n.Body)
	}
	eq(t, "bodies", bodies, []string{"total 1234567, 0.25, 3", "total 1234567, 0.25, 3"})
}
