package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

// fireArgs is one fired rule on the way through the delivery policy.
type fireArgs struct {
	rule *rules.Rule
	ent  *entity // nil only for internal notifications without an entity
	ev   *event.Event
	cust *entity // resolved from notify.to; nil for internal notifications
	// template overrides the rule's template (promise follow-ups).
	template string
	// followupOf is the notification whose promise this follow-up keeps.
	followupOf string
	// cause names what fired the rule when it was not an event
	// (timer, schedule); recorded in the decision.
	cause string
}

// trigger is what the outbox keeps to re-check a deferred notification.
type trigger struct {
	Subject string         `json:"subject,omitempty"`
	ID      string         `json:"id,omitempty"`
	Time    time.Time      `json:"time,omitempty"`
	Data    map[string]any `json:"data,omitempty"`
	Cause   string         `json:"cause,omitempty"`
}

// fire walks the delivery policy in SPEC order — dedup → holdout → consent
// → inhibition → frequency cap → quiet hours → template → outbox — and
// records the verdict of the step that decided.
func (e *Engine) fire(ctx context.Context, a fireArgs) error {
	r := a.rule
	now := e.now()
	d := decision{rule: r}
	if a.ent != nil {
		d.etype, d.ekey = a.ent.typ, a.ent.key
	}
	if a.ev != nil {
		d.event = a.ev.ID
	} else {
		d.event = a.cause
	}
	internal := r.Notify.To == nil
	if a.cust != nil {
		d.customer = a.cust.key
	}
	shadow := r.Mode == "shadow" || e.shadow

	// dedup
	dedupKey := d.ekey
	if a.followupOf != "" {
		// Follow-ups dedup on the promise they keep.
		dedupKey = "followup/" + a.followupOf
	} else if r.Dedup.Key != nil {
		v, err := e.vm.Run(r.Dedup.Key, e.env)
		if err == nil {
			err = rules.CheckValue(v) // not a gigabyte when printed as a key
		}
		if err != nil {
			d.verdict, d.reason = policy.VerdictError, "dedup.key: "+firstLine(err)
			e.decide(ctx, d)
			return nil
		}
		dedupKey = event.KeyString(v)
	}
	if prev, until, err := e.dedupMark(ctx, r.Name, dedupKey, now); err != nil {
		return err
	} else if prev != "" {
		d.verdict = policy.VerdictDeduped
		switch prev {
		case markHeldOut, markShadow:
			// The earlier firing was held out or in shadow: no notification.
			d.reason = "same dedup key " + dedupKey + " as an earlier firing (" + prev + ")"
		default:
			d.notification = prev
			d.reason = "same dedup key " + dedupKey + " as notification " + prev
		}
		if until != store.Forever {
			d.reason += " until " + store.FromMillis(until).Format(time.RFC3339)
		}
		e.decide(ctx, d)
		return nil
	}
	markUntil := store.Forever
	if r.Dedup.Window > 0 {
		markUntil = store.Millis(now.Add(r.Dedup.Window))
	}

	// holdout
	if !internal && policy.InHoldout(r.Name, d.ekey, r.Holdout) {
		d.verdict, d.reason = policy.VerdictHeldOut, fmt.Sprintf("entity in the %.4g%% control group", r.Holdout*100)
		e.decide(ctx, d)
		e.setDedup(r.Name, dedupKey, markUntil, markHeldOut)
		return nil
	}

	// consent and channel choice
	var custState map[string]any
	if a.cust != nil {
		custState = a.cust.stateOrEmpty()
	}
	cands, skipped, optedOut := policy.ChooseChannels(r.Notify.Channel, custState, e.cfg.Defaults.Channels, e.channels)
	if internal {
		cands, skipped, optedOut = []policy.Candidate{{Channel: r.Notify.Channel}}, nil, false
	}
	if len(cands) == 0 {
		d.verdict = policy.VerdictNoChannel
		if optedOut {
			d.verdict = policy.VerdictOptedOut
		}
		d.reason = skipReason(skipped)
		if a.cust != nil && a.cust.state == nil {
			d.reason = "customer " + a.cust.key + " is unknown; " + d.reason
		}
		e.decide(ctx, d)
		return nil
	}

	prio := r.Notify.Priority
	critical := prio == rules.PriorityCritical
	if !internal {
		// inhibition
		if by, err := e.inhibitedBy(ctx, r, d.ekey, d.customer, d.etype, critical, now); err != nil {
			return err
		} else if by != "" {
			d.verdict, d.reason = policy.VerdictInhibited, by
			e.decide(ctx, d)
			return nil
		}
		// frequency cap
		capped, preempt, why, err := e.frequencyCap(ctx, r, d.customer, int(prio), now)
		if err != nil {
			return err
		}
		if capped {
			d.verdict, d.reason = policy.VerdictCapped, why
			e.decide(ctx, d)
			return nil
		}
		if preempt != "" {
			if err := e.preempt(ctx, preempt, why); err != nil {
				return err
			}
		}
	}

	// quiet hours
	sendAt := now
	deferred := false
	if !internal && !critical {
		loc := e.location(stringField(custState, "timezone"))
		sendAt, deferred = e.qh.Until(now, loc)
	}

	// template
	vars := map[string]any{}
	for _, v := range r.Notify.Vars {
		out, err := e.vm.Run(v.Expr, e.env)
		if err == nil {
			err = rules.CheckValue(out) // vars go to templates and the outbox as JSON
		}
		if err != nil {
			d.verdict, d.reason = policy.VerdictError, "vars."+v.Name+": "+firstLine(err)
			e.decide(ctx, d)
			return nil
		}
		vars[v.Name] = out
	}
	var promise map[string]any
	if r.Promise != nil && a.template == "" {
		promise = map[string]any{"by": sendAt.Add(r.Promise.NextUpdateWithin)}
	}
	tmplName := r.Notify.Template
	if a.template != "" {
		tmplName = a.template
	}
	tmpl := e.set.Load().Templates[tmplName]
	if tmpl == nil {
		d.verdict, d.reason = policy.VerdictError, "unknown template "+tmplName
		e.decide(ctx, d)
		return nil
	}
	data := e.templateData(r, vars, promise)
	locale := policy.ChooseLocale(custState, e.cfg.Defaults.Locale)
	out, err := tmpl.Render(locale, e.cfg.Defaults.Locale, data)
	if err != nil {
		d.verdict, d.reason = policy.VerdictError, "template "+tmplName+": "+err.Error()
		e.decide(ctx, d)
		return nil
	}

	if shadow {
		d.verdict = policy.VerdictShadow
		d.reason = "would send via " + cands[0].Channel
		if deferred {
			d.reason += " at " + sendAt.Format(time.RFC3339) + " (quiet hours)"
		}
		e.decide(ctx, d)
		e.setDedup(r.Name, dedupKey, markUntil, markShadow)
		return nil
	}

	// outbox
	id := e.newID()
	idem := r.Name + "/" + dedupKey
	doc := notifiers.Notification{
		ID: id, IdempotencyKey: idem, Rule: r.Name, Priority: prio.String(),
		To:     notifiers.Recipient{Customer: d.customer},
		Locale: out.Locale, Subject: out.Subject, Body: out.Body, HTML: out.HTML,
		Entity: notifiers.EntityRef{Type: d.etype, Key: d.ekey}, Vars: vars, CreatedAt: now,
	}
	if err := e.enqueue(ctx, &doc, cands, a, sendAt, deferred); err != nil {
		return err
	}
	e.setDedup(r.Name, dedupKey, markUntil, id)
	d.notification = id
	if deferred {
		d.verdict, d.reason = policy.VerdictDeferred, "quiet hours; deferred to "+sendAt.Format(time.RFC3339)
	} else {
		d.verdict, d.reason = policy.VerdictSent, "queued for "+cands[0].Channel
	}
	if len(skipped) > 0 {
		d.reason += "; skipped " + skipReason(skipped)
	}
	e.decide(ctx, d)
	if r.Promise != nil && a.template == "" && a.ent != nil {
		by := sendAt.Add(r.Promise.NextUpdateWithin)
		pt := promiseTimer{Notification: id, Template: r.Promise.Template, Customer: d.customer}
		if a.ev != nil {
			pt.Event = &timerPayload{Subject: a.ev.Subject, ID: a.ev.ID, Time: a.ev.Time, Data: a.ev.Data}
		}
		payload, _ := json.Marshal(pt)
		if prev, err := e.cur.timer(ctx, r.Name, d.etype, d.ekey, timerPromise); err != nil {
			return err
		} else if !prev.IsZero() {
			e.decide(ctx, decision{rule: r, etype: d.etype, ekey: d.ekey, customer: d.customer, verdict: policy.VerdictPromise,
				reason: "kept: newer notification " + id + " went out before " + prev.Format(time.RFC3339), notification: id})
		}
		if err := e.cur.setTimer(ctx, r.Name, d.etype, d.ekey, timerPromise, by, now, payload); err != nil {
			return err
		}
	}
	return nil
}

// Dedup marks of firings that produced no notification.
const (
	markHeldOut = "held-out"
	markShadow  = "shadow"
)

type promiseTimer struct {
	Notification string        `json:"notification"`
	Template     string        `json:"template"`
	Customer     string        `json:"customer"`
	Event        *timerPayload `json:"event,omitempty"`
}

// templateData is what a template of rule r sees. The map is the engine's
// own, filled again for each render: a render reads it and keeps nothing
// of it.
func (e *Engine) templateData(r *rules.Rule, vars, promise map[string]any) map[string]any {
	if e.tmplData == nil {
		e.tmplData = make(map[string]any, len(e.env)+4)
	}
	data := e.tmplData
	clear(data)
	for k, v := range e.env {
		// Templates get data only: no helper (now, sent, count_sent,
		// contacted_within) is callable from a template with `call`.
		if reflect.ValueOf(v).Kind() == reflect.Func {
			continue
		}
		data[k] = v
	}
	data[rules.EnvVars] = vars
	data[rules.EnvRule] = r.Name
	if promise != nil {
		data[rules.EnvPromise] = promise
	}
	return data
}

// enqueue writes the notification to the outbox. An older notification of
// the same rule for the same entity that is still waiting is superseded:
// only the newest goes (no "late / on time / late" flip-flops).
func (e *Engine) enqueue(ctx context.Context, doc *notifiers.Notification, cands []policy.Candidate, a fireArgs, sendAt time.Time, deferred bool) error {
	status := "pending"
	if deferred {
		status = "deferred"
	}
	if doc.Entity.Key != "" && e.outboxKeys.mayHave(doc.Rule, doc.Entity.Key) {
		rows, err := e.cur.reader(tOutbox).QueryContext(ctx, `SELECT id FROM outbox WHERE rule = ? AND ekey = ? AND etype = ? AND status IN ('deferred', 'pending', 'retry')`, doc.Rule, doc.Entity.Key, doc.Entity.Type)
		if err != nil {
			e.cur.fail(err)
			return err
		}
		var older []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err == nil {
				older = append(older, id)
			}
		}
		rows.Close()
		for _, id := range older {
			if err := e.supersede(ctx, id, "replaced by newer notification "+doc.ID); err != nil {
				return err
			}
		}
	}
	candRaw := appendCandidates(nil, cands)
	docRaw := docJSON(doc)
	// Only a deferred notification is re-checked against its trigger
	// (releaseDeferred); the others need not store the event again.
	var trig []byte
	switch {
	case !deferred:
	case a.ev != nil:
		trig, _ = json.Marshal(trigger{Subject: a.ev.Subject, ID: a.ev.ID, Time: a.ev.Time, Data: a.ev.Data})
	default:
		trig, _ = json.Marshal(trigger{Cause: a.cause})
	}
	now := e.now()
	e.outboxKeys.add(doc.Rule, doc.Entity.Key)
	const q = `INSERT INTO outbox (id, idem_key, rule, etype, ekey, customer, priority, status, candidates, hop, attempts, next_at, doc, trigger, recheck, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING`
	insert := func() (bool, error) {
		return e.cur.insertNew(ctx, e.idemKeys, doc.IdempotencyKey, tOutbox, q,
			doc.ID, doc.IdempotencyKey, doc.Rule, doc.Entity.Type, doc.Entity.Key, doc.To.Customer, int(a.rule.Notify.Priority),
			status, candRaw, store.Millis(sendAt), docRaw, trig, boolInt(deferred), store.Millis(now), store.Millis(now))
	}
	inserted, err := insert()
	if err == nil && !inserted {
		// The key was used by an earlier notification of this rule and
		// dedup key (its dedup window has passed): this one is a new
		// notification, so it gets a key of its own. Tried on conflict
		// instead of looked up first: the look-up cost every notification
		// a query for a case that is rare.
		doc.IdempotencyKey += "/" + now.Format(time.RFC3339Nano)
		docRaw = docJSON(doc)
		if inserted, err = insert(); err == nil && !inserted {
			err = fmt.Errorf("outbox: idempotency key %s used twice", doc.IdempotencyKey)
			e.cur.fail(err)
		}
	}
	if err == nil && !deferred {
		e.cur.queued++
	}
	return err
}

func (e *Engine) supersede(ctx context.Context, id, why string) error {
	return e.dropQueued(ctx, id, policy.VerdictSuperseded, why)
}

// dropQueued ends a waiting notification with a verdict (its outbox
// status is the verdict's name) and records the decision.
func (e *Engine) dropQueued(ctx context.Context, id, verdict, why string) error {
	if _, err := e.cur.exec(ctx, `UPDATE outbox SET status = ?, last_error = ?, updated_at = ? WHERE id = ?`, verdict, why, store.Millis(e.now()), id); err != nil {
		return err
	}
	var rule, etype, ekey, cust string
	if err := e.cur.reader(tOutbox).QueryRowContext(ctx, `SELECT rule, etype, ekey, customer FROM outbox WHERE id = ?`, id).Scan(&rule, &etype, &ekey, &cust); err == nil {
		e.decide(ctx, decision{ruleName: rule, etype: etype, ekey: ekey, customer: cust, verdict: verdict, reason: why, notification: id})
	}
	return nil
}

// firstLine drops expr's source snippet from an error for one-line reasons.
func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func skipReason(s []policy.Skip) string {
	if len(s) == 0 {
		return "no channel configured"
	}
	parts := make([]string, len(s))
	for i, k := range s {
		parts[i] = k.Channel + ": " + k.Reason
	}
	return strings.Join(parts, ", ")
}

func stringField(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// dedupVal is a dedup mark as the memo keeps it; notif "" is no mark (or
// one that expired, which stays expired until setDedup writes a new one).
type dedupVal struct {
	notif string
	until int64
	// logID is the dedup log id of a mark not folded yet (pendingMarks).
	logID int64
}

func (e *Engine) dedupMark(ctx context.Context, rule, key string, now time.Time) (string, int64, error) {
	k := [2]string{rule, key}
	v, ok := e.dedupMemo.get(k)
	if !ok {
		// A mark not folded into the table yet (dedupfold.go).
		v, ok = e.pendingMarks[k]
	}
	if !ok && e.dedupKeys.mayHave(rule, key) {
		// The batch writes the dedup table only when it folds the log, at
		// its commit: nothing queued for it to wait for.
		err := e.cur.tx.QueryRowContext(ctx, `SELECT notification, until FROM dedup WHERE rule = ? AND key = ? AND until > ?`, rule, key, store.Millis(now)).Scan(&v.notif, &v.until)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			e.cur.fail(err)
			return "", 0, err
		}
	}
	if !ok {
		e.dedupMemo.put(k, v)
	}
	if v.notif == "" || v.until <= store.Millis(now) {
		return "", 0, nil
	}
	return v.notif, v.until, nil
}

// setDedup sets a mark: in the batch's dedup log rows, and in memory until
// the log is folded into the dedup table (dedupfold.go).
func (e *Engine) setDedup(rule, key string, until int64, notif string) {
	e.dedupKeys.add(rule, key)
	e.logMark(e.cur, rule, key, until, notif)
	e.dedupMemo.put([2]string{rule, key}, dedupVal{notif: notif, until: until})
}

// liveStatuses are outbox states that count as "notified".
const liveStatuses = `('pending', 'retry', 'sending', 'sent', 'deferred')`

// inhibitedBy says what inhibits a notification: a rule in inhibited_by
// that notified this entity (within inhibit_window), or an open support
// contact of the customer (about this entity, or about nothing in
// particular). Critical notifications pass open contacts.
func (e *Engine) inhibitedBy(ctx context.Context, r *rules.Rule, ekey, customer, etype string, critical bool, now time.Time) (string, error) {
	for _, other := range r.InhibitedBy {
		since := int64(0)
		if r.InhibitFor > 0 {
			since = store.Millis(now.Add(-r.InhibitFor))
		}
		if !e.outboxKeys.mayHave(other, ekey) {
			continue
		}
		var id string
		err := e.cur.reader(tOutbox).QueryRowContext(ctx, `SELECT id FROM outbox WHERE rule = ? AND ekey = ? AND status IN `+liveStatuses+` AND created_at >= ? ORDER BY created_at DESC LIMIT 1`, other, ekey, since).Scan(&id)
		if err == nil {
			return "inhibited by rule " + other + " (notification " + id + ")", nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			e.cur.fail(err)
			return "", err
		}
	}
	if critical || customer == "" {
		return "", nil
	}
	open, err := e.openContact(ctx, customer, etype, ekey)
	if err != nil || open == "" {
		return "", err
	}
	return "open support contact " + open, nil
}

// frequencyCap applies the one contact budget per customer.
func (e *Engine) frequencyCap(ctx context.Context, r *rules.Rule, customer string, prio int, now time.Time) (capped bool, preempt, why string, err error) {
	limit := e.cfg.Policy.FrequencyCap.Max
	per := e.cfg.Policy.FrequencyCap.Per.D()
	if r.Cap != nil {
		limit, per = r.Cap.Max, r.Cap.Per
	}
	if limit <= 0 || customer == "" {
		return false, "", "", nil
	}
	rows, err := e.cur.reader(tOutbox).QueryContext(ctx, `SELECT id, priority, status FROM outbox WHERE customer = ? AND created_at >= ? AND status IN `+liveStatuses+` AND priority < ?`,
		customer, store.Millis(now.Add(-per)), int(rules.PriorityCritical))
	if err != nil {
		e.cur.fail(err)
		return false, "", "", err
	}
	var used []policy.Queued
	for rows.Next() {
		var q policy.Queued
		var status string
		if err := rows.Scan(&q.ID, &q.Priority, &status); err != nil {
			rows.Close()
			e.cur.fail(err)
			return false, "", "", err
		}
		q.Sent = status == "sent" || status == "sending"
		used = append(used, q)
	}
	rows.Close()
	res := policy.Cap(limit, prio, int(rules.PriorityCritical), used)
	budget := fmt.Sprintf("budget %d per %s spent (%d used)", limit, per, len(used))
	if !res.Allow {
		return true, "", budget, nil
	}
	if res.Preempt != "" {
		return false, res.Preempt, budget + "; pre-empted by higher-priority rule " + r.Name, nil
	}
	return false, "", "", nil
}

func (e *Engine) preempt(ctx context.Context, id, why string) error {
	return e.dropQueued(ctx, id, policy.VerdictCapped, why)
}

// History helpers for expressions. They read through the open transaction,
// so notifications decided earlier in the same batch count.

func (e *Engine) sentFn(rule, key string) bool { return e.countSentFn(rule, key) > 0 }

func (e *Engine) countSentFn(rule, key string) int {
	if e.cur == nil {
		return 0
	}
	if !e.outboxKeys.mayHave(rule, key) {
		return 0
	}
	var n int
	if err := e.cur.reader(tOutbox).QueryRow(`SELECT count(*) FROM outbox WHERE rule = ? AND ekey = ? AND status IN `+liveStatuses, rule, key).Scan(&n); err != nil {
		e.cur.fail(err)
	}
	return n
}

func (e *Engine) contactedWithinFn(d time.Duration) bool {
	cust, _ := e.env[rules.EnvCustomer].(map[string]any)
	if e.cur == nil || cust == nil {
		return false
	}
	key := e.currentCustomer
	if key == "" {
		return false
	}
	var n int
	if err := e.cur.reader(tOutbox).QueryRow(`SELECT count(*) FROM outbox WHERE customer = ? AND created_at >= ? AND status IN `+liveStatuses, key, store.Millis(e.now().Add(-d))).Scan(&n); err != nil {
		e.cur.fail(err)
	}
	return n > 0
}
