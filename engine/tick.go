package engine

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// Page sizes bound how long one Tick step holds the writer, so intake is
// never blocked for long by timers, fan-out or TTL.
const (
	timerPage  = 500
	fanoutPage = 5000
	scanPage   = 50000 // keys one hinted fan-out page scans inside SQLite
	ttlPage    = 5000
	deferPage  = 500
)

// Tick does the engine's time-driven work due at the clock's now: timers,
// schedules, deferred notifications, a page of each fan-out job, a page of
// TTL expiry. It returns true when more work is waiting (call again soon).
func (e *Engine) Tick(ctx context.Context) (more bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rebuildFilters(ctx)
	ctx = stmtCtx(ctx)
	now := e.now()
	// Deadlines, hold-downs, schedules and deferred notifications act on
	// an instant only once the events stored before it are applied: after
	// a restart onto a backlog, a "not dispatched within 48h" deadline
	// must not fire while the dispatch event that cancels it still waits
	// in the stream.
	if upTo, ok := e.timeUpTo(now); ok {
		n, err := e.fireTimers(ctx, upTo, timerPage)
		if err != nil {
			return false, fmt.Errorf("timers: %w", err)
		}
		more = n == timerPage
		if err := e.runSchedules(ctx, upTo); err != nil {
			return false, fmt.Errorf("schedules: %w", err)
		}
		m, err := e.releaseDeferred(ctx, upTo)
		if err != nil {
			return false, fmt.Errorf("deferred: %w", err)
		}
		more = more || m == deferPage
	}
	f, err := e.fanoutStep(ctx)
	if err != nil {
		return false, fmt.Errorf("fan-out: %w", err)
	}
	more = more || f
	if e.flushDue(now) {
		// Events stopped (or come slowly): write what waited long enough.
		if err := e.withTx(ctx, func() error { return nil }); err != nil {
			return false, fmt.Errorf("write entity state: %w", err)
		}
	}
	if e.expireEvery > 0 && now.Sub(e.lastExpire) < e.expireEvery {
		return more, nil
	}
	e.lastExpire = now
	if err := e.expire(ctx, now); err != nil {
		return false, fmt.Errorf("ttl: %w", err)
	}
	return more, nil
}

// Watermark implements jsintake.Watermarker: the intake says how far the
// applied events reached in the stream (at, the stream time of the last
// one) and whether more wait (caughtUp false).
func (e *Engine) Watermark(at time.Time, caughtUp bool) {
	e.mu.Lock()
	e.wmBehind, e.wmAt = !caughtUp, at
	e.mu.Unlock()
}

// timeUpTo is the instant time-driven work may act up to: now, or, while
// events wait in the stream, the stream time of the last one applied. ok
// is false while events wait and none was applied yet.
func (e *Engine) timeUpTo(now time.Time) (time.Time, bool) {
	if !e.wmBehind {
		return now, true
	}
	if e.wmAt.IsZero() {
		return time.Time{}, false
	}
	if e.wmAt.Before(now) {
		return e.wmAt, true
	}
	return now, true
}

// NextWake is the earliest time at which Tick has work: the next timer,
// deferred notification or schedule. Zero means nothing is scheduled. A
// virtual-clock driver jumps straight to it.
func (e *Engine) NextWake(ctx context.Context) (time.Time, error) {
	ctx = stmtCtx(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	var best time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (best.IsZero() || t.Before(best)) {
			best = t
		}
	}
	for _, q := range []string{
		`SELECT min(due) FROM timers`,
		`SELECT min(next_at) FROM outbox WHERE status IN ('deferred', 'retry')`,
	} {
		var ms sql.NullInt64
		if err := e.st.W.QueryRowContext(ctx, q).Scan(&ms); err != nil {
			return time.Time{}, err
		}
		if ms.Valid {
			consider(store.FromMillis(ms.Int64))
		}
	}
	var jobs int
	if err := e.st.W.QueryRowContext(ctx, `SELECT count(*) FROM fanout`).Scan(&jobs); err != nil {
		return time.Time{}, err
	}
	if jobs > 0 {
		consider(e.now())
	}
	for _, r := range e.set.Load().Schedules() {
		last, err := e.scheduleLast(ctx, r)
		if err != nil {
			return time.Time{}, err
		}
		if last.IsZero() {
			last = e.now()
		}
		consider(r.ScheduleSpec.Next(last.In(r.Timezone)).UTC())
	}
	return best, nil
}

// releaseDeferred re-checks notifications whose deferral ended: if the
// rule's condition no longer holds against current state they are dropped
// as superseded, else they go to the dispatcher.
func (e *Engine) releaseDeferred(ctx context.Context, now time.Time) (int, error) {
	rows, err := e.st.W.QueryContext(ctx, `SELECT id, rule, etype, ekey, customer, trigger FROM outbox WHERE status = 'deferred' AND next_at <= ? ORDER BY next_at LIMIT ?`, store.Millis(now), deferPage)
	if err != nil {
		return 0, err
	}
	type row struct {
		id, rule, etype, ekey, customer string
		trig                            []byte
	}
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.rule, &r.etype, &r.ekey, &r.customer, &r.trig); err != nil {
			rows.Close()
			return 0, err
		}
		list = append(list, r)
	}
	rows.Close()
	if len(list) == 0 {
		return 0, nil
	}
	err = e.withTx(ctx, func() error {
		for _, o := range list {
			r := e.set.Load().ByName[o.rule]
			if r == nil {
				if err := e.supersede(ctx, o.id, "rule "+o.rule+" no longer exists"); err != nil {
					return err
				}
				continue
			}
			still, why, err := e.recheck(ctx, r, o.etype, o.ekey, o.trig)
			if err != nil {
				return err
			}
			if !still {
				if err := e.supersede(ctx, o.id, why); err != nil {
					return err
				}
				continue
			}
			if _, err := e.cur.exec(ctx, `UPDATE outbox SET status = 'pending', next_at = ?, updated_at = ? WHERE id = ? AND status = 'deferred'`, store.Millis(now), store.Millis(now), o.id); err != nil {
				return err
			}
			e.cur.queued++
			e.decide(ctx, decision{rule: r, etype: o.etype, ekey: o.ekey, customer: o.customer, verdict: policy.VerdictReleased,
				reason: "deferral ended; condition still true", notification: o.id})
		}
		return nil
	})
	return len(list), err
}

// recheck evaluates a rule's condition again against the entity's current
// state and the event that fired it.
func (e *Engine) recheck(ctx context.Context, r *rules.Rule, etype, ekey string, trig []byte) (bool, string, error) {
	if r.If == nil || etype == "" {
		return true, "", nil
	}
	var t trigger
	_ = json.Unmarshal(trig, &t)
	ent, err := e.load(ctx, etype, ekey)
	if err != nil {
		return false, "", err
	}
	var ev *event.Event
	if t.Subject != "" {
		event.Normalize(t.Data)
		// The event's fields were merged into the entity; where the entity
		// has moved on since (a newer ETA), the re-check sees the current
		// value, so `event.eta` means "the ETA as it stands now".
		data := make(map[string]any, len(t.Data))
		for k, v := range t.Data {
			if cur, ok := ent.state[k]; ok {
				v = cur
			}
			data[k] = v
		}
		ev = &event.Event{Subject: t.Subject, ID: t.ID, Time: t.Time, Data: data}
	}
	ok, _, err := e.evalRule(ctx, r, ent, ev)
	if err != nil {
		return false, "condition errored on re-check: " + err.Error(), nil
	}
	if !ok {
		return false, "condition no longer true on re-check before sending", nil
	}
	return true, "", nil
}

// Fan-out and schedule sweeps: one job evaluates a rule for every entity of
// a type, a page at a time, each page its own transaction.

type fanoutJob struct {
	Event *timerPayload `json:"event,omitempty"`
	Cause string        `json:"cause"`
}

func (e *Engine) startFanout(ctx context.Context, r *rules.Rule, ev *event.Event) error {
	var tp *timerPayload
	if ev != nil {
		tp = &timerPayload{Subject: ev.Subject, ID: ev.ID, Time: ev.Time, Data: ev.Data}
	}
	cause := "schedule " + e.now().Format(time.RFC3339)
	if ev != nil {
		cause = "fan-out of " + ev.Subject + " " + ev.ID
	}
	raw, _ := json.Marshal(fanoutJob{Event: tp, Cause: cause})
	_, err := e.cur.exec(ctx, `INSERT INTO fanout (rule, etype, cursor, event, created_at) VALUES (?, ?, '', ?, ?)`, r.Name, r.ForEach, raw, store.Millis(e.now()))
	return err
}

// fanoutStep runs one page of the oldest fan-out job.
func (e *Engine) fanoutStep(ctx context.Context) (bool, error) {
	var (
		id                   int64
		ruleName, etype, cur string
		raw                  []byte
	)
	err := e.st.W.QueryRowContext(ctx, `SELECT id, rule, etype, cursor, event FROM fanout ORDER BY id LIMIT 1`).Scan(&id, &ruleName, &etype, &cur, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r := e.set.Load().ByName[ruleName]
	if r == nil {
		_, err := e.st.W.ExecContext(ctx, `DELETE FROM fanout WHERE id = ?`, id)
		return true, err
	}
	// The page reads stored state: write what is still in memory first.
	if err := e.flushAll(ctx); err != nil {
		return false, err
	}
	var job fanoutJob
	_ = json.Unmarshal(raw, &job)
	var ev *event.Event
	if job.Event != nil {
		ev = job.Event.event()
	}
	// Equality hints: evaluate each value once per job, then skip entities
	// whose stored JSON does not even contain the value's encoding before
	// paying for a decode.
	type hint struct {
		field  string
		val    any
		needle []byte
	}
	var hints []hint
	if len(r.Where) > 0 {
		e.bindEnv(nil, ev)
		for _, w := range r.Where {
			v, err := e.runSafe(w.Value)
			if err != nil {
				return true, e.withTx(ctx, func() error {
					e.decide(ctx, decision{rule: r, etype: etype, verdict: policy.VerdictError, reason: "where." + w.Field + ": " + firstLine(err), event: job.Cause})
					_, err := e.cur.exec(ctx, `DELETE FROM fanout WHERE id = ?`, id)
					return err
				})
			}
			needle, _ := json.Marshal(v)
			hints = append(hints, hint{field: w.Field, val: v, needle: needle})
		}
	}
	// With hints the pre-filter runs inside SQLite (instr on the stored
	// JSON) over a window of scanPage keys, so rows that cannot match never
	// cross into Go and one page stays short however rare the matches are.
	q := `SELECT key, state, created_at, updated_at FROM entities WHERE type = ? AND key > ? ORDER BY key LIMIT ?`
	args := []any{etype, cur, fanoutPage}
	window := fanoutPage
	var windowEnd string
	if len(hints) > 0 {
		window = scanPage
		var count int
		var end sql.NullString
		if err := e.st.W.QueryRowContext(ctx, `SELECT count(*), max(key) FROM (SELECT key FROM entities WHERE type = ? AND key > ? ORDER BY key LIMIT ?)`, etype, cur, scanPage).Scan(&count, &end); err != nil {
			return false, err
		}
		windowEnd = end.String
		q = `SELECT key, state, created_at, updated_at FROM entities WHERE type = ? AND key > ? AND key <= ?`
		args = []any{etype, cur, windowEnd}
		for _, h := range hints {
			q += ` AND instr(state, ?) > 0`
			args = append(args, h.needle)
		}
		q += ` ORDER BY key LIMIT ?`
		args = append(args, fanoutPage)
		if count < scanPage {
			window = -1 // last window
		}
	}
	rows, err := e.st.W.QueryContext(ctx, q, args...)
	if err != nil {
		return false, err
	}
	var (
		list []*entity
		last string
		n    int
	)
	for rows.Next() {
		var key string
		var state []byte
		var c, u int64
		if err := rows.Scan(&key, &state, &c, &u); err != nil {
			rows.Close()
			return false, err
		}
		n++
		last = key
		skip := false
		for _, h := range hints {
			if !bytes.Contains(state, h.needle) {
				skip = true
				break
			}
		}
		if skip {
			continue
		}
		en := &entity{typ: etype, key: key, created: store.FromMillis(c), updated: store.FromMillis(u)}
		st, err := event.DecodeObjectWith(state, e.keys)
		if err != nil {
			continue
		}
		en.state = st
		ok := true
		for _, h := range hints {
			if !fieldMatches(en.state[h.field], h.val) {
				ok = false
				break
			}
		}
		if ok {
			list = append(list, en)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	if len(hints) > 0 && n < fanoutPage {
		// Fewer matches than a page: the whole window is done.
		last, n = windowEnd, window
	}
	done := n < fanoutPage
	err = e.withTx(ctx, func() error {
		for _, ent := range list {
			// Use the cached copy when there is one: it is the same data,
			// and it keeps a single object per entity.
			if cached, ok := e.cache.get(cacheKey{ent.typ, ent.key}); ok {
				ent = cached
			}
			ok, cust, err := e.evalRule(ctx, r, ent, ev)
			if err != nil {
				e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, verdict: policy.VerdictError, reason: firstLine(err), event: job.Cause})
				continue
			}
			if !ok {
				continue
			}
			if err := e.fire(ctx, fireArgs{rule: r, ent: ent, ev: ev, cust: cust, cause: job.Cause}); err != nil {
				return err
			}
		}
		if done {
			_, err := e.cur.exec(ctx, `DELETE FROM fanout WHERE id = ?`, id)
			return err
		}
		_, err := e.cur.exec(ctx, `UPDATE fanout SET cursor = ? WHERE id = ?`, last, id)
		return err
	})
	return true, err
}

// fieldMatches is the equality pre-filter: equal, or a list containing it.
func fieldMatches(field, val any) bool {
	if list, ok := field.([]any); ok {
		for _, x := range list {
			if equalJSON(x, val) {
				return true
			}
		}
		return false
	}
	return equalJSON(field, val)
}

func equalJSON(a, b any) bool {
	if a == b {
		return true
	}
	return event.KeyString(a) == event.KeyString(b) && event.KeyString(a) != ""
}

// Schedules: the last run of each schedule rule is kept in meta, so a run
// missed while the daemon was down happens once on start when it fell due
// within policy.schedule_grace.

func (e *Engine) scheduleLast(ctx context.Context, r *rules.Rule) (time.Time, error) {
	var v string
	err := e.st.W.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = ?`, "schedule:"+r.Name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	t, _ := time.Parse(time.RFC3339Nano, v)
	return t, nil
}

func (e *Engine) runSchedules(ctx context.Context, now time.Time) error {
	for _, r := range e.set.Load().Schedules() {
		last, err := e.scheduleLast(ctx, r)
		if err != nil {
			return err
		}
		if last.IsZero() {
			// First sight of this schedule: start counting from now.
			if _, err := e.st.W.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING`, "schedule:"+r.Name, now.Format(time.RFC3339Nano)); err != nil {
				return err
			}
			continue
		}
		next := r.ScheduleSpec.Next(last.In(r.Timezone)).UTC()
		if next.After(now) {
			continue
		}
		// Run once for the latest missed slot, if within grace.
		slot := next
		for {
			n := r.ScheduleSpec.Next(slot.In(r.Timezone)).UTC()
			if n.After(now) {
				break
			}
			slot = n
		}
		grace := e.cfg.Policy.ScheduleGrace.D()
		err = e.withTx(ctx, func() error {
			if now.Sub(slot) > grace {
				e.decide(ctx, decision{rule: r, etype: r.ForEach, verdict: policy.VerdictCancelled,
					reason: fmt.Sprintf("schedule slot %s missed by more than %s (policy.schedule_grace)", slot.Format(time.RFC3339), grace)})
			} else {
				raw, _ := json.Marshal(fanoutJob{Cause: "schedule " + slot.Format(time.RFC3339)})
				if _, err := e.cur.exec(ctx, `INSERT INTO fanout (rule, etype, cursor, event, created_at) VALUES (?, ?, '', ?, ?)`, r.Name, r.ForEach, raw, store.Millis(now)); err != nil {
					return err
				}
			}
			_, err := e.cur.exec(ctx, `INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, "schedule:"+r.Name, slot.Format(time.RFC3339Nano))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// expire forgets entities not touched for their type's ttl, with their
// timers, a bounded page per Tick. The scan walks keys in order with a
// cursor kept in memory, so no index on updated_at taxes every write.
func (e *Engine) expire(ctx context.Context, now time.Time) error {
	for name, ent := range e.set.Load().Entities {
		if ent.TTL <= 0 {
			continue
		}
		cur := e.ttlCursor[name]
		cutoff := store.Millis(now.Add(-ent.TTL))
		rows, err := e.st.W.QueryContext(ctx, `SELECT key, updated_at FROM entities WHERE type = ? AND key > ? ORDER BY key LIMIT ?`, name, cur, ttlPage)
		if err != nil {
			return err
		}
		var old []string
		n := 0
		last := ""
		for rows.Next() {
			var key string
			var u int64
			if err := rows.Scan(&key, &u); err != nil {
				rows.Close()
				return err
			}
			n++
			last = key
			if u < cutoff {
				if en, ok := e.cache.peek(cacheKey{name, key}); ok && en.dirty {
					continue // changed since it was written
				}
				old = append(old, key)
			}
		}
		rows.Close()
		if n < ttlPage {
			last = "" // wrap around next time
		}
		e.ttlCursor[name] = last
		if len(old) == 0 {
			continue
		}
		err = e.withTx(ctx, func() error {
			for _, k := range old {
				if _, err := e.cur.exec(ctx, `DELETE FROM entities WHERE type = ? AND key = ? AND updated_at < ?`, name, k, cutoff); err != nil {
					return err
				}
				if _, err := e.cur.exec(ctx, `DELETE FROM timers WHERE etype = ? AND ekey = ?`, name, k); err != nil {
					return err
				}
				e.cache.drop(cacheKey{name, k})
			}
			return nil
		})
		if err != nil {
			return err
		}
		e.log.Debug("expired entities", "entity", name, "count", len(old))
	}
	return nil
}
