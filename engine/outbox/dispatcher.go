// Package outbox delivers what the engine committed to the outbox table.
// Retry, backoff, per-attempt timeouts, attempt caps and channel fallback
// are written here once, around every channel (Alertmanager's retry stage).
//
// Delivery is at-least-once with an idempotency key: a row is claimed
// (status sending, with a lease) and its outcome recorded after the channel
// answers. Each accepted send is noted at once in a sent log (SentLog), so
// a crash before the batch's outcomes commit does not send the batch again:
// on start, Run records the noted sends and makes the other leased rows due
// at once. What a crash can repeat, with the same idempotency key, is only
// a send the channel accepted in the instant before it was noted — at most
// one per channel that answers fast, since such a channel gets one send at
// a time (see lane).
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
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
	// MaxInFlight caps a channel's concurrent sends below Workers (absent
	// or zero: Workers).
	MaxInFlight map[string]int
	Retry       Retry
	Logger      *slog.Logger
	// Workers bounds concurrent sends.
	Workers int
	// Batch is how many rows one claim takes.
	Batch int
	// Observer is told about each attempt; may be nil.
	Observer Observer
	// Jitter in [0,1): fraction of the backoff randomised. Tests set 0.
	Jitter float64
	// SentLog is the file where accepted sends are noted until their
	// outcome commits (the daemon keeps it in its data directory). Empty:
	// no log, a crash resends the whole claimed batch (virtual-clock runs).
	SentLog string
	// Probe is how often a channel that is down gets one of its waiting
	// notifications tried (probe.go); its first success makes all of
	// them due. Zero: no probes, every notification waits its backoff.
	Probe time.Duration
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
	// ChannelDown is told when a channel is found down and when it is
	// back (probe.go).
	ChannelDown(channel string, down bool)
}

// Dispatcher sends due outbox rows.
type Dispatcher struct {
	o    Options
	log  *slog.Logger
	wake chan struct{}
	sent *sentLog
	left []sentEntry // sends a previous run noted but never recorded

	lanesMu sync.Mutex
	lanes   map[string]*lane

	health health // which channels are down (probe.go)

	// Statements over many rows at once (store.Bulk): the claim's leases
	// and a batch's outcomes. Only one claim and one record run at a time.
	leases                           *store.Bulk
	sentRows, attemptRows, decisions *store.Bulk
	// dueRows makes waiting retries due now (probe.go): used by a claim's
	// probe and a record's pull-forward, which do not overlap either.
	dueRows *store.Bulk
}

// slowSend is the channel latency worth one more concurrent send.
const slowSend = 5 * time.Millisecond

// lane paces the sends to one channel. A channel that answers within
// slowSend gets one send at a time: parallel sends would not make a fast
// channel faster, only widen what a crash can repeat. A slower channel
// gets one more concurrent send per slowSend of its latency (up to
// Options.Workers), so remote latency does not cap throughput.
//
// The latency is the channel's, not this process's: a send's time also
// holds the waits for a processor, and on a loaded machine those made a
// local webhook that answers in well under a millisecond average 20 ms
// and more, so it got five sends at once — and a SIGKILL repeated five
// notifications (an outside crash harness: 37 duplicates over 14 kills).
// So the estimate follows the fastest recent answers: it drops to a
// faster send at once and rises an eighth of the way toward a slower one.
type lane struct {
	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
	latency  time.Duration // floor-biased moving estimate
	max      int           // Workers, or the channel's max_in_flight if lower
}

// acquire waits for a free slot and returns how many sends the lane
// allows at once now.
func (l *lane) acquire() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		limit := min(1+int(l.latency/slowSend), l.max)
		if l.inflight < limit {
			l.inflight++
			return limit
		}
		l.cond.Wait()
	}
}

func (l *lane) release(took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if l.latency == 0 || took < l.latency {
		l.latency = took
	} else {
		l.latency += (took - l.latency) / 8
	}
	l.cond.Broadcast()
}

func (d *Dispatcher) lane(r *row) *lane {
	name := rowChannel(r)
	d.lanesMu.Lock()
	defer d.lanesMu.Unlock()
	l := d.lanes[name]
	if l == nil {
		l = &lane{max: d.o.Workers}
		if c := d.o.MaxInFlight[name]; c > 0 {
			l.max = min(l.max, c)
		}
		l.cond = sync.NewCond(&l.mu)
		d.lanes[name] = l
	}
	return l
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
	return &Dispatcher{o: o, log: o.Logger.With("component", "outbox"), wake: make(chan struct{}, 1), lanes: map[string]*lane{},
		health: health{failing: map[string]map[string]struct{}{}, down: map[string]time.Time{}},
		leases: store.NewBulk(`WITH v(id, lease, at) AS (VALUES %s)
			UPDATE outbox SET status = 'sending', next_at = v.lease, updated_at = v.at FROM v WHERE outbox.id = v.id`, 3),
		sentRows: store.NewBulk(`WITH v(id, attempt, at) AS (VALUES %s)
			UPDATE outbox SET status = 'sent', attempts = v.attempt, sent_at = v.at, updated_at = v.at, last_error = '' FROM v WHERE outbox.id = v.id`, 3),
		attemptRows: store.Insert("attempts (notification, at, channel, attempt, ok, retry, error, millis)", 8),
		dueRows: store.NewBulk(`WITH v(id, at) AS (VALUES %s)
			UPDATE outbox SET next_at = v.at FROM v WHERE outbox.id = v.id AND outbox.status = 'retry'`, 2),
		decisions: store.InsertDecisions(),
	}
}

// Wake asks the dispatcher to look for work now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, polling every interval and on Wake. It
// first finishes what a previous run left (Recover), retrying while the
// store refuses.
func (d *Dispatcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	defer func() { _ = d.sent.close() }()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := d.Recover(ctx)
		if err == nil {
			break
		}
		d.log.Error("outbox recovery failed; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	d.pipeline(ctx, t.C)
}

// pipeline delivers until ctx ends. While one batch is sent, the outcomes
// of the batch before are recorded and the next batch is claimed, so the
// sends (the channel's time) and the SQLite work (this process's time)
// overlap instead of adding up. The sent log keeps one generation per
// batch in flight.
func (d *Dispatcher) pipeline(ctx context.Context, tick <-chan time.Time) {
	var (
		rows    []*row   // the batch to send next
		results []result // the batch sent last, outcomes not yet recorded
		gen     int      // sent-log generation of the batch to send next
	)
	for {
		if ctx.Err() != nil {
			// Stopping: record what was sent; rows claimed but not sent are
			// due at once after the restart (Recover).
			if len(results) > 0 {
				_ = d.recordAll(ctx, results, gen^1)
			}
			return
		}
		if len(rows) == 0 && len(results) == 0 {
			if rows = d.claimLogged(ctx); len(rows) == 0 {
				select {
				case <-ctx.Done():
				case <-tick:
				case <-d.wake:
				}
				continue
			}
		}
		// In flight while the claim below runs: the rows being sent. It can
		// only return one of them if its lease ran out while it waited or
		// was sent; it is not sent twice. (The rows being recorded are
		// recorded before that claim: one that falls back to another
		// channel is due again at once, and is sent.)
		inFlight := make(map[string]struct{}, len(rows))
		for _, r := range rows {
			inFlight[r.id] = struct{}{}
		}
		type background struct {
			next []*row
			err  error // recording failed until ctx ended
		}
		bg := make(chan background, 1)
		go func(results []result, gen int) {
			var b background
			if len(results) > 0 {
				if b.err = d.recordAll(ctx, results, gen); b.err != nil {
					bg <- b
					return
				}
			}
			if ctx.Err() == nil { // stopping: claim nothing more
				b.next = slices.DeleteFunc(d.claimLogged(ctx), func(r *row) bool { _, ok := inFlight[r.id]; return ok })
			}
			bg <- b
		}(results, gen^1)
		sent := d.sendAll(ctx, rows, gen)
		b := <-bg
		if b.err != nil {
			return // ctx ended with outcomes unrecorded: the sent log keeps them
		}
		rows, results, gen = b.next, sent, gen^1
	}
}

// claimLogged is claim for the pipeline, which has no caller to return an
// error to: it logs it, and the rows are claimed again on the next round.
func (d *Dispatcher) claimLogged(ctx context.Context) []*row {
	rows, err := d.claim(ctx)
	if err != nil && ctx.Err() == nil {
		d.log.Error("dispatch", "err", err)
	}
	return rows
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

// Recover finishes what a previous run of the dispatcher left behind: the
// sends its sent log noted are recorded as delivered (not sent again), and
// the rows it had leased are due at once rather than when the lease ends.
// Run calls it first; only one dispatcher may work on a store.
func (d *Dispatcher) Recover(ctx context.Context) error {
	if d.o.SentLog != "" && d.sent == nil {
		l, left, err := openSentLog(d.o.SentLog)
		if err != nil {
			return err
		}
		d.sent, d.left = l, left
	}
	now := store.Millis(d.o.Clock.Now())
	tx, err := d.o.Store.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	defer tx.Rollback()
	recorded := 0
	for _, e := range d.left {
		res, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'sent', attempts = ?, sent_at = ?, updated_at = ?, last_error = '' WHERE id = ? AND status = 'sending'`,
			e.Attempt, e.At, now, e.ID)
		if err != nil {
			return fmt.Errorf("recover %s: %w", e.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // its outcome was committed before the crash
		}
		recorded++
		if _, err := tx.ExecContext(ctx, `INSERT INTO attempts (notification, at, channel, attempt, ok, retry, error, millis) VALUES (?, ?, ?, ?, 1, 0, '', ?)`,
			e.ID, e.At, e.Channel, e.Attempt, e.Millis); err != nil {
			return fmt.Errorf("recover %s: %w", e.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event, mode)
			SELECT ?, rule, etype, ekey, customer, ?, ?, id, '', 'live' FROM outbox WHERE id = ?`,
			e.At, policy.VerdictDelivered, fmt.Sprintf("via %s, attempt %d (recorded after a restart)", e.Channel, e.Attempt), e.ID); err != nil {
			return fmt.Errorf("recover %s: %w", e.ID, err)
		}
	}
	released, err := tx.ExecContext(ctx, `UPDATE outbox SET next_at = ? WHERE status = 'sending'`, now)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	n, _ := released.RowsAffected()
	if recorded > 0 || n > 0 {
		d.log.Info("recovered deliveries of a previous run", "recorded_from_sent_log", recorded, "resending", n)
	}
	d.left = nil
	return errors.Join(d.sent.reset(0), d.sent.reset(1))
}

// RunOnce claims due rows, sends them (see lane for how many at once) and
// records the outcomes. It returns how many rows it handled.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	rows, err := d.claim(ctx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	return len(rows), d.recordAll(ctx, d.sendAll(ctx, rows, 0), 0)
}

// sendAll sends rows (see lane for how many at once), noting accepted
// sends in generation gen of the sent log. Once ctx ends it starts no
// more sends; it returns the results of those it made.
func (d *Dispatcher) sendAll(ctx context.Context, rows []*row, gen int) []result {
	results := make([]result, len(rows))
	sem := make(chan struct{}, d.o.Workers)
	var wg sync.WaitGroup
	started := 0
	for i, r := range rows {
		if ctx.Err() != nil {
			break // stopping: the rest stay leased, due at once after a restart
		}
		started++
		l := d.lane(r)
		if l.acquire() == 1 {
			// One at a time: send from here. A goroutine per send cost a
			// start, a stack growth and two hand-offs each time, on the
			// path of every send of a fast channel (BENCHMARKS.md).
			results[i] = d.send(ctx, r, gen)
			l.release(results[i].took)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = d.send(ctx, r, gen)
			l.release(results[i].took)
		}()
	}
	wg.Wait()
	return results[:started]
}

// recordAll commits the outcomes, retrying while the store refuses: the
// sends happened, and a row left leased would be sent again. If ctx ends
// first, the sent log keeps the deliveries for Recover.
func (d *Dispatcher) recordAll(ctx context.Context, results []result, gen int) error {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := d.record(context.WithoutCancel(ctx), results)
		if err == nil {
			d.observe(context.WithoutCancel(ctx), results)
			if err := d.sent.reset(gen); err != nil {
				d.log.Warn("could not empty the sent log", "err", err)
			}
			return nil
		}
		d.log.Error("could not record delivery outcomes; retrying", "rows", len(results), "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

// claim marks due rows as sending, with a lease after which a crashed send
// is retried.
func (d *Dispatcher) claim(ctx context.Context) ([]*row, error) {
	// Without cancellation the driver runs each statement on this
	// goroutine instead of handing it to one of its own (engine.stmtCtx).
	ctx = context.WithoutCancel(ctx)
	if err := d.probe(ctx); err != nil {
		// Without the probe a down channel's notifications wait out their
		// backoff: later, not lost.
		d.log.Error("could not probe a channel that is down", "err", err)
	}
	now := d.o.Clock.Now()
	tx, err := d.o.Store.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer tx.Rollback()
	// outbox_claim is in claim order: without it SQLite sorts every due row
	// (store.go).
	q, err := tx.QueryContext(ctx, `SELECT id, rule, etype, ekey, customer, candidates, hop, attempts, doc FROM outbox INDEXED BY outbox_claim
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
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	lease, at := store.Millis(now.Add(2*d.o.Retry.Timeout+time.Second)), store.Millis(now)
	args := make([]any, 0, 3*len(out))
	for _, r := range out {
		args = append(args, r.id, lease, at)
	}
	if err := d.leases.Exec(ctx, tx, args); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return out, nil
}

func (d *Dispatcher) send(ctx context.Context, r *row, gen int) result {
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
	// An attempt in flight runs to its end (bounded by its timeout) even
	// when the dispatcher is stopping: cut off, the channel may already have
	// taken it while we record a failure and send it again after a restart.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	start := time.Now()
	retry, err := safeNotify(actx, n, &doc)
	res.took = time.Since(start)
	res.at = d.o.Clock.Now()
	if err == nil {
		res.ok = true
		if lerr := d.sent.add(gen, sentEntry{ID: r.id, Channel: c.Channel, Attempt: r.attempts + 1, At: store.Millis(res.at), Millis: res.took.Milliseconds()}); lerr != nil {
			d.log.Error("could not note a delivery; a crash before it is recorded would send it again", "id", r.id, "err", lerr)
		}
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

// record commits a batch's outcomes: an attempt row each, the new status,
// and a decision for a delivery, a fallback or a failure. The common case,
// delivered, is written many rows per statement.
func (d *Dispatcher) record(ctx context.Context, results []result) error {
	tx, err := d.o.Store.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	defer tx.Rollback()
	var o outcomes
	for _, res := range results {
		if err := d.outcome(ctx, tx, res, &o); err != nil {
			return fmt.Errorf("record %s: %w", res.row.id, err)
		}
	}
	if err := d.sentRows.Exec(ctx, tx, o.sent); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if err := d.attemptRows.Exec(ctx, tx, o.attempts); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if err := d.decisions.Exec(ctx, tx, o.decisions); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return tx.Commit()
}

// outcomes are the rows of one record, flattened for store.Bulk.
type outcomes struct{ sent, attempts, decisions []any }

// outcome adds one result to o; a row that is not delivered changes its
// status here.
func (d *Dispatcher) outcome(ctx context.Context, tx *sql.Tx, res result, o *outcomes) error {
	r := res.row
	at := store.Millis(res.at)
	channel := rowChannel(r)
	attempt := r.attempts + 1
	errText := ""
	if res.err != nil {
		errText = res.err.Error()
	}
	o.attempts = append(o.attempts, r.id, at, channel, attempt, boolInt(res.ok), boolInt(res.retry), errText, res.took.Milliseconds())
	decide := func(verdict, reason string) {
		o.decisions = append(o.decisions, at, r.rule, r.etype, r.ekey, r.customer, verdict, reason, r.id, "", "live")
	}
	switch {
	case res.ok:
		o.sent = append(o.sent, r.id, attempt, at)
		d.log.Info("delivered", "id", r.id, "rule", r.rule, "channel", channel, "customer", r.customer, "attempt", attempt)
		decide(policy.VerdictDelivered, fmt.Sprintf("via %s, attempt %d", channel, attempt))
		return nil
	case res.retry && attempt < d.o.Retry.Attempts:
		next := res.at.Add(d.Backoff(attempt))
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'retry', attempts = ?, next_at = ?, updated_at = ?, last_error = ? WHERE id = ?`,
			attempt, store.Millis(next), at, errText, r.id)
		d.log.Warn("delivery failed; will retry", "id", r.id, "channel", channel, "attempt", attempt, "next", next, "err", errText)
		return err
	case r.hop+1 < len(r.cands):
		nextCh := r.cands[r.hop+1].Channel
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'pending', hop = hop + 1, attempts = 0, next_at = ?, updated_at = ?, last_error = ? WHERE id = ?`,
			at, at, errText, r.id); err != nil {
			return err
		}
		d.log.Warn("delivery failed; falling back", "id", r.id, "channel", channel, "next_channel", nextCh, "err", errText)
		decide(policy.VerdictFallback, fmt.Sprintf("%s failed after %d attempt(s): %s; falling back to %s", channel, attempt, errText, nextCh))
		return nil
	default:
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'failed', attempts = ?, updated_at = ?, last_error = ? WHERE id = ?`, attempt, at, errText, r.id); err != nil {
			return err
		}
		d.log.Error("delivery failed", "id", r.id, "rule", r.rule, "channel", channel, "err", errText)
		decide(policy.VerdictFailed, fmt.Sprintf("%s failed after %d attempt(s): %s", channel, attempt, errText))
		return nil
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
