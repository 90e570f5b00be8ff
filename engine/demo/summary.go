package demo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

// recorder is what the channels of a compressed run saw: how many
// notifications they accepted, and when each order's customer was first
// told by an informing rule (on the virtual clock).
type recorder struct {
	mu         sync.Mutex
	clock      clock.Clock
	informedBy []string
	told       map[string]time.Time
	sent       int
}

func (r *recorder) toldBy(order string, at time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.told[order]
	return ok && !t.After(at)
}

func (r *recorder) sentCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// recordingChannel records an accepted notification after passing it on
// to next (nil: accept).
type recordingChannel struct {
	rec  *recorder
	next notifiers.Notifier
}

func (c *recordingChannel) Notify(ctx context.Context, n *notifiers.Notification) (bool, error) {
	if c.next != nil {
		if retry, err := c.next.Notify(ctx, n); err != nil {
			return retry, err
		}
	}
	r := c.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	if n.Entity.Type == "order" && n.To.Customer != "" && (len(r.informedBy) == 0 || slices.Contains(r.informedBy, n.Rule)) {
		if _, ok := r.told[n.Entity.Key]; !ok && r.clock != nil {
			r.told[n.Entity.Key] = r.clock.Now()
		}
	}
	return false, nil
}

// VerdictOrder is the order in which summaries list verdicts: what went
// out, what waits, then every reason something did not go out.
func VerdictOrder() []string {
	return []string{
		policy.VerdictSent, policy.VerdictDelivered, policy.VerdictDeferred, policy.VerdictReleased,
		policy.VerdictPending, policy.VerdictArmed, policy.VerdictCancelled,
		policy.VerdictDeduped, policy.VerdictHeldOut, policy.VerdictInhibited, policy.VerdictCapped,
		policy.VerdictOptedOut, policy.VerdictNoChannel, policy.VerdictSuperseded, policy.VerdictShadow,
		policy.VerdictPromise, policy.VerdictFallback, policy.VerdictFailed, policy.VerdictError,
	}
}

// Example is one entity to look at with `proactived explain`.
type Example struct {
	Verdict string
	Rule    string
	Entity  string // type:key
	Reason  string
}

// Summary is what the engine made of a demo, read from its store.
type Summary struct {
	// Verdicts counts decisions by verdict.
	Verdicts map[string]int64
	// Outbox counts notifications by status.
	Outbox map[string]int64
	// Examples holds one recent entity per interesting verdict, in
	// VerdictOrder.
	Examples []Example
}

// exampleVerdicts are the verdicts worth an explain pointer.
func exampleVerdicts() []string {
	return []string{
		policy.VerdictSent, policy.VerdictDeferred, policy.VerdictPending, policy.VerdictHeldOut,
		policy.VerdictInhibited, policy.VerdictCapped, policy.VerdictDeduped,
	}
}

// Verdicts counts decisions by verdict since since (zero = all).
func Verdicts(ctx context.Context, db *sql.DB, since time.Time) (map[string]int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT verdict, count(*) FROM decisions WHERE at >= ? GROUP BY verdict`, store.Millis(since))
	if err != nil {
		return nil, fmt.Errorf("demo: count decisions: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var v string
		var n int64
		if err := rows.Scan(&v, &n); err != nil {
			return nil, fmt.Errorf("demo: count decisions: %w", err)
		}
		out[v] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("demo: count decisions: %w", err)
	}
	return out, nil
}

// Summarize reads the decisions and notifications made since since (zero
// = all) from a proactived store (the daemon's file opened read-only
// works).
func Summarize(ctx context.Context, db *sql.DB, since time.Time) (*Summary, error) {
	verdicts, err := Verdicts(ctx, db, since)
	if err != nil {
		return nil, err
	}
	s := &Summary{Verdicts: verdicts, Outbox: map[string]int64{}}
	rows, err := db.QueryContext(ctx, `SELECT status, count(*) FROM outbox WHERE created_at >= ? GROUP BY status`, store.Millis(since))
	if err != nil {
		return nil, fmt.Errorf("demo: count notifications: %w", err)
	}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("demo: count notifications: %w", err)
		}
		s.Outbox[st] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("demo: count notifications: %w", err)
	}
	for _, v := range exampleVerdicts() {
		if verdicts[v] == 0 {
			continue
		}
		var ex Example
		var typ, key string
		err := db.QueryRowContext(ctx, `SELECT rule, etype, ekey, reason FROM decisions
			WHERE verdict = ? AND etype != '' AND etype != 'customer' AND at >= ? ORDER BY id DESC LIMIT 1`, v, store.Millis(since)).
			Scan(&ex.Rule, &typ, &key, &ex.Reason)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("demo: find an example: %w", err)
		}
		ex.Verdict, ex.Entity = v, typ+":"+key
		s.Examples = append(s.Examples, ex)
	}
	return s, nil
}
