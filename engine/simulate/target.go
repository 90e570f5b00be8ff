package simulate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/outbox"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
)

// Target is where a simulation goes: a real engine on a virtual clock
// (EngineTarget), or a daemon over NATS.
type Target interface {
	// Advance lets time pass up to at: everything due by then is done.
	Advance(ctx context.Context, at time.Time) error
	// Publish delivers one event, happening at ev.At.
	Publish(ctx context.Context, ev Event) error
	// Notified says whether the customer was told about the order by at
	// (Run calls Advance(at) first).
	Notified(ctx context.Context, orderID string, at time.Time) (bool, error)
}

// Run plays the whole simulation into t, in time order.
func (s *Sim) Run(ctx context.Context, t Target) error {
	ask := func(order string, at time.Time) (bool, error) {
		if err := t.Advance(ctx, at); err != nil {
			return false, err
		}
		return t.Notified(ctx, order, at)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev, ok, err := s.Next(ask)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if err := t.Advance(ctx, ev.At); err != nil {
			return err
		}
		if err := t.Publish(ctx, ev); err != nil {
			return err
		}
	}
}

// DeliveredBefore reports whether a notification about the entity was
// delivered to its customer by at, according to the decisions table of a
// proactived store (the daemon's file opened read-only works too).
// informedBy limits it to notifications of those rules; empty = any rule.
func DeliveredBefore(ctx context.Context, db *sql.DB, etype, key string, at time.Time, informedBy []string) (bool, error) {
	in, args := store.DecisionsIn(store.ByEntity(etype, key))
	q := `SELECT 1 FROM decisions WHERE ` + in + ` AND etype = ? AND ekey = ? AND verdict = ? AND mode = 'live' AND at <= ?`
	args = append(args, etype, key, policy.VerdictDelivered, store.Millis(at))
	if len(informedBy) > 0 {
		q += ` AND rule IN (` + store.Placeholders(len(informedBy)) + `)`
		for _, r := range informedBy {
			args = append(args, r)
		}
	}
	var one int
	err := db.QueryRowContext(ctx, q+` LIMIT 1`, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("simulate: read decisions: %w", err)
	}
	return true, nil
}

// EngineTarget drives a real engine and outbox dispatcher on a virtual
// clock: events go through the same decoding as JetStream messages, time
// jumps from one due moment (event, timer, deferred notification) to the
// next, and "notified" means a notification about the order was
// delivered. A few days of a shop run in seconds.
type EngineTarget struct {
	Engine *engine.Engine
	Outbox *outbox.Dispatcher
	Clock  *clock.Virtual
	Store  *store.Store
	// EntityType is the entity orders are (default "order").
	EntityType string
	// InformedBy lists the rules whose notifications tell a customer about
	// a delay; empty = a notification of any rule.
	InformedBy []string

	seq uint64
	// wake caches NextWake from Publish for the next Advance, while
	// nothing has run since.
	wake      time.Time
	wakeKnown bool
}

// Advance moves the clock to at, stopping at every due moment on the way
// so timers fire at their time, not at at. Publish leaves the engine
// settled, so when nothing falls due before at the clock just moves.
func (t *EngineTarget) Advance(ctx context.Context, at time.Time) error {
	for range 1_000_000 {
		wake, err := t.nextWake(ctx)
		if err != nil {
			return err
		}
		if wake.IsZero() || wake.After(at) {
			t.Clock.Set(at)
			return nil
		}
		if now := t.Clock.Now(); !wake.After(now) {
			// Due now, yet the last settle left it (a retry due this
			// very moment): step a second so the loop cannot spin.
			wake = now.Add(time.Second)
			if wake.After(at) {
				wake = at
			}
		}
		t.Clock.Set(wake)
		if err := t.settle(ctx); err != nil {
			return err
		}
		if !wake.Before(at) {
			return nil
		}
	}
	return errors.New("simulate: too many steps advancing the clock; is a schedule firing every second?")
}

func (t *EngineTarget) nextWake(ctx context.Context) (time.Time, error) {
	if t.wakeKnown {
		return t.wake, nil
	}
	wake, err := t.Engine.NextWake(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("simulate: next wake: %w", err)
	}
	t.wake, t.wakeKnown = wake, true
	return wake, nil
}

// settle runs the engine's due work and the dispatcher until both are
// idle at the current time.
func (t *EngineTarget) settle(ctx context.Context) error {
	t.wakeKnown = false
	for range 10_000 {
		more, err := t.Engine.Tick(ctx)
		if err != nil {
			return fmt.Errorf("simulate: tick: %w", err)
		}
		n, err := t.Outbox.RunOnce(ctx)
		if err != nil {
			return fmt.Errorf("simulate: dispatch: %w", err)
		}
		if !more && n == 0 {
			return nil
		}
	}
	return errors.New("simulate: engine did not settle after 10000 steps")
}

// Publish decodes the event as the intake would and commits it.
func (t *EngineTarget) Publish(ctx context.Context, ev Event) error {
	body, err := ev.JSON()
	if err != nil {
		return err
	}
	t.Clock.Set(ev.At)
	t.wakeKnown = false
	t.seq++
	dec, rej := event.Decode(event.Raw{Subject: ev.Subject, Body: body, MsgID: ev.ID, Seq: t.seq, Time: ev.At}, 0)
	if rej != nil {
		return fmt.Errorf("simulate: %s %s rejected: %w", ev.Subject, ev.ID, rej)
	}
	p, rej := t.Engine.Prepare(dec)
	if rej != nil {
		return fmt.Errorf("simulate: %s %s rejected: %w", ev.Subject, ev.ID, rej)
	}
	if err := t.Engine.HandleBatch(ctx, []*engine.Prepared{p}); err != nil {
		return fmt.Errorf("simulate: %s %s: %w", ev.Subject, ev.ID, err)
	}
	// Most events queue nothing and arm nothing due now: a few reads
	// cost far less than a Tick and a dispatcher claim (two write
	// transactions), which keeps long simulations fast.
	wake, err := t.nextWake(ctx)
	if err != nil {
		return err
	}
	var queued int
	if err := t.Store.R.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM outbox WHERE status = 'pending' LIMIT 1)`).Scan(&queued); err != nil {
		return fmt.Errorf("simulate: read outbox: %w", err)
	}
	if queued == 0 && (wake.IsZero() || wake.After(ev.At)) {
		return nil
	}
	return t.settle(ctx)
}

// Notified: a notification about the order was delivered by at.
func (t *EngineTarget) Notified(ctx context.Context, orderID string, at time.Time) (bool, error) {
	typ := t.EntityType
	if typ == "" {
		typ = "order"
	}
	return DeliveredBefore(ctx, t.Store.R, typ, orderID, at, t.InformedBy)
}
