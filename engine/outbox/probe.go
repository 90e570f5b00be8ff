package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
)

// Recovery probes: a channel that was down gets its waiting notifications
// tried again as soon as it is back, not when each one's backoff ends.
//
// Backoff spares a struggling receiver, but it also means that after an
// outage of a few minutes the notifications that failed early wait out
// their doubled backoff (30 s, 1 m, 2 m, 4 m …) long after the channel
// recovered, while the customer calls about the parcel. So the dispatcher
// watches each channel's outcomes. Once retryable failures of downAfter
// different notifications follow each other with no success between, the
// channel is down. While it is down, every Options.Probe the waiting
// notification of that channel that is due soonest is made due at once:
// a real attempt, counted like any other. The first success on a down
// channel (a probe's or a new notification's) marks it up and makes every
// notification waiting to retry on it due at once.
//
// One notification that keeps failing while others get through (a
// receiver refusing one payload) never marks its channel down, so it keeps
// its backoff. The state lives in memory; after a restart a channel with
// downAfter or more notifications waiting to retry on it starts as down.

// downAfter is how many different notifications must fail in a row, each
// worth a retry, before their channel counts as down.
const downAfter = 3

// health is what the dispatcher knows of its channels' state.
type health struct {
	mu sync.Mutex
	// failing: per channel, the notifications that failed (retryably) since
	// its last success, up to downAfter.
	failing map[string]map[string]struct{}
	// down: per channel that is down, when it was last probed.
	down map[string]time.Time
	// seeded: the channels with retries waiting in the store were looked
	// at once, after the start.
	seeded bool
}

// rowChannel is the channel a row is on now.
func rowChannel(r *row) string {
	if r.hop < len(r.cands) {
		return r.cands[r.hop].Channel
	}
	return ""
}

// observe takes a recorded batch's outcomes into the channels' health and
// makes the waiting retries of every channel that came back due now.
func (d *Dispatcher) observe(ctx context.Context, results []result) {
	if d.o.Probe <= 0 {
		return
	}
	now := d.o.Clock.Now()
	var back []string
	h := &d.health
	h.mu.Lock()
	for _, res := range results {
		ch := rowChannel(res.row)
		switch {
		case ch == "":
		case res.ok:
			delete(h.failing, ch)
			if _, ok := h.down[ch]; ok {
				delete(h.down, ch)
				back = append(back, ch)
				d.tellDown(ch, false)
			}
		case res.retry:
			if _, ok := h.down[ch]; ok {
				continue
			}
			f := h.failing[ch]
			if f == nil {
				f = map[string]struct{}{}
				h.failing[ch] = f
			}
			f[res.row.id] = struct{}{}
			if len(f) >= downAfter {
				delete(h.failing, ch)
				h.down[ch] = now
				d.log.Warn("channel looks down; probing it with its next waiting notification every probe interval, beside each one's own backoff", "channel", ch, "every", d.o.Probe, "err", res.err)
				d.tellDown(ch, true)
			}
		}
	}
	h.mu.Unlock()
	for _, ch := range back {
		n, err := d.pullForward(ctx, ch, now)
		if err != nil {
			// The rows keep their backoff: later, never lost.
			d.log.Error("channel is back, but its waiting notifications could not be made due", "channel", ch, "err", err)
			continue
		}
		d.log.Info("channel is back; retrying its waiting notifications now", "channel", ch, "waiting", n)
	}
}

func (d *Dispatcher) tellDown(ch string, down bool) {
	if d.o.Observer != nil {
		d.o.Observer.ChannelDown(ch, down)
	}
}

// probe makes one waiting notification of each down channel due now, at
// most every Options.Probe per channel. claim calls it first.
func (d *Dispatcher) probe(ctx context.Context) error {
	if d.o.Probe <= 0 {
		return nil
	}
	now := d.o.Clock.Now()
	h := &d.health
	h.mu.Lock()
	seeded := h.seeded
	h.mu.Unlock()
	if !seeded {
		// A restart forgets which channels were down: one with several
		// notifications waiting to retry is treated as down.
		counts := map[string]int{}
		if err := d.eachWaitingRetry(ctx, now, func(id, ch string) bool { counts[ch]++; return true }); err != nil {
			return err
		}
		h.mu.Lock()
		for ch, n := range counts {
			if _, ok := h.down[ch]; !ok && n >= downAfter {
				h.down[ch] = time.Time{}
				d.log.Warn("channel had notifications waiting to retry at the start; probing it", "channel", ch, "waiting", n, "every", d.o.Probe)
				d.tellDown(ch, true)
			}
		}
		h.seeded = true
		h.mu.Unlock()
	}
	// The channels whose probe is due count as probed now, whether or not
	// one of their notifications waits: a down channel with nothing
	// waiting is probed by its next new notification, and looked at again
	// after the interval.
	h.mu.Lock()
	due := map[string]bool{}
	for ch, last := range h.down {
		if !now.Before(last.Add(d.o.Probe)) {
			due[ch] = true
			h.down[ch] = now
		}
	}
	h.mu.Unlock()
	if len(due) == 0 {
		return nil
	}
	// The waiting rows in the order they are due: the first of each down
	// channel is its probe.
	var ids []string
	err := d.eachWaitingRetry(ctx, now, func(id, ch string) bool {
		if due[ch] {
			delete(due, ch)
			ids = append(ids, id)
		}
		return len(due) > 0
	})
	if err != nil {
		return err
	}
	return d.makeDue(ctx, ids, now)
}

// pullForward makes every notification waiting to retry on channel ch
// due at now and returns how many it found waiting.
func (d *Dispatcher) pullForward(ctx context.Context, ch string, now time.Time) (int, error) {
	var ids []string
	if err := d.eachWaitingRetry(ctx, now, func(id, c string) bool {
		if c == ch {
			ids = append(ids, id)
		}
		return true
	}); err != nil {
		return 0, err
	}
	return len(ids), d.makeDue(ctx, ids, now)
}

// eachWaitingRetry calls fn with the id and current channel of each
// notification waiting to retry (due after now), soonest first, until fn
// returns false.
func (d *Dispatcher) eachWaitingRetry(ctx context.Context, now time.Time, fn func(id, ch string) bool) error {
	rows, err := d.o.Store.R.QueryContext(ctx, `SELECT id, candidates, hop FROM outbox INDEXED BY outbox_due
		WHERE status = 'retry' AND next_at > ? ORDER BY next_at`, store.Millis(now))
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var cands []byte
		var hop int
		if err := rows.Scan(&id, &cands, &hop); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		var cs []policy.Candidate
		if json.Unmarshal(cands, &cs) != nil || hop >= len(cs) {
			continue // claim marks a corrupt row failed when it is due
		}
		if !fn(id, cs[hop].Channel) {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

// makeDue sets next_at = now on those of ids still waiting to retry.
func (d *Dispatcher) makeDue(ctx context.Context, ids []string, now time.Time) error {
	at := store.Millis(now)
	args := make([]any, 0, 2*len(ids))
	for _, id := range ids {
		args = append(args, id, at)
	}
	if err := d.dueRows.Exec(context.WithoutCancel(ctx), d.o.Store.W, args); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}
