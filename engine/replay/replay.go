// Package replay drives the real engine and outbox dispatcher on a virtual
// clock: events are handed to the engine at their own times, and between
// them the clock jumps straight to the next due moment (timer, `for:`
// hold-down, deferred notification, schedule), so days of rule behaviour
// take milliseconds. `proactived test` (engine/ruletest) and `proactived
// backtest` (engine/backtest) share it, so both exercise exactly the code
// the daemon runs.
package replay

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/outbox"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

// Options configure a Driver.
type Options struct {
	Store  *store.Store
	Config *config.Config
	Rules  *rules.Set
	// Channels replace every channel: recorders, never real senders.
	Channels map[string]notifiers.Notifier
	// Clock is the virtual clock to drive; nil = a new one at Start.
	Clock *clock.Virtual
	// Start is where a new virtual clock begins.
	Start  time.Time
	Logger *slog.Logger
	// Sweep, when positive, makes settling lazy: the engine's Tick runs only
	// when something is due (NextWake), the dispatcher only when the engine
	// queued a notification, and otherwise once per Sweep of virtual time
	// for the work that has no wake time (entity TTL expiry). Zero ticks
	// after every step — exact, and cheap for the handful of events of a
	// rule test, but a per-event cost a long backtest cannot afford.
	Sweep time.Duration
	// MaxIdleSteps bounds the steps that consume no event (default
	// 1,000,000), so a schedule firing every second cannot run forever.
	MaxIdleSteps int
}

// Driver owns the virtual clock, the engine and the dispatcher of one run.
type Driver struct {
	Clock      *clock.Virtual
	Engine     *engine.Engine
	Dispatcher *outbox.Dispatcher

	o         Options
	woken     bool      // the engine queued a notification since the last dispatch
	lastSweep time.Time // virtual time of the last Tick (lazy mode)
}

// New builds the engine and the dispatcher on a virtual clock at o.Start.
func New(ctx context.Context, o Options) (*Driver, error) {
	if o.Store == nil || o.Config == nil || o.Rules == nil {
		return nil, errors.New("replay: store, config and rules are required")
	}
	if o.MaxIdleSteps <= 0 {
		o.MaxIdleSteps = 1_000_000
	}
	if o.Clock == nil {
		o.Clock = clock.NewVirtual(o.Start)
	}
	d := &Driver{Clock: o.Clock, o: o}
	eng, err := engine.New(ctx, engine.Options{Store: o.Store, Clock: d.Clock, Config: o.Config, Rules: o.Rules,
		Logger: o.Logger, Wake: func() { d.woken = true }, ExpireEvery: o.Sweep})
	if err != nil {
		return nil, err
	}
	rc := o.Config.Policy.Retry
	d.Engine = eng
	d.Dispatcher = outbox.New(outbox.Options{Store: o.Store, Clock: d.Clock, Channels: o.Channels, Logger: o.Logger,
		Retry: outbox.Retry{Attempts: rc.Attempts, Backoff: rc.Backoff.D(), MaxBackoff: rc.MaxBackoff.D(), Timeout: rc.Timeout.D()}})
	return d, nil
}

// Settle does all the work due at the current virtual time: timers,
// schedules, deferred releases, fan-out pages and deliveries, until none
// is left.
func (d *Driver) Settle(ctx context.Context) error {
	now := d.Clock.Now()
	if d.o.Sweep > 0 && !d.woken && now.Sub(d.lastSweep) < d.o.Sweep {
		wake, err := d.Engine.NextWake(ctx)
		if err != nil {
			return err
		}
		if wake.IsZero() || wake.After(now) {
			return nil
		}
	}
	d.lastSweep = now
	for i := 0; i < 10_000; i++ {
		more, err := d.Engine.Tick(ctx)
		if err != nil {
			return err
		}
		d.woken = false
		n, err := d.Dispatcher.RunOnce(ctx)
		if err != nil {
			return err
		}
		if !more && n == 0 {
			return nil
		}
	}
	return errors.New("engine did not settle after 10000 steps")
}

// Event is one event and the virtual time at which it is handled.
type Event struct {
	At time.Time
	P  *engine.Prepared
}

// Source yields events in time order; ok is false when there are no more.
// Events must not go back in time (callers clamp out-of-order times).
type Source func(ctx context.Context) (ev Event, ok bool, err error)

// Run settles, then replays src: the clock jumps to whichever comes first,
// the next event or the engine's next wake; events due at the same moment
// are handled as one batch, and due work is settled after every step. It
// stops at end, or at the last event if that is later, once everything due
// by then has run.
func (d *Driver) Run(ctx context.Context, src Source, end time.Time) error {
	if err := d.Settle(ctx); err != nil {
		return err
	}
	var (
		next    *Event // one event of lookahead
		srcDone bool
	)
	fetch := func() error {
		if next != nil || srcDone {
			return nil
		}
		ev, ok, err := src(ctx)
		if err != nil {
			return err
		}
		if !ok {
			srcDone = true
			return nil
		}
		next = &ev
		if ev.At.After(end) {
			end = ev.At
		}
		return nil
	}
	prev := d.Clock.Now()
	idle := 0
	for steps := 0; ; steps++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if idle > d.o.MaxIdleSteps {
			return errors.New("too many steps; is a schedule firing every second?")
		}
		if err := fetch(); err != nil {
			return err
		}
		wake, err := d.Engine.NextWake(ctx)
		if err != nil {
			return err
		}
		at := end
		if next != nil && !next.At.After(at) {
			at = next.At
		}
		if !wake.IsZero() && wake.Before(at) {
			at = wake
		}
		if at.After(end) {
			break
		}
		if steps > 0 && !at.After(prev) && (next == nil || next.At.After(prev)) {
			// Something reports work due now that produced nothing; step on.
			at = prev.Add(time.Second)
		}
		prev = at
		d.Clock.Set(at)
		var batch []*engine.Prepared
		for next != nil && !next.At.After(at) {
			batch = append(batch, next.P)
			next = nil
			if err := fetch(); err != nil {
				return err
			}
		}
		if len(batch) > 0 {
			if err := d.Engine.HandleBatch(ctx, batch); err != nil {
				return err
			}
		} else {
			idle++
		}
		if err := d.Settle(ctx); err != nil {
			return err
		}
		if !at.Before(end) && next == nil {
			break
		}
	}
	return nil
}

// Slice is a Source over events already in memory, in time order.
func Slice(evs []Event) Source {
	i := 0
	return func(context.Context) (Event, bool, error) {
		if i >= len(evs) {
			return Event{}, false, nil
		}
		i++
		return evs[i-1], true, nil
	}
}
