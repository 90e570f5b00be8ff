package demo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/simulate"
)

// LiveOptions configure a live run.
type LiveOptions struct {
	// JS publishes to the stream the daemon consumes.
	JS jetstream.JetStream
	// DB, when set, reads the daemon's store (its read-only pool, or the
	// file opened read-only): progress then shows the engine's verdicts,
	// simulated customers know whether they were told, and Live waits at
	// the end until the daemon has processed everything.
	DB *sql.DB
	// Shop is the simulated shop; its Start should be now, so the dates
	// in the events (promised, ETA) are current.
	Shop simulate.Config
	// InformedBy: see InformedBy (nil = any rule).
	InformedBy []string
	// Rate is events per second (default 100); Duration how long to
	// publish (default 1m). The stream is cut there: orders in flight stay
	// in flight, as in a real shop.
	Rate     float64
	Duration time.Duration
	// CatchUp bounds the wait for the daemon at the end (default 15s).
	CatchUp time.Duration
	// Progress, when set, is called every ProgressEvery (default 5s).
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// LiveResult is what a live run published.
type LiveResult struct {
	Events    int
	BySubject map[string]int
	// Uncaptured counts events no stream took: no rule or entity of the
	// daemon uses their subject.
	Uncaptured int
	// LastSeq is the stream sequence of the last event published.
	LastSeq uint64
	// CaughtUp says the daemon had processed every event by the end
	// (false without DB, or when it did not within CatchUp).
	CaughtUp bool
	Took     time.Duration
}

// Live publishes the shop to JetStream at a steady rate for a while, on
// the wall clock: the daemon consuming it decides in real time. It stops
// early, without error, when ctx is cancelled (Ctrl-C), and returns what
// it published.
func Live(ctx context.Context, o LiveOptions) (*LiveResult, error) {
	if o.JS == nil {
		return nil, errors.New("demo: no JetStream connection")
	}
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Duration <= 0 {
		o.Duration = time.Minute
	}
	if o.CatchUp <= 0 {
		o.CatchUp = 15 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 5 * time.Second
	}
	s := newStream(o.Shop)
	res := &LiveResult{BySubject: map[string]int{}}
	began := time.Now()
	deadline := began.Add(o.Duration)
	nextProgress := began.Add(o.ProgressEvery)
	var lastAt time.Time
	report := func() {
		if o.Progress == nil {
			return
		}
		el := time.Since(began)
		p := Progress{Elapsed: el, At: lastAt, Events: res.Events, BySubject: res.BySubject}
		if el > 0 {
			p.Rate = float64(res.Events) / el.Seconds()
		}
		if o.DB != nil {
			// Progress is best effort: a busy store only skips a count.
			if v, err := Verdicts(ctx, o.DB, began.Add(-time.Second)); err == nil {
				p.Verdicts = v
			}
		}
		o.Progress(p)
	}
	notified := func(order string, _ time.Time) (bool, error) {
		if o.DB == nil {
			return false, nil
		}
		// On the wall clock: told by now (a look at the store, no wait).
		return simulate.DeliveredBefore(ctx, o.DB, "order", order, time.Now(), o.InformedBy)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		if !now.Before(nextProgress) {
			report()
			nextProgress = nextProgress.Add(o.ProgressEvery)
		}
		// Pace: event i goes out at began + i/rate.
		due := began.Add(time.Duration(float64(res.Events) / o.Rate * float64(time.Second)))
		if wait := due.Sub(now); wait > 0 {
			timer.Reset(min(wait, time.Until(nextProgress), time.Until(deadline)))
			select {
			case <-ctx.Done():
				return finish(ctx, o, res, began)
			case <-timer.C:
			}
			continue
		}
		ev, ok, err := s.Next(notified)
		if err != nil {
			if ctx.Err() != nil {
				return finish(ctx, o, res, began)
			}
			return nil, err
		}
		if !ok {
			break
		}
		if err := publish(ctx, o.JS, ev, res); err != nil {
			if ctx.Err() != nil {
				return finish(ctx, o, res, began)
			}
			return nil, err
		}
		lastAt = ev.At
	}
	report()
	return finish(ctx, o, res, began)
}

// publish sends one event with its id as Nats-Msg-Id.
func publish(ctx context.Context, js jetstream.JetStream, ev simulate.Event, res *LiveResult) error {
	body, err := ev.JSON()
	if err != nil {
		return err
	}
	m := nats.NewMsg(ev.Subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m)
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		// No stream captures the subject: the daemon's rules do not use
		// it. Nothing would read it; the rest of the shop goes on.
		res.Uncaptured++
	case err != nil:
		return fmt.Errorf("demo: publish %s %s: %w", ev.Subject, ev.ID, err)
	default:
		res.LastSeq = max(res.LastSeq, ack.Sequence)
	}
	res.Events++
	res.BySubject[ev.Subject]++
	return nil
}

// finish waits (bounded) until the daemon has committed the last event.
func finish(ctx context.Context, o LiveOptions, res *LiveResult, began time.Time) (*LiveResult, error) {
	res.Took = time.Since(began)
	if o.DB == nil || res.LastSeq == 0 {
		return res, nil
	}
	// The wait outlives a cancelled ctx: after Ctrl-C the summary is still
	// worth its few seconds.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.CatchUp)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var v string
		err := o.DB.QueryRowContext(wctx, `SELECT v FROM meta WHERE k = 'last_seq'`).Scan(&v)
		if err == nil {
			if seq, _ := strconv.ParseUint(v, 10, 64); seq >= res.LastSeq {
				res.CaughtUp = true
				return res, nil
			}
		} else if !errors.Is(err, sql.ErrNoRows) && wctx.Err() == nil {
			return res, fmt.Errorf("demo: read the daemon's position: %w", err)
		}
		select {
		case <-wctx.Done():
			return res, nil
		case <-tick.C:
		}
	}
}

// LiveShop sizes the shop for a live run of rate events a second for d,
// starting now: orders created over a day of shop time, about one for
// every 1.8 events published, so the run ends as the day of orders does
// and every part of it has orders being placed, dispatched, delayed,
// cancelled, hit by stock-outs and asked about. Delayed parcels are still
// on their way when it ends (their delivery-delayed notices come after
// the rule's 15-minute hold-down). Six orders per customer in the day
// give the frequency cap something to do.
func LiveShop(seed uint64, now time.Time, rate float64, d time.Duration, prefix string) simulate.Config {
	orders := max(int(rate*d.Seconds()/1.8), 10)
	cfg := Shop(seed, now, 24*time.Hour, orders)
	cfg.Customers = max(orders/6, 3)
	cfg.Prefix = prefix
	return cfg
}
