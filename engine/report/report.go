// Package report measures whether proactive notifications cut repeat
// support contacts (`proactived report`, GET /api/v1/report).
//
// For each rule it compares the entities the rule fired for in a period:
// the treated arm (the notification went out) against the control arm
// (held out by the rule's `holdout:`, decided and recorded but never
// sent). The outcome is whether the customer contacted support about the
// entity (or at all, By: customer) within Window after the fire time. The
// holdout is a hash of (rule, entity key), so which arm an entity lands in
// has nothing to do with the customer, and the difference of the two
// contact rates is an unbiased estimate of what the message changes.
//
// The absolute reduction (control rate − treated rate) carries a 95%
// Newcombe hybrid score interval (Wilson intervals for each rate, method
// 10 of Newcombe 1998); the relative reduction (1 − treated/control) the
// MOVER-R interval built on the same Wilson intervals; contacts avoided is
// the absolute reduction (and its interval) times the treated count. See
// stats.go for the formulas and docs/report.md for how to read the output.
package report

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// Grouping of contacts: who must have contacted support for an entity to
// count as contacted.
const (
	// ByEntity counts contacts about the entity (its type and key), and the
	// customer's contacts that name no entity at all.
	ByEntity = "entity"
	// ByCustomer counts every contact of the entity's customer.
	ByCustomer = "customer"
)

// DefaultWindow is how long after the fire time contacts are counted.
const DefaultWindow = 7 * 24 * time.Hour

// The minimum sample for a verdict. Below it the report still shows the
// numbers, but says "not enough data yet": with fewer than MinArm
// entities in an arm, or fewer than MinExpected expected contacts (or
// non-contacts) in an arm under the pooled rate, the intervals are too
// wide to act on and the normal approximation behind the Wilson interval
// is at its weakest (the classic n·p ≥ 5 rule).
const (
	MinArm      = 30
	MinExpected = 5.0
)

// Verdict codes (stable, for machines) and their plain-language text.
const (
	CodeNotEnoughData = "not_enough_data"
	CodeReduces       = "reduces"
	CodeNoEffect      = "no_effect"
	CodeIncreases     = "increases"

	VerdictNotEnoughData = "not enough data yet"
	VerdictReduces       = "cuts repeat contacts"
	VerdictNoEffect      = "no measurable effect"
	VerdictIncreases     = "increases contacts"
)

// Options select what is measured.
type Options struct {
	// Since and Until bound the fire times (Since inclusive, Until
	// exclusive). Zero Since = from the beginning; zero Until = now.
	Since, Until time.Time
	// Window is how long after the fire time contacts count (default 7d).
	Window time.Duration
	// Rule limits the per-rule section to one rule ("" = all).
	Rule string
	// By is ByEntity (default) or ByCustomer.
	By string
	// Topic counts only contacts with this topic (e.g. order_status);
	// "" = any topic.
	Topic string
	// Clock supplies "now" (default: the wall clock).
	Clock clock.Clock
}

// Report is the outcome. Numbers that do not exist (a rate of an empty
// arm, a ratio over a zero control rate) are null in JSON.
type Report struct {
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	Window      string    `json:"window"`
	WindowHours float64   `json:"window_hours"`
	By          string    `json:"by"`
	Topic       string    `json:"topic,omitempty"`
	Rule        string    `json:"rule,omitempty"`
	Confidence  float64   `json:"confidence"`
	Method      string    `json:"method"`
	MinArm      int       `json:"min_arm"`
	MinExpected float64   `json:"min_expected"`
	Rules       []Rule    `json:"rules"`
	Overall     Overall   `json:"overall"`
}

// Rule is one rule's comparison.
type Rule struct {
	Rule    string `json:"rule"`
	Treated Arm    `json:"treated"`
	Control Arm    `json:"control"`
	// AbsoluteReduction is control rate − treated rate (positive: fewer
	// contacts when notified), with the Newcombe 95% interval.
	AbsoluteReduction Estimate `json:"absolute_reduction"`
	// RelativeReduction is 1 − treated rate / control rate, with the
	// interval from MOVER-R on the rate ratio.
	RelativeReduction Estimate `json:"relative_reduction"`
	// ContactsAvoided is AbsoluteReduction × Treated.N: entities of the
	// treated arm that did not contact support because they were told.
	ContactsAvoided Estimate `json:"contacts_avoided"`
	Verdict         string   `json:"verdict"`
	VerdictCode     string   `json:"verdict_code"`
	// Why explains a "not enough data yet".
	Why string `json:"why,omitempty"`
	// ControlInhibited counts held-out entities left out of the control
	// arm because an open support contact would have inhibited their
	// notification (as it did for treated entities, which are then in
	// no arm either).
	ControlInhibited int `json:"control_inhibited"`
	// OpenWindows counts entities fired less than Window ago: their
	// contacts may still come (equally in both arms, so the comparison
	// stays fair, but the rates are not final).
	OpenWindows int `json:"open_windows"`
}

// Arm is one group of entities.
type Arm struct {
	N         int `json:"n"`
	Contacted int `json:"contacted"` // entities with ≥ 1 contact in the window
	Contacts  int `json:"contacts"`  // contacts counted in their windows
	// Rate is Contacted / N with its Wilson 95% interval.
	Rate Estimate `json:"rate"`
}

// Overall compares every entity notified by any rule in the period with
// the entities that had events but no notification. It is descriptive,
// not causal: entities get notified because something went wrong with
// them. The per-rule holdout comparison is the causal one.
type Overall struct {
	Notified    Group `json:"notified"`
	NotNotified Group `json:"not_notified"`
}

// Group is a set of entities and their contacts.
type Group struct {
	Entities  int `json:"entities"`
	Contacted int `json:"contacted"`
	Contacts  int `json:"contacts"`
	// Rate is the share of entities with ≥ 1 contact.
	Rate Num `json:"rate"`
	// Per100 is contacts per 100 entities.
	Per100 Num `json:"per_100"`
}

// Estimate is a value with a 95% interval.
type Estimate struct {
	Value Num `json:"value"`
	Low   Num `json:"low"`
	High  Num `json:"high"`
}

// Num is a float that is null in JSON when it is not a finite number.
type Num float64

// MarshalJSON writes null for NaN and ±Inf (JSON has no such numbers).
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(math.Round(f*1e6) / 1e6)
}

// UnmarshalJSON reads null as NaN.
func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Num(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = Num(f)
	return nil
}

// Valid reports whether n is a finite number.
func (n Num) Valid() bool { return !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) }

var nan = Num(math.NaN())

// Compute builds the report from the store: db may be the daemon's
// read-only pool or a read-only handle on the file (it only reads).
func Compute(ctx context.Context, db *sql.DB, o Options) (*Report, error) {
	if db == nil {
		return nil, errors.New("report: no database")
	}
	if o.Clock == nil {
		o.Clock = clock.Wall{}
	}
	now := o.Clock.Now()
	if o.Until.IsZero() {
		o.Until = now
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Window < 0 {
		return nil, fmt.Errorf("report: window %s is negative", o.Window)
	}
	switch o.By {
	case "":
		o.By = ByEntity
	case ByEntity, ByCustomer:
	default:
		return nil, fmt.Errorf("report: by %q: want %s or %s", o.By, ByEntity, ByCustomer)
	}
	if !o.Since.IsZero() && !o.Until.After(o.Since) {
		return nil, fmt.Errorf("report: until %s is not after since %s", o.Until.Format(time.RFC3339), o.Since.Format(time.RFC3339))
	}
	since, until := store.Millis(o.Since), store.Millis(o.Until)
	win := o.Window.Milliseconds()

	cs, err := loadContacts(ctx, db, since-win, until+win, o.Topic, win)
	if err != nil {
		return nil, err
	}
	count := func(etype, ekey, customer string, from int64) int {
		to := from + win
		if o.By == ByCustomer && customer != "" {
			return countIn(cs.byCustomer[customer], from, to)
		}
		n := countIn(cs.byEntity[etype+"\x00"+ekey], from, to)
		if customer != "" {
			n += countIn(cs.noEntity[customer], from, to)
		}
		return n
	}

	rep := &Report{
		Since: o.Since.UTC(), Until: o.Until.UTC(), Window: formatWindow(o.Window), WindowHours: o.Window.Hours(),
		By: o.By, Topic: o.Topic, Rule: o.Rule, Confidence: 0.95,
		Method: "absolute: Newcombe hybrid score (Wilson) interval; relative: MOVER-R (Wilson) interval on the rate ratio",
		MinArm: MinArm, MinExpected: MinExpected, Rules: []Rule{},
	}
	fires, err := loadFires(ctx, db, since, until, o.Rule)
	if err != nil {
		return nil, err
	}
	for _, f := range fires {
		var treated, control armCount
		open, excluded := 0, 0
		for _, e := range f.entities {
			if e.heldOut {
				// Mirror the policy: a treated entity whose customer has
				// an open contact at fire time is inhibited, never sent,
				// and so in no arm; its held-out twin must not be either.
				inh, err := openContactAt(ctx, db, e.customer, e.etype, e.ekey, e.at)
				if err != nil {
					return nil, err
				}
				if inh {
					excluded++
					continue
				}
			}
			n := count(e.etype, e.ekey, e.customer, e.at)
			arm := &treated
			if e.heldOut {
				arm = &control
			}
			arm.n++
			arm.contacts += n
			if n > 0 {
				arm.contacted++
			}
			if e.at+win > store.Millis(now) {
				open++
			}
		}
		r := compare(f.rule, treated, control)
		r.OpenWindows = open
		r.ControlInhibited = excluded
		rep.Rules = append(rep.Rules, r)
	}

	rep.Overall, err = overall(ctx, db, since, until, count)
	if err != nil {
		return nil, err
	}
	return rep, nil
}

type armCount struct{ n, contacted, contacts int }

// compare turns two arms into rates, intervals and a verdict.
func compare(rule string, t, c armCount) Rule {
	r := Rule{Rule: rule, Treated: arm(t), Control: arm(c)}
	if t.n > 0 && c.n > 0 {
		d, lo, hi := Newcombe(c.contacted, c.n, t.contacted, t.n, Z95)
		r.AbsoluteReduction = Estimate{Num(d), Num(lo), Num(hi)}
		nt := float64(t.n)
		r.ContactsAvoided = Estimate{Num(d * nt), Num(lo * nt), Num(hi * nt)}
	} else {
		r.AbsoluteReduction = Estimate{nan, nan, nan}
		r.ContactsAvoided = Estimate{nan, nan, nan}
	}
	// Relative reduction 1 − φ with φ = treated/control: the interval of φ
	// maps to (1 − U, 1 − L).
	if ratio, lo, hi, ok := RatioMOVER(t.contacted, t.n, c.contacted, c.n, Z95); ok {
		r.RelativeReduction = Estimate{Num(1 - ratio), Num(1 - hi), Num(1 - lo)}
	} else {
		r.RelativeReduction = Estimate{nan, nan, nan}
	}
	r.VerdictCode, r.Why = verdict(t, c, r.AbsoluteReduction)
	r.Verdict = verdictText(r.VerdictCode)
	return r
}

func arm(a armCount) Arm {
	out := Arm{N: a.n, Contacted: a.contacted, Contacts: a.contacts, Rate: Estimate{nan, nan, nan}}
	if a.n > 0 {
		lo, hi := Wilson(a.contacted, a.n, Z95)
		out.Rate = Estimate{Num(float64(a.contacted) / float64(a.n)), Num(lo), Num(hi)}
	}
	return out
}

// verdict applies the minimum sample rule, then reads the interval of
// the absolute reduction: above 0 → fewer contacts, below 0 → more,
// straddling 0 → no measurable effect.
func verdict(t, c armCount, abs Estimate) (code, why string) {
	switch {
	case c.n == 0:
		return CodeNotEnoughData, "no held-out entities: give the rule a holdout (e.g. holdout: 10%) to measure it"
	case c.n < MinArm || t.n < MinArm:
		return CodeNotEnoughData, fmt.Sprintf("%d notified and %d held out; at least %d in each are needed", t.n, c.n, MinArm)
	}
	pooled := float64(t.contacted+c.contacted) / float64(t.n+c.n)
	small := math.MaxFloat64
	for _, n := range []int{t.n, c.n} {
		small = min(small, float64(n)*pooled, float64(n)*(1-pooled))
	}
	if small < MinExpected {
		return CodeNotEnoughData, fmt.Sprintf("too few contacts (or non-contacts) to compare: %.1f expected in the smaller arm, at least %g needed", small, MinExpected)
	}
	switch {
	case float64(abs.Low) > 0:
		return CodeReduces, ""
	case float64(abs.High) < 0:
		return CodeIncreases, ""
	}
	return CodeNoEffect, ""
}

func verdictText(code string) string {
	switch code {
	case CodeReduces:
		return VerdictReduces
	case CodeIncreases:
		return VerdictIncreases
	case CodeNoEffect:
		return VerdictNoEffect
	}
	return VerdictNotEnoughData
}

// contacts indexes support contacts by what they are about; every slice
// holds times (Unix ms) in ascending order.
type contacts struct {
	byEntity   map[string][]int64 // "type\x00key"
	byCustomer map[string][]int64 // every contact of the customer
	noEntity   map[string][]int64 // the customer's contacts that name no entity
}

// loadContacts reads the contacts in [from, to). A contact is counted
// once: its `opened` row. A `closed` row counts only when the contact was
// never seen opened (a helpdesk that reports contacts when they close) —
// neither by its id nor, for producers without ids, as an opened contact
// of the same customer about the same thing within the window before.
func loadContacts(ctx context.Context, db *sql.DB, from, to int64, topic string, win int64) (*contacts, error) {
	q := `SELECT at, customer, etype, ekey, status, contact_id FROM contacts WHERE at >= ? AND at < ?`
	args := []any{from, to}
	if topic != "" {
		q += ` AND topic = ?`
		args = append(args, topic)
	}
	rows, err := db.QueryContext(ctx, q+` ORDER BY at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: read contacts: %w", err)
	}
	defer rows.Close()
	cs := &contacts{byEntity: map[string][]int64{}, byCustomer: map[string][]int64{}, noEntity: map[string][]int64{}}
	openedIDs := map[string]bool{}
	lastOpened := map[string]int64{}
	for rows.Next() {
		var at int64
		var customer, etype, ekey, status, id string
		if err := rows.Scan(&at, &customer, &etype, &ekey, &status, &id); err != nil {
			return nil, fmt.Errorf("report: read contacts: %w", err)
		}
		about := customer + "\x00" + etype + "\x00" + ekey
		if status == "closed" {
			if openedIDs[id] {
				continue
			}
			if t, ok := lastOpened[about]; ok && at-t <= win {
				continue
			}
		} else {
			openedIDs[id] = true
			lastOpened[about] = at
		}
		if etype != "" {
			k := etype + "\x00" + ekey
			cs.byEntity[k] = append(cs.byEntity[k], at)
		} else if customer != "" {
			cs.noEntity[customer] = append(cs.noEntity[customer], at)
		}
		if customer != "" {
			cs.byCustomer[customer] = append(cs.byCustomer[customer], at)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: read contacts: %w", err)
	}
	return cs, nil
}

// countIn counts the times in [from, to) of an ascending slice.
func countIn(ts []int64, from, to int64) int {
	if len(ts) == 0 {
		return 0
	}
	i := sort.Search(len(ts), func(i int) bool { return ts[i] >= from })
	j := sort.Search(len(ts), func(i int) bool { return ts[i] >= to })
	return j - i
}

// openContactAt mirrors the engine's inhibition by an open contact: the
// customer's latest contact about the entity, or about nothing in
// particular, at or before t is still open.
func openContactAt(ctx context.Context, db *sql.DB, customer, etype, ekey string, t int64) (bool, error) {
	if customer == "" {
		return false, nil
	}
	refs := [][2]string{{"", ""}}
	if etype != "" {
		refs = append(refs, [2]string{etype, ekey})
	}
	for _, ref := range refs {
		var status string
		err := db.QueryRowContext(ctx, `SELECT status FROM contacts WHERE customer = ? AND etype = ? AND ekey = ? AND at <= ? ORDER BY at DESC, id DESC LIMIT 1`,
			customer, ref[0], ref[1], t).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("report: read contacts: %w", err)
		}
		if status == "opened" {
			return true, nil
		}
	}
	return false, nil
}

// fire is an entity's first decision of a rule in the period.
type fire struct {
	etype, ekey, customer string
	at                    int64
	heldOut               bool
}

type ruleFires struct {
	rule     string
	entities []fire
}

// loadFires finds, per rule and entity, the first decision in [since,
// until) that assigned the entity to an arm: held_out (control), or sent
// or deferred (treated — a deferred notification waits out quiet hours
// and is sent later; its decision time is the fire time, as the held-out
// decision's is). Shadow-mode decisions and notifications with no
// customer (internal, to ops) are left out: they send nothing to a
// customer either way.
func loadFires(ctx context.Context, db *sql.DB, since, until int64, rule string) ([]ruleFires, error) {
	q := `SELECT at, rule, etype, ekey, customer, verdict FROM decisions
		WHERE verdict IN (?, ?, ?) AND mode = 'live' AND customer != '' AND at >= ? AND at < ?`
	args := []any{policy.VerdictSent, policy.VerdictDeferred, policy.VerdictHeldOut, since, until}
	if rule != "" {
		// The decision index narrows the rows read to the rule's.
		in, a := store.DecisionsIn(store.ByRule(rule))
		q += ` AND rule = ? AND ` + in
		args = append(append(args, rule), a...)
	}
	rows, err := db.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: read decisions: %w", err)
	}
	defer rows.Close()
	byRule := map[string]*ruleFires{}
	seen := map[string]bool{}
	for rows.Next() {
		var f fire
		var r, verdict string
		if err := rows.Scan(&f.at, &r, &f.etype, &f.ekey, &f.customer, &verdict); err != nil {
			return nil, fmt.Errorf("report: read decisions: %w", err)
		}
		k := r + "\x00" + f.etype + "\x00" + f.ekey
		if seen[k] {
			continue
		}
		seen[k] = true
		f.heldOut = verdict == policy.VerdictHeldOut
		rf := byRule[r]
		if rf == nil {
			rf = &ruleFires{rule: r}
			byRule[r] = rf
		}
		rf.entities = append(rf.entities, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: read decisions: %w", err)
	}
	out := make([]ruleFires, 0, len(byRule))
	for _, rf := range byRule {
		out = append(out, *rf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rule < out[j].rule })
	return out, nil
}

// overall splits the entities seen in the period into notified (a
// notification to their customer went out: sent, or released after quiet
// hours) and not notified (created in the period, no notification), and
// counts contacts within the window after the first notification, or
// after the entity's first event for the not-notified.
func overall(ctx context.Context, db *sql.DB, since, until int64, count func(etype, ekey, customer string, from int64) int) (Overall, error) {
	type ent struct {
		customer string
		at       int64
		notified bool
	}
	ents := map[[2]string]*ent{}
	rows, err := db.QueryContext(ctx, `SELECT at, etype, ekey, customer, verdict FROM decisions
		WHERE customer != '' AND ekey != '' AND mode = 'live' AND at >= ? AND at < ? ORDER BY id`, since, until)
	if err != nil {
		return Overall{}, fmt.Errorf("report: read decisions: %w", err)
	}
	for rows.Next() {
		var at int64
		var etype, ekey, customer, verdict string
		if err := rows.Scan(&at, &etype, &ekey, &customer, &verdict); err != nil {
			rows.Close()
			return Overall{}, fmt.Errorf("report: read decisions: %w", err)
		}
		k := [2]string{etype, ekey}
		e := ents[k]
		if e == nil {
			e = &ent{customer: customer}
			ents[k] = e
		}
		if !e.notified && (verdict == policy.VerdictSent || verdict == policy.VerdictReleased) {
			e.notified, e.at, e.customer = true, at, customer
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Overall{}, fmt.Errorf("report: read decisions: %w", err)
	}
	// Entities first seen in the period. Those the decisions above named
	// without notifying them (held out, capped, …) join here too; their
	// customer comes from the decision, else from the state's customer_id.
	rows, err = db.QueryContext(ctx, `SELECT type, key, created_at, state FROM entities WHERE type != ? AND created_at >= ? AND created_at < ?`,
		rules.EnvCustomer, since, until)
	if err != nil {
		return Overall{}, fmt.Errorf("report: read entities: %w", err)
	}
	var notNotified []*ent
	var keys [][2]string
	for rows.Next() {
		var typ, key string
		var created int64
		var state []byte
		if err := rows.Scan(&typ, &key, &created, &state); err != nil {
			rows.Close()
			return Overall{}, fmt.Errorf("report: read entities: %w", err)
		}
		k := [2]string{typ, key}
		e := ents[k]
		if e != nil && e.notified {
			continue
		}
		if e == nil {
			e = &ent{customer: stateCustomer(state)}
		}
		e.at = created
		notNotified = append(notNotified, e)
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Overall{}, fmt.Errorf("report: read entities: %w", err)
	}
	var out Overall
	for k, e := range ents {
		if e.notified {
			addTo(&out.Notified, count(k[0], k[1], e.customer, e.at))
		}
	}
	for i, e := range notNotified {
		addTo(&out.NotNotified, count(keys[i][0], keys[i][1], e.customer, e.at))
	}
	for _, g := range []*Group{&out.Notified, &out.NotNotified} {
		g.Rate, g.Per100 = nan, nan
		if g.Entities > 0 {
			g.Rate = Num(float64(g.Contacted) / float64(g.Entities))
			g.Per100 = Num(100 * float64(g.Contacts) / float64(g.Entities))
		}
	}
	return out, nil
}

func addTo(g *Group, n int) {
	g.Entities++
	g.Contacts += n
	if n > 0 {
		g.Contacted++
	}
}

// stateCustomer reads the customer key from an entity's stored state
// (customer_id, else customer), "" when it has none.
func stateCustomer(raw []byte) string {
	var s struct {
		CustomerID any `json:"customer_id"`
		Customer   any `json:"customer"`
	}
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	for _, v := range []any{s.CustomerID, s.Customer} {
		switch v.(type) {
		case string, float64:
			if k := event.KeyString(v); k != "" {
				return k
			}
		}
	}
	return ""
}

// formatWindow prints whole days as "7d", like rule files do.
func formatWindow(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
