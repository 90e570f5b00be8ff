package tests

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// timerRules has rules that wait: an absence deadline (the warehouse must
// dispatch within 2 s of the order) and a hold-down (a late ETA must stay
// late for 1 s). A kill leaves their timers armed, and the restarted
// daemon finds the events that cancel them waiting in the stream.
const timerRules = robustEntities + `
rules:
  - name: not-dispatched
    on: shop.orders.created
    entity: order
    expect: shop.shipments.dispatched
    within: 2s
    notify: { to: order.customer_id, template: not-dispatched }

  - name: late-held
    on: shop.shipments.eta
    entity: order
    if: date(event.eta) > date(order.promised_at) + duration("1h")
    for: 1s
    notify: { to: order.customer_id, template: late-held, vars: { eta: event.eta } }
    dedup: { key: order.order_id + "/" + event.eta }

templates:
  not-dispatched:
    en: { subject: "Order {{ .order.order_id }} not dispatched yet", body: "We are on it." }
  late-held:
    en: { subject: "Order {{ .order.order_id }} is late", body: "It now arrives {{ .vars.eta }}." }
`

// genTimerWorkload makes customers, then orders. Each order is created;
// about half are dispatched `lag` events later (~0.3 s at 900 events/s,
// well inside the 2 s deadline): the others must get one not-dispatched
// notification each. A third of the orders get a late ETA; half of those
// are corrected to on time `lag` events later (inside the 1 s hold-down):
// only the late ETAs that stay late must be notified.
func genTimerWorkload(orders, customers int, seed uint64) *workload {
	const lag = 300
	rng := rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d))
	w := &workload{expected: map[string]bool{}, orders: orders, finalETA: map[string]string{}}
	for c := 0; c < customers; c++ {
		id := fmt.Sprintf("c-%04d", c)
		w.events = append(w.events, genEvent{Subject: "shop.customers.updated", ID: "cust-" + id,
			Body: fmt.Appendf(nil, `{"customer_id":%q,"email":"%s@example.com","locale":"en","channels":["email"]}`, id, id)})
	}
	var slots []slot
	for i := 0; i < orders; i++ {
		id := fmt.Sprintf("o-%06d", i)
		slots = append(slots, slot{i, 0, genEvent{Subject: "shop.orders.created", ID: "created-" + id,
			Body: fmt.Appendf(nil, `{"order_id":%q,"customer_id":"c-%04d","promised_at":"2026-11-22T18:00:00Z","status":"paid"}`, id, i%customers)}})
		if rng.Float64() < 0.5 {
			slots = append(slots, slot{i + lag, 1, genEvent{Subject: "shop.shipments.dispatched", ID: "dispatched-" + id,
				Body: fmt.Appendf(nil, `{"order_id":%q}`, id)}})
		} else {
			w.expected["not-dispatched/"+id] = true
		}
		if rng.Float64() < 1.0/3 {
			late := fmt.Sprintf("2026-11-23T%02d:00:00Z", 10+rng.IntN(10))
			slots = append(slots, slot{i + 10, 2, genEvent{Subject: "shop.shipments.eta", ID: "eta1-" + id,
				Body: fmt.Appendf(nil, `{"order_id":%q,"eta":%q}`, id, late)}})
			if rng.Float64() < 0.5 {
				slots = append(slots, slot{i + 10 + lag, 3, genEvent{Subject: "shop.shipments.eta", ID: "eta2-" + id,
					Body: fmt.Appendf(nil, `{"order_id":%q,"eta":"2026-11-22T12:00:00Z"}`, id)}})
			} else {
				w.expected["late-held/"+id+"/"+late] = true
			}
		}
	}
	w.events = append(w.events, inOrder(slots)...)
	return w
}

// TestCrashSIGKILLTimers is the crash run over rules that wait (an
// absence deadline and a hold-down): a daemon killed with their timers
// armed restarts onto a backlog that holds the events cancelling them. A
// timer may fire only once every event published before it fell due was
// applied: no "not dispatched" for an order whose dispatch waited in the
// backlog, no "late" for an ETA corrected in time; and none is lost.
func TestCrashSIGKILLTimers(t *testing.T) {
	crashRun{orders: 12_000, kills: 4, rate: 900, rules: timerRules, down: 9 * time.Second,
		gen: func(orders int, seed uint64) *workload { return genTimerWorkload(orders, 200, seed) }}.run(t)
}
