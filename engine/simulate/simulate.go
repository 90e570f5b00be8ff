// Package simulate generates a seeded, realistic stream of shop events —
// customers in several timezones and locales with channel preferences,
// orders, dispatches, carrier ETA updates of which a share are delays,
// stock-outs, cancellations, deliveries and support contacts — in which
// customers behave with planted, known probabilities: a customer whose
// order is delayed contacts support with probability PUninformed if
// nobody told them, PInformed if they were told.
//
// Whether a customer was told is not something the simulator can know on
// its own: it depends on the rules, holdouts and delivery policy of the
// engine under test. So the stream is interactive: just before deciding a
// delayed customer's contact, the simulator asks a Notified callback
// (backed by the engine's decisions). The effect the engine's report
// should find is then exactly PUninformed − PInformed, and Truth says what
// actually happened.
//
// Feed it through Run into a Target — EngineTarget runs the real engine
// on a virtual clock (tests: days in seconds), NATSTarget publishes to a
// running daemon's JetStream (the demo) — or call Next yourself.
//
//	sim := simulate.New(simulate.Config{Seed: 1, Orders: 500})
//	err := sim.Run(ctx, &simulate.NATSTarget{JS: js, DB: db})
package simulate

import (
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Config describes the simulated shop. Zero fields take the defaults
// noted; probabilities are in [0, 1].
type Config struct {
	Seed  uint64
	Start time.Time // default 2026-11-02T08:00:00Z
	// Prefix is put before every id (orders o-N, customers c-N, event
	// ids), so several runs can share one store and stream (default "").
	Prefix string

	Orders    int           // orders to create (default 1000)
	Customers int           // default Orders/3, at least 1
	Span      time.Duration // orders are created evenly over this long (default 24h)

	DelayShare        float64 // shipped orders whose ETA slips past the promise (default 0.3)
	LateDispatchShare float64 // orders not dispatched within 48h (default 0.05)
	CancelShare       float64 // orders cancelled before dispatch (default 0.02)
	Stockouts         int     // inventory.stockout events over the span (default Orders/500, at least 1)
	SKUs              int     // catalogue size (default 40)

	// PUninformed and PInformed are the probabilities that the customer of
	// a delayed order contacts support about it (topic order_status),
	// untold and told (defaults 0.30 and 0.10).
	PUninformed, PInformed float64
	// PBase: a status contact about an order that is on time — customers
	// who ask anyway (default 0.03).
	PBase float64
	// POther: a contact about the order on another topic (returns,
	// payment, address), whatever happened to it (default 0.02).
	POther float64
	// ContactAfterMin and ContactAfterMax bound when, after the delayed
	// ETA became known, the customer decides whether to contact support
	// (uniform; defaults 1h and 36h).
	ContactAfterMin, ContactAfterMax time.Duration
	// ContactTime adds the contact's time (RFC 3339) to contact events as
	// `time`. Leave it off when events are published in compressed time
	// (the event's own time is then the contact time).
	ContactTime bool
}

// Subjects the stream uses (the starter rules' entities read them).
const (
	SubjectCustomer   = "customers.updated"
	SubjectCreated    = "orders.created"
	SubjectCancelled  = "orders.cancelled"
	SubjectDispatched = "shipments.dispatched"
	SubjectETA        = "shipments.eta_updated"
	SubjectDelivered  = "shipments.delivered"
	SubjectStockout   = "inventory.stockout"
	SubjectContact    = "support.contacts"
)

// Event is one message: publish Data as JSON to Subject (ID as the
// Nats-Msg-Id), or hand it to the engine with time At.
type Event struct {
	At      time.Time
	Subject string
	ID      string
	Data    map[string]any
}

// JSON is the event's body.
func (e Event) JSON() ([]byte, error) {
	b, err := json.Marshal(e.Data)
	if err != nil {
		return nil, fmt.Errorf("simulate: event %s: %w", e.ID, err)
	}
	return b, nil
}

// Notified says whether the customer of order orderID had been told about
// its delay by time at. It is called with non-decreasing times, each no
// earlier than every event Next returned before it, so a driver can first
// let its engine catch up to at.
type Notified func(orderID string, at time.Time) (bool, error)

// Truth is what the simulated customers actually did.
type Truth struct {
	Orders, Customers, Cancelled int
	// Delayed orders are late (a slipped ETA or a late dispatch); their
	// customers decide whether to contact support.
	Delayed int
	// Delayed orders whose customer was told by the time they decided,
	// and how many of each group contacted support about it.
	Informed, ContactedInformed     int
	Uninformed, ContactedUninformed int
	// Contacts of every kind published so far.
	Contacts int
}

// Effect is the planted reduction of the contact rate, PUninformed −
// PInformed: what a report comparing notified with held-out delayed
// orders should recover.
func (c Config) Effect() float64 {
	c = c.withDefaults()
	return c.PUninformed - c.PInformed
}

// Sim is a running simulation. It is not safe for concurrent use.
type Sim struct {
	cfg   Config
	rng   *rand.Rand
	q     queue
	seq   int
	truth Truth
	custs []customer
	// lastAsk guards the Notified contract.
	lastAsk time.Time
}

type customer struct {
	id, tz, locale string
}

// step kinds
const (
	kEvent  = iota // publish ev as is
	kOrder         // create order n and schedule its life
	kDecide        // a delayed customer decides whether to contact support
)

type item struct {
	at    time.Time
	seq   int
	kind  int
	ev    Event
	order string
	cust  string
	n     int
	// A decision's dice, drawn when the order was created so that the
	// random stream never depends on the engine's answers.
	draw    float64
	channel string
	closeIn time.Duration
	// ids are the sequence numbers reserved for the contact's opening and
	// closing, so later ids do not depend on whether it happens.
	ids [2]int
}

// New prepares a simulation; nothing is generated until Next.
func New(cfg Config) *Sim {
	cfg = cfg.withDefaults()
	s := &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	s.truth.Orders = cfg.Orders
	s.truth.Customers = cfg.Customers
	tzs := []struct{ tz, locale string }{
		{"Europe/Moscow", "ru"}, {"Asia/Yekaterinburg", "ru"}, {"Europe/Berlin", "de"}, {"Europe/London", "en"},
		{"America/New_York", "en"}, {"America/Los_Angeles", "en"}, {"Europe/Paris", "fr"}, {"America/Sao_Paulo", "pt"},
		{"Asia/Tokyo", "ja"}, {"UTC", "en"},
	}
	chanPrefs := [][]string{{"email"}, {"push", "email"}, {"sms", "email"}, {"push", "sms", "email"}, {"email", "sms"}}
	for i := range cfg.Customers {
		z := tzs[s.rng.IntN(len(tzs))]
		id := fmt.Sprintf("%sc-%d", cfg.Prefix, i+1)
		c := customer{id: id, tz: z.tz, locale: z.locale}
		s.custs = append(s.custs, c)
		data := map[string]any{
			"customer_id": id, "name": fmt.Sprintf("Customer %d", i+1), "email": fmt.Sprintf("%s@example.com", id),
			"locale": c.locale, "timezone": c.tz, "channels": anyList(chanPrefs[s.rng.IntN(len(chanPrefs))]),
			"tier": []string{"standard", "standard", "standard", "gold"}[s.rng.IntN(4)],
		}
		if s.rng.Float64() < 0.8 {
			data["phone"] = fmt.Sprintf("+1555%07d", i+1)
		}
		if s.rng.Float64() < 0.6 {
			data["push_token"] = fmt.Sprintf("pt-%s", id)
		}
		if s.rng.Float64() < 0.02 {
			data["opt_out"] = "all"
		}
		// Every customer is known before the first order (a minute in).
		at := cfg.Start.Add(time.Duration(i) * time.Minute / time.Duration(cfg.Customers))
		s.push(item{at: at, kind: kEvent, ev: Event{Subject: SubjectCustomer, Data: data}})
	}
	step := cfg.Span / time.Duration(max(cfg.Orders, 1))
	for i := range cfg.Orders {
		at := cfg.Start.Add(time.Minute + time.Duration(i)*step + time.Duration(s.rng.Int64N(int64(step)+1)))
		s.push(item{at: at, kind: kOrder, n: i + 1})
	}
	for range cfg.Stockouts {
		at := cfg.Start.Add(time.Minute + time.Duration(s.rng.Int64N(int64(cfg.Span)+1)))
		s.push(item{at: at, kind: kEvent, ev: Event{Subject: SubjectStockout, Data: map[string]any{
			"sku": s.sku(), "warehouse": []string{"msk-1", "ber-2", "nyc-1"}[s.rng.IntN(3)]}}})
	}
	return s
}

func (c Config) withDefaults() Config {
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	}
	c.Start = c.Start.UTC()
	if c.Orders <= 0 {
		c.Orders = 1000
	}
	if c.Customers <= 0 {
		c.Customers = max(c.Orders/3, 1)
	}
	if c.Span <= 0 {
		c.Span = 24 * time.Hour
	}
	def := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
		*p = math.Min(math.Max(*p, 0), 1)
	}
	def(&c.DelayShare, 0.3)
	def(&c.LateDispatchShare, 0.05)
	def(&c.CancelShare, 0.02)
	def(&c.PUninformed, 0.30)
	def(&c.PInformed, 0.10)
	def(&c.PBase, 0.03)
	def(&c.POther, 0.02)
	if c.Stockouts <= 0 {
		c.Stockouts = max(c.Orders/500, 1)
	}
	if c.SKUs <= 0 {
		c.SKUs = 40
	}
	if c.ContactAfterMin <= 0 {
		c.ContactAfterMin = time.Hour
	}
	if c.ContactAfterMax < c.ContactAfterMin {
		c.ContactAfterMax = max(36*time.Hour, c.ContactAfterMin)
	}
	return c
}

// Config is the configuration in effect, defaults filled in.
func (s *Sim) Config() Config { return s.cfg }

// Truth is what happened so far.
func (s *Sim) Truth() Truth { return s.truth }

// errNotifiedBackwards means Next would ask about a time earlier than it
// already asked about: a bug in the simulator, never silently ignored.
var errNotifiedBackwards = errors.New("simulate: notified asked out of order")

// Next returns the next event in time order, false at the end of the
// stream. Before deciding a delayed customer's contact it asks notified
// (see Notified); an error from it stops the simulation and is returned.
func (s *Sim) Next(notified Notified) (Event, bool, error) {
	for s.q.Len() > 0 {
		it := heap.Pop(&s.q).(item)
		switch it.kind {
		case kEvent:
			return s.emit(it), true, nil
		case kOrder:
			return s.createOrder(it), true, nil
		case kDecide:
			if it.at.Before(s.lastAsk) {
				return Event{}, false, errNotifiedBackwards
			}
			s.lastAsk = it.at
			told, err := notified(it.order, it.at)
			if err != nil {
				return Event{}, false, fmt.Errorf("simulate: notified(%s): %w", it.order, err)
			}
			p := s.cfg.PUninformed
			if told {
				p = s.cfg.PInformed
				s.truth.Informed++
			} else {
				s.truth.Uninformed++
			}
			if it.draw >= p {
				continue
			}
			if told {
				s.truth.ContactedInformed++
			} else {
				s.truth.ContactedUninformed++
			}
			open, closed := s.contactEvents(it.cust, it.order, "order_status", it.channel)
			heap.Push(&s.q, item{at: it.at.Add(it.closeIn), seq: it.ids[1], kind: kEvent, ev: closed})
			return s.emit(item{at: it.at, seq: it.ids[0], ev: open}), true, nil
		}
	}
	return Event{}, false, nil
}

func (s *Sim) emit(it item) Event {
	ev := it.ev
	ev.At = it.at
	if ev.ID == "" {
		ev.ID = fmt.Sprintf("%ssim-%d-%d", s.cfg.Prefix, s.cfg.Seed, it.seq)
	}
	if ev.Subject == SubjectContact && ev.Data["status"] == "opened" {
		s.truth.Contacts++
		if s.cfg.ContactTime {
			ev.Data["time"] = it.at.Format(time.RFC3339Nano)
		}
	}
	return ev
}

// createOrder publishes orders.created and schedules the order's life.
func (s *Sim) createOrder(it item) Event {
	c := s.custs[s.rng.IntN(len(s.custs))]
	id := fmt.Sprintf("%so-%d", s.cfg.Prefix, it.n)
	t := it.at
	promised := t.Add(72 * time.Hour).Truncate(time.Hour)
	skus := make([]any, 1+s.rng.IntN(3))
	for i := range skus {
		skus[i] = s.sku()
	}
	data := map[string]any{
		"order_id": id, "customer_id": c.id, "status": "paid", "promised_at": promised.Format(time.RFC3339),
		"total": float64(500 + s.rng.IntN(60000)), "currency": "EUR", "skus": skus,
	}
	ev := s.emit(item{at: t, seq: it.seq, ev: Event{Subject: SubjectCreated, Data: data}})

	// Draw every random choice of the order now, in a fixed order, so the
	// stream does not depend on what the engine answers later.
	u := func() float64 { return s.rng.Float64() }
	cancel, lateDispatch, delayed, base, other, decide := u(), u(), u(), u(), u(), u()
	dispatchAfter := time.Duration(2+s.rng.IntN(28)) * time.Hour
	if lateDispatch < s.cfg.LateDispatchShare {
		dispatchAfter = time.Duration(50+s.rng.IntN(22)) * time.Hour
	}
	etaAfter := time.Duration(1+s.rng.IntN(12)) * time.Hour
	slip := time.Duration(24+s.rng.IntN(48)) * time.Hour
	early := time.Duration(s.rng.IntN(6)) * time.Hour
	decideAfter := s.cfg.ContactAfterMin + time.Duration(s.rng.Int64N(int64(s.cfg.ContactAfterMax-s.cfg.ContactAfterMin)+1))
	baseAt, otherAt, closeAfter := u(), u(), time.Duration(1+s.rng.IntN(8))*time.Hour
	otherTopic := []string{"returns", "payment", "address_change"}[s.rng.IntN(3)]
	channel := []string{"phone", "chat", "email"}[s.rng.IntN(3)]
	carrier := []string{"dhl", "ups", "cdek"}[s.rng.IntN(3)]
	tracking := fmt.Sprintf("TRK%09d", s.rng.IntN(1e9))
	cancelAfter := time.Duration(1+s.rng.IntN(10)) * time.Hour
	deliverEarly := time.Duration(s.rng.IntN(120)) * time.Minute

	if cancel < s.cfg.CancelShare {
		s.truth.Cancelled++
		s.push(item{at: t.Add(cancelAfter), kind: kEvent,
			ev: Event{Subject: SubjectCancelled, Data: map[string]any{"order_id": id, "status": "cancelled"}}})
		return ev
	}
	dispatched := t.Add(dispatchAfter)
	s.push(item{at: dispatched, kind: kEvent, ev: Event{Subject: SubjectDispatched, Data: map[string]any{
		"order_id": id, "status": "in_transit", "carrier": carrier, "tracking": tracking}}})
	etaAt := dispatched.Add(etaAfter)
	eta := promised.Add(-early)
	// A late dispatch makes the parcel late too.
	if delayed < s.cfg.DelayShare || lateDispatch < s.cfg.LateDispatchShare {
		s.truth.Delayed++
		eta = promised.Add(slip)
		s.seq += 2
		s.push(item{at: etaAt.Add(decideAfter), kind: kDecide, order: id, cust: c.id, draw: decide, channel: channel, closeIn: closeAfter,
			ids: [2]int{s.seq - 1, s.seq}})
	} else if base < s.cfg.PBase {
		at := dispatched.Add(time.Duration(baseAt * float64(eta.Sub(dispatched))))
		open, closed := s.contactEvents(c.id, id, "order_status", channel)
		s.push(item{at: at, kind: kEvent, ev: open})
		s.push(item{at: at.Add(closeAfter), kind: kEvent, ev: closed})
	}
	s.push(item{at: etaAt, kind: kEvent, ev: Event{Subject: SubjectETA, Data: map[string]any{"order_id": id, "eta": eta.Format(time.RFC3339)}}})
	s.push(item{at: eta.Add(-deliverEarly), kind: kEvent, ev: Event{Subject: SubjectDelivered,
		Data: map[string]any{"order_id": id, "status": "delivered", "delivered_at": eta.Add(-deliverEarly).Format(time.RFC3339)}}})
	if other < s.cfg.POther {
		at := t.Add(time.Duration(otherAt * float64(eta.Sub(t)+48*time.Hour)))
		open, closed := s.contactEvents(c.id, id, otherTopic, channel)
		s.push(item{at: at, kind: kEvent, ev: open})
		s.push(item{at: at.Add(closeAfter), kind: kEvent, ev: closed})
	}
	return ev
}

// contactEvents are the opening and closing of one support contact about
// an order (same contact id; an order has at most one per topic).
func (s *Sim) contactEvents(cust, order, topic, channel string) (open, closed Event) {
	id := "k-" + order + "-" + topic
	open = Event{Subject: SubjectContact, Data: map[string]any{
		"id": id, "customer": cust, "order_id": order, "topic": topic, "status": "opened", "channel": channel,
	}}
	closed = Event{Subject: SubjectContact, Data: map[string]any{
		"id": id, "customer": cust, "order_id": order, "topic": topic, "status": "closed", "channel": channel,
	}}
	return open, closed
}

func (s *Sim) sku() string { return fmt.Sprintf("SKU-%03d", 1+s.rng.IntN(s.cfg.SKUs)) }

func (s *Sim) push(it item) {
	s.seq++
	it.seq = s.seq
	heap.Push(&s.q, it)
}

func anyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// queue orders items by time, then by insertion.
type queue []item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}
