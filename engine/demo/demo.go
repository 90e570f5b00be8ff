// Package demo is `proactived demo`: it shows a newcomer the engine at work
// on a realistic shop (engine/simulate) — customers in several timezones
// and locales, orders, dispatches, carrier ETA changes, cancellations,
// stock-outs and support contacts — in one of two ways:
//
//   - Live publishes the stream to NATS at a steady rate, where a running
//     daemon (or one the demo started in-process) consumes it on the wall
//     clock: notifications appear in its log within seconds.
//   - Compressed plays a whole period (a week, say) of the same shop
//     through the real engine and outbox on a virtual clock, in seconds,
//     into a store: the console and `proactived report` then show a week
//     of decisions and an effectiveness report with a verdict.
//
// Summarize reads what the engine made of it from the store.
package demo

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/simulate"
)

// DelayRule is the starter rule whose notifications tell a customer that
// the parcel is late; the simulated customers count as informed when one
// of its notifications reached them (see InformedBy).
const DelayRule = "delivery-delayed"

// InformedBy lists the rules whose delivered notifications make a
// simulated customer "informed" about a delay: the starter delay rule when
// the rule set has it, else any rule.
func InformedBy(set *rules.Set) []string {
	if set == nil {
		return nil
	}
	for _, r := range set.Rules {
		if r.Name == DelayRule {
			return []string{DelayRule}
		}
	}
	return nil
}

// Shop is the simulated shop both modes use, sized to orders created over
// span from start. Its shares are tuned to the starter rules in rules.d/:
// a few more cancellations than the simulator's default (order-cancelled
// has no hold-down, so its notices show at once), frequent stock-outs over
// a small catalogue (one stock-out reaches many paid orders), and about
// five orders per customer so the frequency cap and dedup have something
// to do. Delays and the contact behaviour keep the simulator's defaults:
// 30% of the customers of a delayed order contact support when nobody told
// them, 10% when told.
func Shop(seed uint64, start time.Time, span time.Duration, orders int) simulate.Config {
	orders = max(orders, 10)
	return simulate.Config{
		Seed:        seed,
		Start:       start,
		Orders:      orders,
		Customers:   max(orders/5, 3),
		Span:        span,
		DelayShare:  0.4,
		CancelShare: 0.05,
		Stockouts:   max(orders/120, 2),
		SKUs:        30,
	}
}

// stream is the simulated shop as the demo publishes it. One thing is
// added to the simulator's events: a dispatch carries the carrier's first
// ETA (the promised date), as real dispatch notices do, so rules that read
// order.eta of a parcel in transit (the starter arriving-today) have one
// before the first ETA update.
type stream struct {
	sim      *simulate.Sim
	promised map[string]any
}

func newStream(cfg simulate.Config) *stream {
	return &stream{sim: simulate.New(cfg), promised: map[string]any{}}
}

func (s *stream) Next(notified simulate.Notified) (simulate.Event, bool, error) {
	ev, ok, err := s.sim.Next(notified)
	if err != nil || !ok {
		return ev, ok, err
	}
	id, _ := ev.Data["order_id"].(string)
	switch ev.Subject {
	case simulate.SubjectCreated:
		s.promised[id] = ev.Data["promised_at"]
	case simulate.SubjectDispatched:
		if p, ok := s.promised[id]; ok && ev.Data["eta"] == nil {
			ev.Data["eta"] = p
		}
	case simulate.SubjectDelivered, simulate.SubjectCancelled:
		delete(s.promised, id)
	}
	return ev, true, nil
}

// RunPrefix is a short tag for the ids of one live run ("k3x9-"): the
// engine remembers producer ids (Nats-Msg-Id) and skips repeats, so a
// second demo against the same daemon needs ids of its own. It is the
// time in seconds, base 36, modulo 36⁴ (a cycle of about 19 days).
func RunPrefix(now time.Time) string {
	n := now.Unix() % int64(math.Pow(36, 4))
	s := strconv.FormatInt(n, 36)
	for len(s) < 4 {
		s = "0" + s
	}
	return s + "-"
}

// Progress is a periodic report of a run.
type Progress struct {
	// Elapsed is wall time since the start (Live) or virtual time played
	// so far (Compressed).
	Elapsed time.Duration
	// At is the simulated time of the last event.
	At time.Time
	// Events counts events published (or handled), by subject in
	// BySubject.
	Events    int
	BySubject map[string]int
	// Rate is events per wall-clock second so far.
	Rate float64
	// Verdicts are the engine's decisions so far (nil when the store
	// cannot be read).
	Verdicts map[string]int64
	// Virtual marks a compressed run: Elapsed is shop time.
	Virtual bool
}

// Subjects returns the subjects of BySubject in a stable order (the
// simulator's, then any other).
func (p Progress) Subjects() []string {
	order := []string{simulate.SubjectCustomer, simulate.SubjectCreated, simulate.SubjectDispatched, simulate.SubjectETA,
		simulate.SubjectDelivered, simulate.SubjectCancelled, simulate.SubjectStockout, simulate.SubjectContact}
	var out []string
	for _, s := range order {
		if p.BySubject[s] > 0 {
			out = append(out, s)
		}
	}
	var rest []string
	for s := range p.BySubject {
		if !slices.Contains(order, s) {
			rest = append(rest, s)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// String is a one-line progress report.
func (p Progress) String() string {
	el := p.Elapsed.Round(time.Second).String()
	if p.Virtual {
		el = "+" + shopSpan(p.Elapsed)
	}
	s := fmt.Sprintf("%6s  %6d events (%.0f/s)", el, p.Events, p.Rate)
	if !p.At.IsZero() {
		s += "  shop time " + p.At.UTC().Format("Mon 02 Jan 15:04")
	}
	if len(p.Verdicts) > 0 {
		s += "  |"
		for _, v := range VerdictOrder() {
			if n := p.Verdicts[v]; n > 0 {
				s += fmt.Sprintf(" %s %d", v, n)
			}
		}
	}
	return s
}

// shopSpan prints shop time in days and hours ("2d", "1d12h", "5h").
func shopSpan(d time.Duration) string {
	days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	switch {
	case days == 0:
		return fmt.Sprintf("%dh", hours)
	case hours == 0:
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, hours)
}
