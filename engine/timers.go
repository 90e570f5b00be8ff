package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// timerPayload keeps the event that armed a timer, so the rule sees it
// when the timer fires.
type timerPayload struct {
	Subject string         `json:"subject"`
	ID      string         `json:"id"`
	Time    time.Time      `json:"time"`
	Data    map[string]any `json:"data"`
}

func payloadOf(ev *event.Event) []byte {
	if ev == nil {
		return nil
	}
	b, _ := json.Marshal(timerPayload{Subject: ev.Subject, ID: ev.ID, Time: ev.Time, Data: ev.Data})
	return b
}

func (p timerPayload) event() *event.Event {
	if p.Subject == "" {
		return nil
	}
	event.Normalize(p.Data)
	return &event.Event{Subject: p.Subject, ID: p.ID, Time: p.Time, Data: p.Data}
}

// holdDown implements `for:`: the condition must hold continuously for the
// duration. The pending state is a durable timer, so it survives restarts
// and reloads; an event that makes the condition false cancels it.
func (e *Engine) holdDown(ctx context.Context, r *rules.Rule, ent *entity, ev *event.Event, ok bool) error {
	due, err := e.cur.timer(ctx, r.Name, ent.typ, ent.key, timerFor)
	if err != nil {
		return err
	}
	switch {
	case ok && due.IsZero():
		until := e.now().Add(r.For)
		if err := e.cur.setTimer(ctx, r.Name, ent.typ, ent.key, timerFor, until, e.now(), payloadOf(ev)); err != nil {
			return err
		}
		e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, customer: e.currentCustomer, verdict: policy.VerdictPending,
			reason: fmt.Sprintf("condition true; fires at %s if it holds for %s", until.Format(time.RFC3339), r.For), event: ev.ID})
	case ok:
		// Still true: keep the original start, but remember the newest event
		// for the template.
		if err := e.cur.setTimer(ctx, r.Name, ent.typ, ent.key, timerFor, due, e.now(), payloadOf(ev)); err != nil {
			return err
		}
	case !due.IsZero():
		if _, err := e.cur.deleteTimer(ctx, r.Name, ent.typ, ent.key, timerFor); err != nil {
			return err
		}
		e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, customer: e.currentCustomer, verdict: policy.VerdictCancelled,
			reason: "condition became false before " + r.For.String(), event: ev.ID})
	}
	return nil
}

// arm starts an absence deadline. A second `on` event keeps the first
// deadline (rearm: keep) or restarts it (rearm: reset).
func (e *Engine) arm(ctx context.Context, r *rules.Rule, ent *entity, ev *event.Event) error {
	due, err := e.cur.timer(ctx, r.Name, ent.typ, ent.key, timerAbsence)
	if err != nil {
		return err
	}
	if !due.IsZero() && r.Rearm != rules.RearmReset {
		return nil
	}
	var deadline time.Time
	if r.Deadline != nil {
		e.bindEnv(ent, ev)
		out, err := e.runSafe(r.Deadline)
		if err == nil {
			deadline, err = asTime(out)
		}
		if err != nil {
			e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, verdict: policy.VerdictError, reason: "deadline: " + err.Error(), event: ev.ID})
			return nil
		}
	} else {
		deadline = e.now().Add(r.Within)
	}
	if err := e.cur.setTimer(ctx, r.Name, ent.typ, ent.key, timerAbsence, deadline, e.now(), payloadOf(ev)); err != nil {
		return err
	}
	e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, verdict: policy.VerdictArmed,
		reason: "waiting for " + r.Expect + " until " + deadline.Format(time.RFC3339), event: ev.ID})
	return nil
}

// runSafe runs a program on the shared environment; a panic in a
// user-provided expression becomes an error, never a crash.
func (e *Engine) runSafe(p *vm.Program) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("expression panicked: %v", r)
		}
	}()
	return e.vm.Run(p, e.env)
}

func asTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t.UTC(), nil
	case string:
		tt, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", t)
		}
		return tt.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("want a time, got %T", v)
}

// dueTimer is one timer row that fell due.
type dueTimer struct {
	rule, etype, ekey, kind string
	due                     time.Time
	payload                 []byte
}

// fireTimers handles timers due at or before now, in due order, a bounded
// number per transaction. A timer that fell due while the daemon was down
// fires once, on the first Tick after start.
func (e *Engine) fireTimers(ctx context.Context, now time.Time, limit int) (int, error) {
	rows, err := e.st.W.QueryContext(ctx, `SELECT rule, etype, ekey, kind, due, payload FROM timers WHERE due <= ? ORDER BY due LIMIT ?`, store.Millis(now), limit)
	if err != nil {
		return 0, fmt.Errorf("due timers: %w", err)
	}
	var due []dueTimer
	for rows.Next() {
		var t dueTimer
		var ms int64
		if err := rows.Scan(&t.rule, &t.etype, &t.ekey, &t.kind, &ms, &t.payload); err != nil {
			rows.Close()
			return 0, err
		}
		t.due = store.FromMillis(ms)
		due = append(due, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(due) == 0 {
		return 0, nil
	}
	err = e.withTx(ctx, func() error {
		for _, t := range due {
			if _, err := e.cur.deleteTimer(ctx, t.rule, t.etype, t.ekey, t.kind); err != nil {
				return err
			}
			if err := e.fireTimer(ctx, t); err != nil {
				return err
			}
		}
		return nil
	})
	return len(due), err
}

func (e *Engine) fireTimer(ctx context.Context, t dueTimer) error {
	s := e.set.Load()
	r := s.ByName[t.rule]
	if r == nil {
		e.decide(ctx, decision{ruleName: t.rule, etype: t.etype, ekey: t.ekey, verdict: policy.VerdictCancelled, reason: "rule no longer exists; " + t.kind + " timer dropped"})
		return nil
	}
	var p timerPayload
	if len(t.payload) > 0 {
		_ = json.Unmarshal(t.payload, &p)
	}
	ev := p.event()
	ent, err := e.load(ctx, t.etype, t.ekey)
	if err != nil {
		return err
	}
	switch t.kind {
	case timerPromise:
		return e.promiseDue(ctx, r, ent, t)
	case timerAbsence, timerFor:
		cause := t.kind + " timer due " + t.due.Format(time.RFC3339)
		ok, cust, err := e.evalRule(ctx, r, ent, ev)
		if err != nil {
			e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, verdict: policy.VerdictError, reason: firstLine(err), event: cause})
			return nil
		}
		if !ok {
			e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, verdict: policy.VerdictCancelled, reason: "condition false when the " + t.kind + " timer fell due", event: cause})
			return nil
		}
		return e.fire(ctx, fireArgs{rule: r, ent: ent, ev: ev, cust: cust, cause: cause})
	}
	return nil
}

// promiseDue sends the follow-up a promise announced, unless a newer
// notification for the entity went out since (promise kept).
func (e *Engine) promiseDue(ctx context.Context, r *rules.Rule, ent *entity, t dueTimer) error {
	var pt promiseTimer
	_ = json.Unmarshal(t.payload, &pt)
	var created int64
	if err := e.cur.reader(tOutbox).QueryRowContext(ctx, `SELECT created_at FROM outbox WHERE id = ?`, pt.Notification).Scan(&created); err != nil {
		created = 0
	}
	var newer int
	if err := e.cur.reader(tOutbox).QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE etype = ? AND ekey = ? AND customer = ? AND created_at > ? AND id != ? AND status IN `+liveStatuses,
		ent.typ, ent.key, pt.Customer, created, pt.Notification).Scan(&newer); err != nil {
		e.cur.fail(err)
		return err
	}
	if newer > 0 {
		e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, customer: pt.Customer, verdict: policy.VerdictPromise,
			reason: "kept: a newer notification went out before " + t.due.Format(time.RFC3339), notification: pt.Notification})
		return nil
	}
	e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, customer: pt.Customer, verdict: policy.VerdictPromise,
		reason: "broken: nothing newer by " + t.due.Format(time.RFC3339) + "; sending follow-up " + pt.Template, notification: pt.Notification})
	var ev *event.Event
	if pt.Event != nil {
		ev = pt.Event.event()
	}
	e.bindEnv(ent, ev)
	var cust *entity
	if pt.Customer != "" {
		c, err := e.load(ctx, rules.EnvCustomer, pt.Customer)
		if err != nil {
			return err
		}
		cust = c
		e.env[rules.EnvCustomer] = c.stateOrEmpty()
		e.currentCustomer = pt.Customer
	}
	return e.fire(ctx, fireArgs{rule: r, ent: ent, ev: ev, cust: cust, template: pt.Template, followupOf: pt.Notification, cause: "promise follow-up of " + pt.Notification})
}
