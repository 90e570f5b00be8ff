// Package explain reads what the engine recorded in the store — entity
// snapshots, the event journal, decisions, the outbox with its delivery
// attempts, timers and support contacts — and answers "why": an entity's
// (or a customer's) timeline for `proactived explain` and the HTTP API, and
// the filtered, paged lists behind /api/v1/decisions, /api/v1/notifications
// and the per-rule counters of /api/v1/rules.
//
// It only reads, through any *sql.DB on the store's file (the daemon's
// read-only pool, or OpenReadOnly beside a running daemon: WAL lets readers
// run beside the one writer). Timelines are found through the indexes of
// the schema in engine/store (entity, customer, notification id); lists are
// paged by id cursors; the rule counters are one GROUP BY over decisions.
package explain

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/store"
)

// CustomerType is the entity type that holds customers' contact data and
// preferences (SPEC.md "Customers, consent and delivery policy").
const CustomerType = "customer"

// DefaultLimit bounds each part of a timeline (journal, decisions,
// notifications, contacts): the newest entries are kept and Truncated says
// that older ones were left out.
const DefaultLimit = 500

// ErrNotFound: the store has no state and no record at all about the
// entity or customer.
var ErrNotFound = errors.New("nothing recorded")

// Ref names an entity.
type Ref struct {
	Type string `json:"type"`
	Key  string `json:"key"`
}

func (r Ref) String() string { return r.Type + ":" + r.Key }

// IsZero reports an empty reference (a decision about no entity).
func (r Ref) IsZero() bool { return r.Type == "" && r.Key == "" }

// ParseRef parses "type:key". The key may itself contain ':'.
func ParseRef(s string) (Ref, error) {
	typ, key, ok := strings.Cut(s, ":")
	if !ok || typ == "" || key == "" {
		return Ref{}, fmt.Errorf("entity %q: want TYPE:KEY, e.g. order:o-1", s)
	}
	return Ref{Type: typ, Key: key}, nil
}

// Views of a timeline.
const (
	ViewEntity   = "entity"   // one entity: its events, decisions, notifications, timers
	ViewCustomer = "customer" // one customer: profile and everything addressed to them
)

// Timeline is everything recorded about one entity or one customer, in
// time order.
type Timeline struct {
	Entity Ref    `json:"entity"`
	View   string `json:"view"`
	// Known says the entity has stored state (it may have expired by ttl
	// while its decisions remain).
	Known     bool           `json:"known"`
	State     map[string]any `json:"state"`
	CreatedAt *time.Time     `json:"created_at,omitempty"`
	UpdatedAt *time.Time     `json:"updated_at,omitempty"`
	Items     []Item         `json:"items"`
	// Notifications are the outbox rows the timeline refers to, newest
	// first, each with its delivery attempts.
	Notifications []Notification `json:"notifications"`
	// Truncated: a part had more than the limit; the oldest were left out.
	Truncated bool `json:"truncated,omitempty"`
}

// Item kinds.
const (
	KindEvent    = "event"    // an event merged into the entity (journal)
	KindContact  = "contact"  // a support contact opened or closed
	KindDecision = "decision" // a rule verdict
	KindAttempt  = "attempt"  // one delivery attempt on a channel
	KindTimer    = "timer"    // a pending timer, at its due time
)

// Item is one line of a timeline; exactly one of the pointers is set,
// named by Kind.
type Item struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"`
	Event    *Event    `json:"event,omitempty"`
	Decision *Decision `json:"decision,omitempty"`
	Attempt  *Attempt  `json:"attempt,omitempty"`
	Timer    *Timer    `json:"timer,omitempty"`
	Contact  *Contact  `json:"contact,omitempty"`
}

// Event is one journal entry: an event that updated the entity.
type Event struct {
	At      time.Time       `json:"at"`
	Seq     uint64          `json:"seq,omitempty"` // stream sequence; 0 outside JetStream
	Subject string          `json:"subject"`
	ID      string          `json:"id"`
	Entity  Ref             `json:"entity"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Decision is one recorded verdict. Reason says why in words
// ("same dedup key o-1/… as notification 01J…", "budget 3 per 24h0m0s
// spent", "quiet hours; deferred to …", "inhibited by rule …").
// Notification is the notification the verdict is about; for deduped it is
// the earlier notification that made this one a repeat.
type Decision struct {
	ID           int64     `json:"id"`
	At           time.Time `json:"at"`
	Rule         string    `json:"rule"`
	Entity       Ref       `json:"entity"`
	Customer     string    `json:"customer,omitempty"`
	Verdict      string    `json:"verdict"`
	Reason       string    `json:"reason"`
	Notification string    `json:"notification,omitempty"`
	// Event is the id of the event that triggered the evaluation, or the
	// cause when no event did ("for timer due …", "schedule …").
	Event string `json:"event,omitempty"`
	Mode  string `json:"mode"`
}

// Attempt is one delivery attempt of a notification on a channel.
type Attempt struct {
	ID           int64     `json:"id"`
	Notification string    `json:"notification"`
	At           time.Time `json:"at"`
	Channel      string    `json:"channel"`
	Attempt      int       `json:"attempt"` // 1-based, per channel
	OK           bool      `json:"ok"`
	Retry        bool      `json:"retry"` // the failure was worth retrying
	Error        string    `json:"error,omitempty"`
	DurationMS   int64     `json:"duration_ms"`
}

// Timer is a pending timer: an absence deadline, a for: hold-down or a
// promise follow-up.
type Timer struct {
	Rule    string    `json:"rule"`
	Entity  Ref       `json:"entity"`
	Kind    string    `json:"kind"` // absence | for | promise
	Due     time.Time `json:"due"`
	ArmedAt time.Time `json:"armed_at"`
	// Notification is the notification a promise follow-up keeps.
	Notification string `json:"notification,omitempty"`
}

// Contact is a support contact.
type Contact struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Customer  string    `json:"customer"`
	Entity    *Ref      `json:"entity,omitempty"` // nil: about nothing in particular
	Topic     string    `json:"topic,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	Status    string    `json:"status"` // opened | closed
	ContactID string    `json:"contact_id,omitempty"`
}

// Notification is an outbox row with the document it carries.
type Notification struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Rule           string `json:"rule"`
	Entity         Ref    `json:"entity"`
	Customer       string `json:"customer,omitempty"`
	Priority       string `json:"priority"`
	// Status: pending | deferred | retry | sending | sent | failed |
	// superseded | capped.
	Status string `json:"status"`
	// Channel is the channel in use: the one it was sent on, or the next
	// one to try. Channels lists every candidate in preference order.
	Channel   string         `json:"channel,omitempty"`
	Address   string         `json:"address,omitempty"`
	Channels  []string       `json:"channels"`
	Locale    string         `json:"locale,omitempty"`
	Subject   string         `json:"subject"`
	Body      string         `json:"body"`
	Vars      map[string]any `json:"vars,omitempty"`
	Attempts  int            `json:"attempts"` // on the current channel
	LastError string         `json:"last_error,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// NextAt is when a deferred or retrying notification is due.
	NextAt     *time.Time `json:"next_at,omitempty"`
	SentAt     *time.Time `json:"sent_at,omitempty"`
	AttemptLog []Attempt  `json:"attempt_log,omitempty"`
}

// Options tune a timeline.
type Options struct {
	// Limit bounds each part (journal, decisions, notifications,
	// contacts); 0 = DefaultLimit.
	Limit int
}

func (o Options) limit() int {
	if o.Limit <= 0 {
		return DefaultLimit
	}
	return o.Limit
}

// Explain builds the timeline of one entity. The customer type gets the
// customer view (see Customer): a customer's own record explains little,
// everything addressed to them explains a lot.
func Explain(ctx context.Context, db *sql.DB, ref Ref, o Options) (*Timeline, error) {
	if ref.Type == CustomerType {
		return Customer(ctx, db, ref.Key, o)
	}
	tl, err := explainEntity(ctx, db, ref, o)
	if err != nil {
		return nil, fmt.Errorf("explain %s: %w", ref, err)
	}
	return tl, nil
}

func explainEntity(ctx context.Context, db *sql.DB, ref Ref, o Options) (*Timeline, error) {
	lim := o.limit()
	tl := &Timeline{Entity: ref, View: ViewEntity}
	if err := loadState(ctx, db, tl); err != nil {
		return nil, err
	}
	events, more, err := journal(ctx, db, ref, lim)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || more
	byEntity, bargs := store.DecisionsIn(store.ByEntity(ref.Type, ref.Key))
	entityArgs := append(bargs, ref.Type, ref.Key)
	decisions, more, err := queryDecisions(ctx, db, lim,
		`WHERE `+byEntity+` AND etype = ? AND ekey = ?`, entityArgs...)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || more
	// Every outbox row is born with a decision naming it (sent, deferred),
	// so the entity's decisions find all its notifications through the
	// primary key — and, for a deduped verdict, the earlier notification
	// that made it a repeat, whatever entity that was about.
	ids, err := strs(ctx, db, `SELECT DISTINCT notification FROM decisions WHERE `+byEntity+` AND etype = ? AND ekey = ? AND notification != ''`, entityArgs...)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	notes, err := notificationsByID(ctx, db, ids, lim)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || len(ids) > lim
	timers, err := timersOf(ctx, db, []Ref{ref})
	if err != nil {
		return nil, err
	}
	contacts, more, err := queryContacts(ctx, db, lim, `WHERE etype = ? AND ekey = ?`, ref.Type, ref.Key)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || more
	// Open contacts about nothing in particular inhibit this entity's
	// notifications too: show those of the customers it notified.
	customers := map[string]bool{}
	for _, d := range decisions {
		if d.Customer != "" {
			customers[d.Customer] = true
		}
	}
	for _, c := range sortedKeys(customers) {
		general, m, err := queryContacts(ctx, db, lim, `WHERE customer = ? AND etype = '' AND ekey = ''`, c)
		if err != nil {
			return nil, err
		}
		tl.Truncated = tl.Truncated || m
		contacts = append(contacts, general...)
	}
	tl.assemble(events, decisions, notes, timers, contacts)
	if !tl.Known && len(tl.Items) == 0 && len(tl.Notifications) == 0 {
		return nil, ErrNotFound
	}
	return tl, nil
}

// Customer builds the customer view: the customer's profile and the events
// that changed it, every decision and notification addressed to them, the
// timers of the entities those are about, and their support contacts.
func Customer(ctx context.Context, db *sql.DB, key string, o Options) (*Timeline, error) {
	tl, err := explainCustomer(ctx, db, key, o)
	if err != nil {
		return nil, fmt.Errorf("explain customer %s: %w", key, err)
	}
	return tl, nil
}

// maxTimerEntities bounds the entities whose timers a customer view looks
// up.
const maxTimerEntities = 200

func explainCustomer(ctx context.Context, db *sql.DB, key string, o Options) (*Timeline, error) {
	lim := o.limit()
	ref := Ref{Type: CustomerType, Key: key}
	tl := &Timeline{Entity: ref, View: ViewCustomer}
	if err := loadState(ctx, db, tl); err != nil {
		return nil, err
	}
	events, more, err := journal(ctx, db, ref, lim)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || more
	in, args := store.DecisionsIn(store.ByCustomer(key), store.ByEntity(CustomerType, key))
	decisions, more, err := queryDecisions(ctx, db, lim,
		`WHERE `+in+` AND (customer = ? OR (etype = ? AND ekey = ?))`, append(args, key, CustomerType, key)...)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || more
	notes, more, err := queryNotifications(ctx, db, lim, `WHERE customer = ?`, key)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || more
	if err := attachAttempts(ctx, db, notes); err != nil {
		return nil, err
	}
	// Timers live with entities (an order's deadline), not customers: look
	// them up for the entities this customer's decisions are about.
	seen := map[Ref]bool{ref: true}
	refs := []Ref{ref}
	for i := len(decisions) - 1; i >= 0 && len(refs) < maxTimerEntities; i-- {
		r := decisions[i].Entity
		if !r.IsZero() && !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	timers, err := timersOf(ctx, db, refs)
	if err != nil {
		return nil, err
	}
	contacts, more, err := queryContacts(ctx, db, lim, `WHERE customer = ?`, key)
	if err != nil {
		return nil, err
	}
	tl.Truncated = tl.Truncated || more
	tl.assemble(events, decisions, notes, timers, contacts)
	if !tl.Known && len(tl.Items) == 0 && len(tl.Notifications) == 0 {
		return nil, ErrNotFound
	}
	return tl, nil
}

func loadState(ctx context.Context, db *sql.DB, tl *Timeline) error {
	var raw []byte
	var created, updated int64
	err := db.QueryRowContext(ctx, `SELECT state, created_at, updated_at FROM entities WHERE type = ? AND key = ?`, tl.Entity.Type, tl.Entity.Key).Scan(&raw, &created, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		tl.State = map[string]any{}
		return nil
	case err != nil:
		return fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(raw, &tl.State); err != nil {
		return fmt.Errorf("state: corrupt JSON: %w", err)
	}
	if tl.State == nil {
		tl.State = map[string]any{}
	}
	tl.Known = true
	tl.CreatedAt, tl.UpdatedAt = timePtr(created), timePtr(updated)
	return nil
}
