// Package outbox delivers what the engine committed to the outbox table.
// Retry, backoff, per-attempt timeouts, attempt caps and channel fallback
// are written here once, around every channel (Alertmanager's retry stage).
//
// Delivery is at-least-once with an idempotency key: a row is claimed
// (status sending, with a lease) and its outcome recorded after the channel
// answers. A crash between the send and the record makes the row due again
// when the lease ends, and it is resent with the same idempotency key —
// the only way a notification can repeat.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

// Options configure a Dispatcher.
type Options struct {
	Store    *store.Store
	Clock    clock.Clock
	Channels map[string]notifiers.Notifier
	// Timeouts per channel; zero = Retry.Timeout.
	Timeouts map[string]time.Duration
	Retry    Retry
	Logger   *slog.Logger
	// Workers bounds concurrent sends.
	Workers int
	// Batch is how many rows one claim takes.
	Batch int
	// Observer is told about each attempt; may be nil.
	Observer Observer
	// Jitter in [0,1): fraction of the backoff randomised. Tests set 0.
	Jitter float64
}

// Retry is the retry policy.
type Retry struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	Timeout    time.Duration
}

// Observer receives delivery outcomes, for metrics.
type Observer interface {
	Attempt(channel string, ok bool, d time.Duration)
}

// Dispatcher sends due outbox rows.
type Dispatcher struct {
	o    Options
	log  *slog.Logger
	wake chan struct{}
}

// New returns a dispatcher.
func New(o Options) *Dispatcher {
	if o.Clock == nil {
		o.Clock = clock.Wall{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Retry.Attempts <= 0 {
		o.Retry.Attempts = 1
	}
	if o.Retry.Timeout <= 0 {
		o.Retry.Timeout = 10 * time.Second
	}
	return &Dispatcher{o: o, log: o.Logger.With("component", "outbox"), wake: make(chan struct{}, 1)}
}

// Wake asks the dispatcher to look for work now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, polling every interval and on Wake.
func (d *Dispatcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := d.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Error("dispatch", "err", err)
		}
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

type row struct {
	id, rule, etype, ekey, customer string
	cands                           []policy.Candidate
	hop, attempts                   int
	doc                             notifiers.Notification
}

type result struct {
	row   *row
	ok    bool
	retry bool
	err   error
	took  time.Duration
	at    time.Time
}

// RunOnce claims due rows, sends them concurrently and records the
// outcomes. It returns how many rows it handled.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	rows, err := d.claim(ctx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	results := make([]result, len(rows))
	sem := make(chan struct{}, d.o.Workers)
	var wg sync.WaitGroup
	for i, r := range rows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = d.send(ctx, r)
		}()
	}
	wg.Wait()
	return len(rows), d.record(context.WithoutCancel(ctx), results)
}

// claim marks due rows as sending, with a lease after which a crashed send
// is retried.
func (d *Dispatcher) claim(ctx context.Context) ([]*row, error) {
	now := d.o.Clock.Now()
	tx, err := d.o.Store.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer tx.Rollback()
	q, err := tx.QueryContext(ctx, `SELECT id, rule, etype, ekey, customer, candidates, hop, attempts, doc FROM outbox
		WHERE status IN ('pending', 'retry', 'sending') AND next_at <= ? ORDER BY priority DESC, next_at LIMIT ?`, store.Millis(now), d.o.Batch)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	var out []*row
	for q.Next() {
		r := &row{}
		var cands, doc []byte
		if err := q.Scan(&r.id, &r.rule, &r.etype, &r.ekey, &r.customer, &cands, &r.hop, &r.attempts, &doc); err != nil {
			q.Close()
			return nil, fmt.Errorf("claim: %w", err)
		}
		if err := json.Unmarshal(cands, &r.cands); err != nil || json.Unmarshal(doc, &r.doc) != nil {
			d.log.Error("corrupt outbox row; marking failed", "id", r.id)
			r.cands = nil
		}
		out = append(out, r)
	}
	q.Close()
	lease := store.Millis(now.Add(2*d.o.Retry.Timeout + time.Second))
	for _, r := range out {
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'sending', next_at = ?, updated_at = ? WHERE id = ?`, lease, store.Millis(now), r.id); err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return out, nil
}

func (d *Dispatcher) send(ctx context.Context, r *row) result {
	res := result{row: r}
	if r.hop >= len(r.cands) {
		res.err = errors.New("no channel left")
		res.at = d.o.Clock.Now()
		return res
	}
	c := r.cands[r.hop]
	n, ok := d.o.Channels[c.Channel]
	if !ok {
		res.err = fmt.Errorf("channel %q is not configured", c.Channel)
		res.at = d.o.Clock.Now()
		return res
	}
	doc := r.doc
	doc.Channel = c.Channel
	doc.To.Address = c.Address
	timeout := d.o.Retry.Timeout
	if t := d.o.Timeouts[c.Channel]; t > 0 {
		timeout = t
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	retry, err := safeNotify(actx, n, &doc)
	res.took = time.Since(start)
	res.at = d.o.Clock.Now()
	if err == nil {
		res.ok = true
	} else {
		res.err, res.retry = err, retry
		if actx.Err() != nil && ctx.Err() == nil {
			res.retry = true // per-attempt timeout
		}
	}
	if d.o.Observer != nil {
		d.o.Observer.Attempt(c.Channel, res.ok, res.took)
	}
	return res
}

// safeNotify keeps a panicking channel plugin from taking the daemon down.
func safeNotify(ctx context.Context, n notifiers.Notifier, doc *notifiers.Notification) (retry bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			retry, err = false, fmt.Errorf("channel panicked: %v", p)
		}
	}()
	return n.Notify(ctx, doc)
}

// Backoff is exponential from Retry.Backoff, capped at MaxBackoff, with
// jitter so a recovering channel is not hit by a thundering herd.
func (d *Dispatcher) Backoff(attempt int) time.Duration {
	b := d.o.Retry.Backoff
	if b <= 0 {
		b = time.Second
	}
	for i := 1; i < attempt && b < d.o.Retry.MaxBackoff; i++ {
		b *= 2
	}
	if d.o.Retry.MaxBackoff > 0 && b > d.o.Retry.MaxBackoff {
		b = d.o.Retry.MaxBackoff
	}
	if d.o.Jitter > 0 {
		b -= time.Duration(rand.Float64() * d.o.Jitter * float64(b))
	}
	return b
}

func (d *Dispatcher) record(ctx context.Context, results []result) error {
	tx, err := d.o.Store.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	defer tx.Rollback()
	for _, res := range results {
		if err := d.recordOne(ctx, tx, res); err != nil {
			return fmt.Errorf("record %s: %w", res.row.id, err)
		}
	}
	return tx.Commit()
}

func (d *Dispatcher) recordOne(ctx context.Context, tx *sql.Tx, res result) error {
	r := res.row
	at := store.Millis(res.at)
	channel := ""
	if r.hop < len(r.cands) {
		channel = r.cands[r.hop].Channel
	}
	attempt := r.attempts + 1
	errText := ""
	if res.err != nil {
		errText = res.err.Error()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO attempts (notification, at, channel, attempt, ok, retry, error, millis) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.id, at, channel, attempt, boolInt(res.ok), boolInt(res.retry), errText, res.took.Milliseconds()); err != nil {
		return err
	}
	decide := func(verdict, reason string) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event, mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', 'live')`,
			at, r.rule, r.etype, r.ekey, r.customer, verdict, reason, r.id)
		return err
	}
	switch {
	case res.ok:
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'sent', attempts = ?, sent_at = ?, updated_at = ?, last_error = '' WHERE id = ?`, attempt, at, at, r.id); err != nil {
			return err
		}
		d.log.Info("delivered", "id", r.id, "rule", r.rule, "channel", channel, "customer", r.customer, "attempt", attempt)
		return decide(policy.VerdictDelivered, fmt.Sprintf("via %s, attempt %d", channel, attempt))
	case res.retry && attempt < d.o.Retry.Attempts:
		next := res.at.Add(d.Backoff(attempt))
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'retry', attempts = ?, next_at = ?, updated_at = ?, last_error = ? WHERE id = ?`,
			attempt, store.Millis(next), at, errText, r.id)
		d.log.Warn("delivery failed; will retry", "id", r.id, "channel", channel, "attempt", attempt, "next", next, "err", errText)
		return err
	case r.hop+1 < len(r.cands):
		nextCh := r.cands[r.hop+1].Channel
		why := fmt.Sprintf("%s failed after %d attempt(s): %s; falling back to %s", channel, attempt, errText, nextCh)
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'pending', hop = hop + 1, attempts = 0, next_at = ?, updated_at = ?, last_error = ? WHERE id = ?`,
			at, at, errText, r.id); err != nil {
			return err
		}
		d.log.Warn("delivery failed; falling back", "id", r.id, "channel", channel, "next_channel", nextCh, "err", errText)
		return decide(policy.VerdictFallback, why)
	default:
		why := fmt.Sprintf("%s failed after %d attempt(s): %s", channel, attempt, errText)
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'failed', attempts = ?, updated_at = ?, last_error = ? WHERE id = ?`, attempt, at, errText, r.id); err != nil {
			return err
		}
		d.log.Error("delivery failed", "id", r.id, "rule", r.rule, "channel", channel, "err", errText)
		return decide(policy.VerdictFailed, why)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
