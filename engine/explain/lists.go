package explain

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
)

// MaxPage is the largest page the list functions return.
const MaxPage = 1000

// Verdicts lists every verdict the engine and the outbox record.
func Verdicts() []string {
	return []string{
		policy.VerdictSent, policy.VerdictDeduped, policy.VerdictHeldOut, policy.VerdictOptedOut,
		policy.VerdictNoChannel, policy.VerdictInhibited, policy.VerdictCapped, policy.VerdictDeferred,
		policy.VerdictShadow, policy.VerdictError, policy.VerdictSuperseded, policy.VerdictDelivered,
		policy.VerdictFallback, policy.VerdictFailed, policy.VerdictPending, policy.VerdictCancelled,
		policy.VerdictArmed, policy.VerdictReleased, policy.VerdictPromise,
	}
}

// Statuses lists every status an outbox row can have.
func Statuses() []string {
	return []string{"pending", "deferred", "retry", "sending", "sent", "failed", "superseded", "capped"}
}

// DecisionFilter selects decisions. Empty fields match everything.
type DecisionFilter struct {
	Rule     string
	Entity   Ref
	Customer string
	Verdict  string
	Since    time.Time // at or after
	Before   int64     // cursor: only ids below it; 0 = from the newest
	Limit    int       // 0 = 100; at most MaxPage
}

// DecisionPage is one page of decisions, newest first. NextBefore, when
// non-zero, is the cursor of the next (older) page.
type DecisionPage struct {
	Decisions  []Decision `json:"decisions"`
	NextBefore int64      `json:"next_before,omitempty"`
}

func pageSize(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > MaxPage:
		return MaxPage
	}
	return n
}

// ListDecisions returns one page of decisions, newest first.
func ListDecisions(ctx context.Context, db *sql.DB, f DecisionFilter) (*DecisionPage, error) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if f.Rule != "" {
		add("rule = ?", f.Rule)
	}
	if !f.Entity.IsZero() {
		add("etype = ? AND ekey = ?", f.Entity.Type, f.Entity.Key)
	}
	if f.Customer != "" {
		add("customer = ?", f.Customer)
	}
	if f.Verdict != "" {
		add("verdict = ?", f.Verdict)
	}
	if !f.Since.IsZero() {
		add("at >= ?", store.Millis(f.Since))
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	// The most selective key the decision index has narrows the rows read;
	// the conditions above check them.
	var look []store.Lookup
	switch {
	case !f.Entity.IsZero():
		look = append(look, store.ByEntity(f.Entity.Type, f.Entity.Key))
	case f.Customer != "":
		look = append(look, store.ByCustomer(f.Customer))
	case f.Rule != "":
		look = append(look, store.ByRule(f.Rule))
	}
	if look != nil {
		in, a := store.DecisionsIn(look...)
		add(in, a...)
	}
	lim := pageSize(f.Limit)
	ds, more, err := queryDecisions(ctx, db, lim, where(conds), args...)
	if err != nil {
		return nil, err
	}
	slices.Reverse(ds) // queryDecisions answers oldest first
	p := &DecisionPage{Decisions: ds}
	if p.Decisions == nil {
		p.Decisions = []Decision{}
	}
	if more {
		p.NextBefore = ds[len(ds)-1].ID
	}
	return p, nil
}

// NotificationFilter selects outbox rows. Empty fields match everything.
type NotificationFilter struct {
	Rule     string
	Customer string
	Status   string
	Channel  string    // the channel in use (sent on, or next to try)
	Since    time.Time // created at or after
	Before   string    // cursor: only ids below it (ids are time-ordered)
	Limit    int       // 0 = 100; at most MaxPage
	// Attempts adds each notification's attempt log.
	Attempts bool
}

// NotificationPage is one page of notifications, newest first.
type NotificationPage struct {
	Notifications []Notification `json:"notifications"`
	NextBefore    string         `json:"next_before,omitempty"`
}

// ListNotifications returns one page of outbox rows, newest first.
func ListNotifications(ctx context.Context, db *sql.DB, f NotificationFilter) (*NotificationPage, error) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if f.Rule != "" {
		add("rule = ?", f.Rule)
	}
	if f.Customer != "" {
		add("customer = ?", f.Customer)
	}
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.Channel != "" {
		add("json_extract(candidates, '$[' || hop || '].channel') = ?", f.Channel)
	}
	if !f.Since.IsZero() {
		add("created_at >= ?", store.Millis(f.Since))
	}
	if f.Before != "" {
		add("id < ?", f.Before)
	}
	lim := pageSize(f.Limit)
	// Ids are ULIDs: ordering by id is ordering by creation, and the
	// cursor is exact even when many rows share a millisecond.
	rows, err := db.QueryContext(ctx, `SELECT `+notificationCols+` FROM outbox `+where(conds)+` ORDER BY id DESC LIMIT ?`, append(args, lim+1)...)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	defer rows.Close()
	p := &NotificationPage{Notifications: []Notification{}}
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, fmt.Errorf("notifications: %w", err)
		}
		p.Notifications = append(p.Notifications, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	if len(p.Notifications) > lim {
		p.Notifications = p.Notifications[:lim]
		p.NextBefore = p.Notifications[lim-1].ID
	}
	if f.Attempts {
		if err := attachAttempts(ctx, db, p.Notifications); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Counts are a rule's decision counters.
type Counts struct {
	// Fired counts the times the rule fired and the delivery policy gave
	// it a verdict: sent, deferred, deduped, held_out, opted_out,
	// no_channel, inhibited, capped, shadow, error. Hold-down and deadline
	// bookkeeping (pending, armed, cancelled) is not a firing, and neither
	// are the later verdicts about a notification already counted
	// (delivered, fallback, failed, released, superseded, promise, and
	// capped by pre-emption), so one firing counts once.
	Fired    int64            `json:"fired"`
	Verdicts map[string]int64 `json:"verdicts"`
}

// RuleCounts counts decisions per rule and verdict (since, if non-zero)
// with one GROUP BY over the decisions table.
func RuleCounts(ctx context.Context, db *sql.DB, since time.Time) (map[string]*Counts, error) {
	q := `SELECT rule, verdict, count(*), coalesce(sum(notification != ''), 0) FROM decisions`
	var args []any
	if !since.IsZero() {
		q += ` WHERE at >= ?`
		args = append(args, store.Millis(since))
	}
	rows, err := db.QueryContext(ctx, q+` GROUP BY rule, verdict`, args...)
	if err != nil {
		return nil, fmt.Errorf("rule counters: %w", err)
	}
	defer rows.Close()
	out := map[string]*Counts{}
	for rows.Next() {
		var rule, verdict string
		var n, withNotification int64
		if err := rows.Scan(&rule, &verdict, &n, &withNotification); err != nil {
			return nil, fmt.Errorf("rule counters: %w", err)
		}
		c := out[rule]
		if c == nil {
			c = &Counts{Verdicts: map[string]int64{}}
			out[rule] = c
		}
		c.Verdicts[verdict] = n
		switch verdict {
		case policy.VerdictSent, policy.VerdictDeferred, policy.VerdictDeduped, policy.VerdictHeldOut,
			policy.VerdictOptedOut, policy.VerdictNoChannel, policy.VerdictInhibited, policy.VerdictShadow,
			policy.VerdictError:
			c.Fired += n
		case policy.VerdictCapped:
			// A capped firing names no notification; a pre-empted one
			// names the queued notification it dropped.
			c.Fired += n - withNotification
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rule counters: %w", err)
	}
	return out, nil
}

func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return "WHERE " + strings.Join(conds, " AND ")
}
