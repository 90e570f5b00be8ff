package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The generated world: orders and customers, ~50 "hot" subjects that
// events are published to (each with Matching rules), and "cold" rules on
// subjects no event uses, so the total number of rules can grow without
// changing the rules that apply to an event. Every rule's condition is also
// written in Go (fires), so the generator knows — independently of the
// engine — which events fire which rule and which notifications must reach
// the webhook.

// orderPrefixes × orderVerbs give the hot order subjects.
var (
	orderPrefixes = []string{"orders", "shipments", "payments", "returns"}
	orderVerbs    = []string{
		"created", "updated", "status_changed", "eta_updated", "delayed", "exception",
		"address_changed", "split", "held", "released", "escalated", "reviewed",
	}
	reasons  = []string{"carrier_delay", "weather", "customs", "address_issue", "stock_shortage", "payment_review", "damaged", "capacity"}
	regions  = []string{"eu-west", "eu-north", "us-east", "us-west", "ap-south", "sa-east"}
	statuses = []string{"paid", "packed", "in_transit", "out_for_delivery", "delivered", "cancelled", "on_hold"}
	tiers    = []string{"standard", "silver", "gold", "platinum"}
	carriers = []string{"dhl-express", "ups-standard", "fedex-ground", "dpd-classic", "gls-business"}
)

const routine = "routine"

// base is the time all generated timestamps are relative to (hours).
var base = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// ruleShape is the form of a rule's condition.
type ruleShape int

const (
	// reason in [..] && order.status not in ["cancelled","delivered"] && order.total >= T
	shapeStatusTotal ruleShape = iota
	// reason in [..] && date(event.eta) > date(order.promised_at) + duration("Hh")
	shapeLate
	// reason in [..] && event.region in [3 regions] && event.attempts >= A
	shapeRegionAttempts
	// reason in [..] && customer.tier in ["gold","platinum"] && order.total >= T
	shapeTierTotal
	numShapes
)

type genRule struct {
	name     string
	subject  string
	shape    ruleShape
	reasons  [2]string
	total    int // T
	hours    int // H
	attempts int // A
	regions  [3]string
	template string
}

type genOrder struct {
	id       string
	cust     int
	total    int
	promised int // hours after base
	// status is the current merged status: every order event carries one.
	status string
}

type genCustomer struct {
	id   string
	tier string
}

// world is the generator's model of what the engine should remember.
type world struct {
	rng       *rand.Rand
	hot       []string            // hot subjects, index = subject id
	bySubject map[string][]int    // hot subject → rule indexes
	rules     []genRule           //
	orders    []genOrder          //
	customers []genCustomer       //
	fired     map[[2]int]struct{} // (rule, order) pairs that fired: dedup by entity
	boot      int                 // events left in the bootstrap (customers, then orders)
	bootPos   int
	fireShare float64
	// onlyNew makes every order event fire a rule for an order it has not
	// fired for yet (a new notification), while pairs are left.
	onlyNew bool
	buf     []byte
}

// genEvent is one generated event.
type genEvent struct {
	subject string
	body    []byte
	// fires is the rule index the event fires, -1 for none.
	fires int
	// notify is true when the firing is a new (rule, order) pair and so a
	// new notification (dedup is per rule and entity).
	notify bool
}

func newWorld(seed uint64, nRules, matching, nOrders, nCustomers int, fireShare float64) *world {
	w := &world{
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		bySubject: map[string][]int{},
		fired:     map[[2]int]struct{}{},
		fireShare: fireShare,
	}
	for _, p := range orderPrefixes {
		for _, v := range orderVerbs {
			w.hot = append(w.hot, p+"."+v)
		}
	}
	// ~50 hot subjects, fewer when there are not enough rules to give
	// each its `matching` rules.
	nHot := min(len(w.hot), max(1, nRules/max(1, matching)))
	w.hot = w.hot[:nHot]
	for i := 0; i < nRules; i++ {
		r := genRule{
			name:     fmt.Sprintf("r%05d", i),
			shape:    ruleShape(i % int(numShapes)),
			reasons:  [2]string{fmt.Sprintf("%s_%d", reasons[i%len(reasons)], i), fmt.Sprintf("%s_%d", reasons[(i+3)%len(reasons)], i)},
			total:    []int{1000, 5000, 20000, 40000}[i%4],
			hours:    []int{1, 2, 6, 12}[(i/4)%4],
			attempts: 1 + i%3,
			template: fmt.Sprintf("t%d", i%10),
		}
		for k := range r.regions {
			r.regions[k] = regions[(i+k)%len(regions)]
		}
		if i < nHot*matching {
			r.subject = w.hot[i%nHot]
			w.bySubject[r.subject] = append(w.bySubject[r.subject], i)
		} else {
			// Cold: 20 rules per subject nobody publishes to.
			r.subject = fmt.Sprintf("%s.legacy_%d", orderPrefixes[i%len(orderPrefixes)], i/20)
		}
		w.rules = append(w.rules, r)
	}
	for i := 0; i < nCustomers; i++ {
		w.customers = append(w.customers, genCustomer{id: fmt.Sprintf("c-%06d", i), tier: tiers[w.rng.IntN(len(tiers))]})
	}
	for i := 0; i < nOrders; i++ {
		w.orders = append(w.orders, genOrder{
			id: fmt.Sprintf("o-%07d", i), cust: w.rng.IntN(nCustomers),
			total: 500 + w.rng.IntN(100000), promised: 24 + w.rng.IntN(96), status: "paid",
		})
	}
	w.boot = nCustomers + nOrders
	return w
}

// fires is the rule's condition in Go: the oracle the engine is checked
// against. ord is the order state after the event was merged into it.
func (w *world) fires(r *genRule, ord *genOrder, reason, region string, eta, attempts int) bool {
	if reason != r.reasons[0] && reason != r.reasons[1] {
		return false
	}
	switch r.shape {
	case shapeStatusTotal:
		return ord.status != "cancelled" && ord.status != "delivered" && ord.total >= r.total
	case shapeLate:
		return eta > ord.promised+r.hours
	case shapeRegionAttempts:
		return (region == r.regions[0] || region == r.regions[1] || region == r.regions[2]) && attempts >= r.attempts
	case shapeTierTotal:
		t := w.customers[ord.cust].tier
		return (t == "gold" || t == "platinum") && ord.total >= r.total
	}
	return false
}

func (r *genRule) condition() string {
	in := fmt.Sprintf(`event.reason in [%q, %q]`, r.reasons[0], r.reasons[1])
	switch r.shape {
	case shapeStatusTotal:
		return fmt.Sprintf(`%s && order.status not in ["cancelled", "delivered"] && order.total >= %d`, in, r.total)
	case shapeLate:
		return fmt.Sprintf(`%s && date(event.eta) > date(order.promised_at) + duration("%dh")`, in, r.hours)
	case shapeRegionAttempts:
		return fmt.Sprintf(`%s && event.region in [%q, %q, %q] && event.attempts >= %d`, in, r.regions[0], r.regions[1], r.regions[2], r.attempts)
	case shapeTierTotal:
		return fmt.Sprintf(`%s && customer.tier in ["gold", "platinum"] && order.total >= %d`, in, r.total)
	}
	return "false"
}

// writeRules writes the rule directory: entities, templates and the rules
// in files of 500.
func (w *world) writeRules(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("rules dir: %w", err)
	}
	var b strings.Builder
	b.WriteString("# Generated by proactived bench.\nentities:\n")
	b.WriteString("  order:\n    key: event.order_id\n    subjects: [")
	for i, p := range orderPrefixes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", p+".>")
	}
	b.WriteString("]\n  customer:\n    key: event.customer_id\n    subjects: [\"customers.>\"]\n")
	b.WriteString("templates:\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "  t%d:\n    en:\n", i)
		fmt.Fprintf(&b, "      subject: \"Order {{ .order.order_id }}: an update (%d)\"\n", i)
		b.WriteString("      body: \"Your order {{ .order.order_id }} of {{ .order.total }} {{ .order.currency }} is {{ .order.status }}. " +
			"Reason: {{ .event.reason }}; new estimate {{ .event.eta }}. No need to contact us.\"\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "00-world.yaml"), []byte(b.String()), 0o640); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	for start := 0; start < len(w.rules); start += 500 {
		b.Reset()
		b.WriteString("rules:\n")
		for i := start; i < min(start+500, len(w.rules)); i++ {
			r := &w.rules[i]
			fmt.Fprintf(&b, "  - name: %s\n    on: %s\n    entity: order\n    if: '%s'\n    notify: { to: order.customer_id, template: %s }\n",
				r.name, r.subject, r.condition(), r.template)
		}
		name := filepath.Join(dir, fmt.Sprintf("rules-%05d.yaml", start))
		if err := os.WriteFile(name, []byte(b.String()), 0o640); err != nil {
			return fmt.Errorf("write rules: %w", err)
		}
	}
	return nil
}

// next generates the next event. The first events (the bootstrap) declare
// every customer and order, so every rule finds the fields it reads.
func (w *world) next(now time.Time) genEvent {
	if w.bootPos < w.boot {
		i := w.bootPos
		w.bootPos++
		if i < len(w.customers) {
			return w.customerEvent(i, now)
		}
		o := &w.orders[i-len(w.customers)]
		return genEvent{subject: "orders.created", body: w.orderBody(o, true, routine, regions[0], o.promised, 0, now), fires: -1}
	}
	if w.rng.IntN(50) == 0 { // 2% profile updates
		return w.customerEvent(w.rng.IntN(len(w.customers)), now)
	}
	subject := w.hot[w.rng.IntN(len(w.hot))]
	rs := w.bySubject[subject]
	want := w.onlyNew || w.rng.Float64() < w.fireShare
	for try := 0; ; try++ {
		ri := rs[w.rng.IntN(len(rs))]
		r := &w.rules[ri]
		reason := r.reasons[w.rng.IntN(2)]
		if !want && w.rng.IntN(2) == 0 {
			reason = routine
		}
		oi := w.rng.IntN(len(w.orders))
		o := &w.orders[oi]
		status := statuses[w.rng.IntN(len(statuses))]
		region := regions[w.rng.IntN(len(regions))]
		eta := o.promised - 12 + w.rng.IntN(36)
		attempts := w.rng.IntN(4)
		merged := *o
		merged.status = status
		f := w.fires(r, &merged, reason, region, eta, attempts)
		repeat := false // onlyNew: the pair fired before
		if f && w.onlyNew {
			_, repeat = w.fired[[2]int{ri, oi}]
		}
		if (f != want || repeat) && try < 200 {
			continue
		}
		// Accepted: no other rule of the subject can fire (reasons are
		// disjoint), and this one fires exactly when want is true.
		o.status = status
		ev := genEvent{subject: subject, body: w.orderBody(o, subject == "orders.created", reason, region, eta, attempts, now), fires: -1}
		if f {
			ev.fires = ri
			k := [2]int{ri, oi}
			if _, seen := w.fired[k]; !seen {
				w.fired[k] = struct{}{}
				ev.notify = true
			}
		}
		return ev
	}
}

func (w *world) customerEvent(i int, now time.Time) genEvent {
	c := &w.customers[i]
	b := w.buf[:0]
	b = append(b, `{"customer_id":"`...)
	b = append(b, c.id...)
	b = append(b, `","email":"`...)
	b = append(b, c.id...)
	b = append(b, `@example.com","locale":"en","timezone":"Europe/Berlin","tier":"`...)
	b = append(b, c.tier...)
	b = append(b, `","channels":["webhook"],"marketing_opt_in":false,"emitted_at":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	w.buf = b
	return genEvent{subject: "customers.updated", body: append([]byte(nil), b...), fires: -1}
}

// orderBody renders a ~300-byte order event. Creation events also carry
// the order's total, currency and promise.
func (w *world) orderBody(o *genOrder, created bool, reason, region string, eta, attempts int, now time.Time) []byte {
	b := w.buf[:0]
	b = append(b, `{"order_id":"`...)
	b = append(b, o.id...)
	b = append(b, `","customer_id":"`...)
	b = append(b, w.customers[o.cust].id...)
	b = append(b, `","status":"`...)
	b = append(b, o.status...)
	b = append(b, `","reason":"`...)
	b = append(b, reason...)
	b = append(b, `","region":"`...)
	b = append(b, region...)
	b = append(b, `","eta":"`...)
	b = base.Add(time.Duration(eta)*time.Hour).AppendFormat(b, time.RFC3339)
	b = append(b, `","attempts":`...)
	b = strconv.AppendInt(b, int64(attempts), 10)
	b = append(b, `,"carrier":"`...)
	b = append(b, carriers[len(o.id)%len(carriers)]...)
	b = append(b, `","tracking":"JJD00`...)
	b = append(b, o.id[2:]...)
	b = append(b, `","warehouse":"wh-berlin-3","sku":"SKU-`...)
	b = strconv.AppendInt(b, int64(o.total%9973), 10)
	if created {
		b = append(b, `","total":`...)
		b = strconv.AppendInt(b, int64(o.total), 10)
		b = append(b, `,"currency":"EUR","promised_at":"`...)
		b = base.Add(time.Duration(o.promised)*time.Hour).AppendFormat(b, time.RFC3339)
		b = append(b, `","sales_channel":"web`...)
	}
	b = append(b, `","emitted_at":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	w.buf = b
	return append([]byte(nil), b...)
}

// expected is the number of distinct notifications generated so far.
func (w *world) expected() int { return len(w.fired) }
