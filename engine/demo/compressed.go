package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/replay"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/simulate"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

// CompressedOptions configure a compressed run.
type CompressedOptions struct {
	// Store is where the run writes: a fresh store, which the daemon,
	// the console and `proactived report` can open afterwards.
	Store  *store.Store
	Config *config.Config
	Rules  *rules.Set
	// Channels receive the notifications (every configured channel name
	// must be present); nil = a counter that accepts everything. They are
	// called on the virtual clock, thousands of times in seconds: never
	// real senders.
	Channels map[string]notifiers.Notifier
	// Shop is the simulated shop; its Start is where the virtual clock
	// begins.
	Shop simulate.Config
	// End is where the run stops: events after it are not played (the
	// shop's later life has not happened yet), and everything due by it
	// has run. Zero = when the stream ends.
	End time.Time
	// Progress, when set, is called every ProgressEvery of virtual time.
	Progress      func(Progress)
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

// Result is what a compressed run did.
type Result struct {
	Events    int
	BySubject map[string]int
	// Truth is what the simulated customers did; Sent counts the
	// notifications the channels accepted.
	Truth simulate.Truth
	Sent  int
	// Shop is the simulated shop with every default filled in (its
	// planted contact probabilities, for one).
	Shop simulate.Config
	// Start and End bound the virtual time played; Took is the wall time.
	Start, End time.Time
	Took       time.Duration
}

// errPastEnd stops the simulation at CompressedOptions.End.
var errPastEnd = errors.New("demo: past the end of the run")

// Compressed plays the shop through the real engine and outbox dispatcher
// (engine/replay) on a virtual clock into o.Store. Events get no stream
// sequence (their producer ids still make a repeat a no-op), so the store's
// consumer position stays untouched and a daemon started on the store
// afterwards consumes its own stream from the beginning.
func Compressed(ctx context.Context, o CompressedOptions) (*Result, error) {
	if o.Store == nil || o.Config == nil || o.Rules == nil {
		return nil, errors.New("demo: store, config and rules are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 24 * time.Hour
	}
	sim := newStream(o.Shop)
	start := sim.sim.Config().Start
	rec := &recorder{informedBy: InformedBy(o.Rules), told: map[string]time.Time{}}
	chans := map[string]notifiers.Notifier{}
	for _, name := range o.Config.ChannelNames() {
		var next notifiers.Notifier
		if o.Channels != nil {
			if next = o.Channels[name]; next == nil {
				return nil, fmt.Errorf("demo: no notifier for channel %q", name)
			}
		}
		chans[name] = &recordingChannel{rec: rec, next: next}
	}
	drv, err := replay.New(ctx, replay.Options{
		Store: o.Store, Config: o.Config, Rules: o.Rules, Channels: chans, Start: start, Logger: o.Logger,
		// Lazy settling: the engine ticks when something is due, plus an
		// hourly sweep for TTL expiry — a week of events stays seconds.
		Sweep: time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	rec.clock = drv.Clock
	tgt := &virtualTarget{drv: drv, maxBytes: o.Config.Intake.MaxEventBytes, rec: rec}
	res := &Result{BySubject: map[string]int{}, Start: start}
	began := time.Now()
	nextProgress := start.Add(o.ProgressEvery)
	report := func(at time.Time) {
		if o.Progress == nil {
			return
		}
		p := Progress{Elapsed: at.Sub(start), At: at, Events: res.Events, BySubject: res.BySubject, Virtual: true}
		if s := time.Since(began).Seconds(); s > 0 {
			p.Rate = float64(res.Events) / s
		}
		// Progress is best effort: a failed count only leaves it out.
		if v, err := Verdicts(ctx, o.Store.R, time.Time{}); err == nil {
			p.Verdicts = v
		}
		o.Progress(p)
	}
	ask := func(order string, at time.Time) (bool, error) {
		if !o.End.IsZero() && at.After(o.End) {
			return false, errPastEnd
		}
		if err := tgt.Advance(ctx, at); err != nil {
			return false, err
		}
		return tgt.Notified(ctx, order, at)
	}
	last := start
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev, ok, err := sim.Next(ask)
		if errors.Is(err, errPastEnd) {
			break
		}
		if err != nil {
			return nil, err
		}
		if !ok || (!o.End.IsZero() && ev.At.After(o.End)) {
			break
		}
		if err := tgt.Advance(ctx, ev.At); err != nil {
			return nil, err
		}
		if err := tgt.Publish(ctx, ev); err != nil {
			return nil, err
		}
		res.Events++
		res.BySubject[ev.Subject]++
		last = ev.At
		for !ev.At.Before(nextProgress) {
			report(nextProgress)
			nextProgress = nextProgress.Add(o.ProgressEvery)
		}
	}
	end := o.End
	if end.IsZero() {
		end = last
	}
	if err := tgt.Advance(ctx, end); err != nil {
		return nil, err
	}
	report(end)
	res.Truth, res.Shop = sim.sim.Truth(), sim.sim.Config()
	res.Sent = rec.sentCount()
	res.End = drv.Clock.Now()
	res.Took = time.Since(began)
	return res, nil
}

// virtualTarget is a simulate.Target over a replay.Driver. It differs
// from simulate.EngineTarget in leaving the stream position alone (see
// Compressed) and in settling lazily through the driver.
type virtualTarget struct {
	drv      *replay.Driver
	maxBytes int
	rec      *recorder
}

var _ simulate.Target = (*virtualTarget)(nil)

// Advance moves the clock to at, stopping at every due moment on the way
// so timers and deferred notifications run at their own time.
func (t *virtualTarget) Advance(ctx context.Context, at time.Time) error {
	for range 1_000_000 {
		wake, err := t.drv.Engine.NextWake(ctx)
		if err != nil {
			return fmt.Errorf("demo: next wake: %w", err)
		}
		now := t.drv.Clock.Now()
		if wake.IsZero() || wake.After(at) {
			t.drv.Clock.Set(at)
			return t.drv.Settle(ctx)
		}
		if !wake.After(now) {
			// Due now and still reported after settling (a retry due this
			// very moment): step a second so the loop cannot spin.
			wake = now.Add(time.Second)
			if wake.After(at) {
				t.drv.Clock.Set(at)
				return t.drv.Settle(ctx)
			}
		}
		t.drv.Clock.Set(wake)
		if err := t.drv.Settle(ctx); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return errors.New("demo: too many steps advancing the clock; is a schedule firing every second?")
}

// Publish decodes the event as the intake would (no stream sequence; the
// simulator's id as Nats-Msg-Id) and commits it at its time.
func (t *virtualTarget) Publish(ctx context.Context, ev simulate.Event) error {
	body, err := ev.JSON()
	if err != nil {
		return err
	}
	t.drv.Clock.Set(ev.At)
	dec, rej := event.Decode(event.Raw{Subject: ev.Subject, Body: body, MsgID: ev.ID, Time: ev.At}, t.maxBytes)
	if rej != nil {
		return fmt.Errorf("demo: %s %s rejected: %w", ev.Subject, ev.ID, rej)
	}
	p, rej := t.drv.Engine.Prepare(dec)
	if rej != nil {
		return fmt.Errorf("demo: %s %s rejected: %w", ev.Subject, ev.ID, rej)
	}
	if err := t.drv.Engine.HandleBatch(ctx, []*engine.Prepared{p}); err != nil {
		return fmt.Errorf("demo: %s %s: %w", ev.Subject, ev.ID, err)
	}
	if err := t.drv.Settle(ctx); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// Notified: a notification of the informing rules about the order was
// delivered by at. The channels saw every delivery, so this is a map
// look-up (simulate.DeliveredBefore asks the store the same question, at
// a cost that would dominate a week-long run).
func (t *virtualTarget) Notified(_ context.Context, orderID string, at time.Time) (bool, error) {
	return t.rec.toldBy(orderID, at), nil
}
