package explain

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
)

// inChunk bounds the parameters of one `IN (…)` list (SQLite allows
// 32766; smaller statements are cheaper to prepare).
const inChunk = 500

// journal returns the newest lim events of an entity, oldest first, and
// whether older ones were left out.
func journal(ctx context.Context, db *sql.DB, ref Ref, lim int) ([]Event, bool, error) {
	rows, more, err := store.JournalEvents(ctx, db, ref.Type, ref.Key, lim)
	if err != nil {
		return nil, false, err
	}
	if len(rows) == 0 {
		return nil, more, nil // as a query without rows: no events, not an empty list
	}
	out := make([]Event, len(rows))
	for i, r := range rows {
		ev := Event{At: store.FromMillis(r.At), Seq: r.Seq, Subject: r.Subject, ID: r.MsgID, Entity: ref}
		if json.Valid(r.Data) {
			ev.Data = json.RawMessage(r.Data)
		}
		out[len(rows)-1-i] = ev // newest first → oldest first
	}
	return out, more, nil
}

const decisionCols = `id, at, rule, etype, ekey, customer, verdict, reason, notification, event, mode`

func scanDecision(rows *sql.Rows) (Decision, error) {
	var d Decision
	var at int64
	err := rows.Scan(&d.ID, &at, &d.Rule, &d.Entity.Type, &d.Entity.Key, &d.Customer, &d.Verdict, &d.Reason, &d.Notification, &d.Event, &d.Mode)
	d.At = store.FromMillis(at)
	if d.Notification == dedupHeldOut || d.Notification == dedupShadow {
		// A repeat of a held-out or shadow firing: the engine's dedup mark
		// names no notification (the reason says which it was).
		d.Notification = ""
	}
	return d, err
}

// Placeholders the engine keeps in a dedup mark instead of a notification
// id when the first firing sent nothing.
const (
	dedupHeldOut = "held-out"
	dedupShadow  = "shadow"
)

// queryDecisions returns the newest lim decisions matching where, oldest
// first, and whether older ones were left out.
func queryDecisions(ctx context.Context, db *sql.DB, lim int, where string, args ...any) ([]Decision, bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+decisionCols+` FROM decisions `+where+` ORDER BY id DESC LIMIT ?`, append(args, lim+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("decisions: %w", err)
	}
	defer rows.Close()
	var out []Decision
	for rows.Next() {
		d, err := scanDecision(rows)
		if err != nil {
			return nil, false, fmt.Errorf("decisions: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("decisions: %w", err)
	}
	more := len(out) > lim
	if more {
		out = out[:lim]
	}
	slices.Reverse(out)
	return out, more, nil
}

func strs(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const notificationCols = `id, idem_key, rule, etype, ekey, customer, priority, status, candidates, hop, attempts, next_at, doc, last_error, created_at, updated_at, sent_at`

// doc is the part of the stored notification document explain shows.
type doc struct {
	Priority string         `json:"priority"`
	Locale   string         `json:"locale"`
	Subject  string         `json:"subject"`
	Body     string         `json:"body"`
	Vars     map[string]any `json:"vars"`
}

func scanNotification(rows *sql.Rows) (Notification, error) {
	var (
		n                              Notification
		prio, hop                      int
		cands, raw                     []byte
		nextAt, created, updated, sent int64
	)
	if err := rows.Scan(&n.ID, &n.IdempotencyKey, &n.Rule, &n.Entity.Type, &n.Entity.Key, &n.Customer, &prio, &n.Status,
		&cands, &hop, &n.Attempts, &nextAt, &raw, &n.LastError, &created, &updated, &sent); err != nil {
		return n, err
	}
	var cs []policy.Candidate
	_ = json.Unmarshal(cands, &cs) // a corrupt row still shows its status
	n.Channels = make([]string, len(cs))
	for i, c := range cs {
		n.Channels[i] = c.Channel
	}
	if hop >= 0 && hop < len(cs) {
		n.Channel, n.Address = cs[hop].Channel, cs[hop].Address
	}
	var d doc
	_ = json.Unmarshal(raw, &d)
	n.Priority, n.Locale, n.Subject, n.Body, n.Vars = d.Priority, d.Locale, d.Subject, d.Body, d.Vars
	if n.Priority == "" {
		n.Priority = priorityName(prio)
	}
	n.CreatedAt, n.UpdatedAt, n.SentAt = store.FromMillis(created), store.FromMillis(updated), timePtr(sent)
	if n.Status == "deferred" || n.Status == "retry" {
		n.NextAt = timePtr(nextAt)
	}
	return n, nil
}

// priorityName mirrors rules.Priority's names (the outbox stores the
// number, the document the name).
func priorityName(p int) string {
	switch p {
	case 0:
		return "low"
	case 2:
		return "high"
	case 3:
		return "critical"
	}
	return "normal"
}

// queryNotifications returns the newest lim outbox rows matching where,
// newest first, and whether older ones were left out.
func queryNotifications(ctx context.Context, db *sql.DB, lim int, where string, args ...any) ([]Notification, bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+notificationCols+` FROM outbox `+where+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, lim+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("notifications: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, false, fmt.Errorf("notifications: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("notifications: %w", err)
	}
	more := len(out) > lim
	if more {
		out = out[:lim]
	}
	return out, more, nil
}

// notificationsByID loads the newest lim of the given outbox ids (ids are
// time-ordered), newest first, with their attempts. Unknown ids (a dedup
// mark of a held-out or shadow firing) are skipped.
func notificationsByID(ctx context.Context, db *sql.DB, ids []string, lim int) ([]Notification, error) {
	ids = slices.Clone(ids)
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	if len(ids) > lim {
		ids = ids[:lim]
	}
	var out []Notification
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), inChunk)]
		ids = ids[len(chunk):]
		ns, _, err := queryNotifications(ctx, db, len(chunk), `WHERE id IN (`+store.Placeholders(len(chunk))+`)`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		out = append(out, ns...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, attachAttempts(ctx, db, out)
}

// attachAttempts fills each notification's AttemptLog.
func attachAttempts(ctx context.Context, db *sql.DB, notes []Notification) error {
	if len(notes) == 0 {
		return nil
	}
	idx := make(map[string]int, len(notes))
	ids := make([]string, len(notes))
	for i, n := range notes {
		idx[n.ID] = i
		ids[i] = n.ID
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), inChunk)]
		ids = ids[len(chunk):]
		rows, err := db.QueryContext(ctx, `SELECT id, notification, at, channel, attempt, ok, retry, error, millis FROM attempts WHERE notification IN (`+store.Placeholders(len(chunk))+`) ORDER BY id`, anys(chunk)...)
		if err != nil {
			return fmt.Errorf("attempts: %w", err)
		}
		for rows.Next() {
			var a Attempt
			var at int64
			if err := rows.Scan(&a.ID, &a.Notification, &at, &a.Channel, &a.Attempt, &a.OK, &a.Retry, &a.Error, &a.DurationMS); err != nil {
				rows.Close()
				return fmt.Errorf("attempts: %w", err)
			}
			a.At = store.FromMillis(at)
			if i, ok := idx[a.Notification]; ok {
				notes[i].AttemptLog = append(notes[i].AttemptLog, a)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("attempts: %w", err)
		}
	}
	return nil
}

// timersOf returns the pending timers of the given entities. The timers
// table is keyed (rule, etype, ekey, kind) with no index by entity; every
// timer is set together with a decision of its rule about its entity
// (armed, pending, sent with a promise), so the entity's decisions name the
// rules to look up by primary key.
func timersOf(ctx context.Context, db *sql.DB, refs []Ref) ([]Timer, error) {
	var out []Timer
	for _, ref := range refs {
		in, args := store.DecisionsIn(store.ByEntity(ref.Type, ref.Key))
		ruleNames, err := strs(ctx, db, `SELECT DISTINCT rule FROM decisions WHERE `+in+` AND etype = ? AND ekey = ?`, append(args, ref.Type, ref.Key)...)
		if err != nil {
			return nil, fmt.Errorf("timers: %w", err)
		}
		for _, rule := range ruleNames {
			rows, err := db.QueryContext(ctx, `SELECT kind, due, armed_at, payload FROM timers WHERE rule = ? AND etype = ? AND ekey = ?`, rule, ref.Type, ref.Key)
			if err != nil {
				return nil, fmt.Errorf("timers: %w", err)
			}
			for rows.Next() {
				t := Timer{Rule: rule, Entity: ref}
				var due, armed int64
				var payload []byte
				if err := rows.Scan(&t.Kind, &due, &armed, &payload); err != nil {
					rows.Close()
					return nil, fmt.Errorf("timers: %w", err)
				}
				t.Due, t.ArmedAt = store.FromMillis(due), store.FromMillis(armed)
				if t.Kind == "promise" {
					var p struct {
						Notification string `json:"notification"`
					}
					_ = json.Unmarshal(payload, &p)
					t.Notification = p.Notification
				}
				out = append(out, t)
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return nil, fmt.Errorf("timers: %w", err)
			}
		}
	}
	return out, nil
}

// queryContacts returns the newest lim support contacts matching where,
// oldest first, and whether older ones were left out.
func queryContacts(ctx context.Context, db *sql.DB, lim int, where string, args ...any) ([]Contact, bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, at, customer, etype, ekey, topic, channel, status, contact_id FROM contacts `+where+` ORDER BY at DESC, id DESC LIMIT ?`, append(args, lim+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("contacts: %w", err)
	}
	defer rows.Close()
	var out []Contact
	for rows.Next() {
		var c Contact
		var at int64
		var ref Ref
		if err := rows.Scan(&c.ID, &at, &c.Customer, &ref.Type, &ref.Key, &c.Topic, &c.Channel, &c.Status, &c.ContactID); err != nil {
			return nil, false, fmt.Errorf("contacts: %w", err)
		}
		c.At = store.FromMillis(at)
		if !ref.IsZero() {
			c.Entity = &ref
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("contacts: %w", err)
	}
	more := len(out) > lim
	if more {
		out = out[:lim]
	}
	slices.Reverse(out)
	return out, more, nil
}

// assemble merges the parts into time-ordered items. At equal times the
// causal order is: the event, then contacts, the verdicts it caused, the
// delivery attempts, their outcomes, and last the timers still pending.
func (tl *Timeline) assemble(events []Event, decisions []Decision, notes []Notification, timers []Timer, contacts []Contact) {
	type ranked struct {
		it   Item
		rank int
	}
	var all []ranked
	for i := range events {
		all = append(all, ranked{Item{At: events[i].At, Kind: KindEvent, Event: &events[i]}, 0})
	}
	for i := range contacts {
		all = append(all, ranked{Item{At: contacts[i].At, Kind: KindContact, Contact: &contacts[i]}, 1})
	}
	for i := range decisions {
		rank := 2
		if isOutcome(decisions[i].Verdict) {
			rank = 4
		}
		all = append(all, ranked{Item{At: decisions[i].At, Kind: KindDecision, Decision: &decisions[i]}, rank})
	}
	// Attempts of the notifications shown, oldest notification first so
	// ties keep their order.
	for i := len(notes) - 1; i >= 0; i-- {
		for j := range notes[i].AttemptLog {
			a := &notes[i].AttemptLog[j]
			all = append(all, ranked{Item{At: a.At, Kind: KindAttempt, Attempt: a}, 3})
		}
	}
	for i := range timers {
		all = append(all, ranked{Item{At: timers[i].Due, Kind: KindTimer, Timer: &timers[i]}, 5})
	}
	sort.SliceStable(all, func(i, j int) bool {
		if !all[i].it.At.Equal(all[j].it.At) {
			return all[i].it.At.Before(all[j].it.At)
		}
		return all[i].rank < all[j].rank
	})
	tl.Items = make([]Item, len(all))
	for i, r := range all {
		tl.Items[i] = r.it
	}
	if notes == nil {
		notes = []Notification{}
	}
	tl.Notifications = notes
}

// isOutcome: verdicts the outbox records after a delivery attempt.
func isOutcome(verdict string) bool {
	return verdict == policy.VerdictDelivered || verdict == policy.VerdictFallback || verdict == policy.VerdictFailed
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func timePtr(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := store.FromMillis(ms)
	return &t
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
