// Package engine turns events into decisions: it keeps entity state, runs
// the rules indexed for each event's subject, walks the delivery policy and
// writes decisions and outbox rows — all of one batch of events in one
// SQLite transaction, so the caller can ack the batch after Commit.
//
// The engine is single-threaded by design (one writer): intake batches,
// timers, schedules and fan-out pages all run on the caller's goroutine,
// interleaved, and read time only from the injected clock. The daemon drives
// it from JetStream and the wall clock; `proactived test` and backtest drive
// the very same code from a virtual clock.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// defaultEntityCache is intake.entity_cache's default. A decoded entity
// takes ~2 KB; 16,000 keep the daemon under 256 MB RSS with a million
// entities stored (BENCHMARKS.md; 20,000 did until the batch's writes got
// a goroutine of their own, and then peaked at 248–266 MB), and an event
// for an entity not in the cache costs one SQLite read.
const defaultEntityCache = 16_000

// memoSize bounds each memo of dedup marks and support-contact presence
// (~100 bytes an entry).
const memoSize = 200_000

// Options are the engine's dependencies.
type Options struct {
	Store  *store.Store
	Clock  clock.Clock
	Config *config.Config
	Rules  *rules.Set
	Logger *slog.Logger
	// Wake is called (without blocking) after a commit that queued
	// notifications, so the dispatcher need not poll.
	Wake func()
	// Observer receives counts for metrics; may be nil.
	Observer Observer
	// Shadow makes every rule behave as mode: shadow (backtest).
	Shadow bool
	// ExpireEvery is the least clock time between two TTL sweeps in Tick
	// (0 = every Tick). A virtual-clock replay ticks at every due timer,
	// and a sweep page per tick would dominate it (backtest).
	ExpireEvery time.Duration
	// FilterRebuildMin replaces the least pairs added to a key filter
	// before it is rebuilt from its table (filterrebuild.go; tests).
	FilterRebuildMin int
	// OnCommit, if set, is called after each intake batch committed, with
	// the committed stream position and the number of events applied. It
	// runs on the engine's goroutine under its lock: keep it cheap (the
	// bench records commit times with it).
	OnCommit func(lastSeq uint64, events int)
}

// Observer is told what the engine did, for metrics. It is called on the
// engine's goroutine, once per evaluation and decision: keep it cheap.
type Observer interface {
	Evaluated(rule string, fired bool, err bool)
	// Decided reports a recorded verdict; mode is "live" or "shadow".
	Decided(rule, verdict, mode string)
}

type nopObserver struct{}

func (nopObserver) Evaluated(string, bool, bool)   {}
func (nopObserver) Decided(string, string, string) {}

// Engine evaluates rules over events and time.
type Engine struct {
	st       *store.Store
	clk      clock.Clock
	cfg      *config.Config
	log      *slog.Logger
	wake     func()
	obs      Observer
	shadow   bool
	onCommit func(lastSeq uint64, events int)
	set      atomic.Pointer[rules.Set]
	mu       sync.Mutex // serialises HandleBatch, Tick and reloads
	cache    *memo[cacheKey, *entity]
	vm       vm.VM
	env      map[string]any
	keyEnv   map[string]any
	msgEnv   map[string]any
	// msgOf is the event msgEnv holds: set once per event, not once per
	// rule (each set boxes three values).
	msgOf *event.Event
	// bound is what bindEnv last bound env to (see bindEnv); holding the
	// pointers keeps them from being reused for another event or entity.
	bound    boundEnv
	cur      *batch // the transaction in progress
	lastSeq  uint64
	channels map[string]policy.ChannelInfo
	qh       policy.QuietHours
	defLoc   *time.Location
	locs     map[string]*time.Location
	idSeq    uint32
	// currentCustomer is the customer key of the evaluation in progress,
	// for contacted_within().
	currentCustomer string
	// decisionRows writes a batch's decisions (rowbuf.go).
	decisionRows *store.Bulk
	ttlCursor    map[string]string
	expireEvery  time.Duration
	lastExpire   time.Time
	// Write-back (writeback.go): entity changes not yet written, oldest
	// first; journal rows not yet handed to the journal's writer; how far
	// each is written (journalSeq: handed); whether the events above those
	// positions still have to be merged again after a restart.
	dirtyQ               []dirtyRef
	journalQ             []store.JournalRow
	stateSeq, journalSeq uint64
	rebuildPending       bool
	// rebuiltSeq is the last event the rebuild under way merged: one the
	// broker cut off resumes after it.
	rebuiltSeq uint64
	flushEvery time.Duration
	maxDirty   int
	// Answers from tables only the engine writes (memo.go).
	dedupMemo   *memo[[2]string, dedupVal]
	contactMemo *memo[string, bool]
	// The (rule, key) pairs of dedup marks and of outbox rows (rule,
	// entity key) that may exist (keyfilter.go); nil: too many to load.
	dedupKeys, outboxKeys *keyFilter
	// idemKeys holds outbox idempotency keys, seenKeys producers' event
	// ids: "never seen" lets the batch queue their insert on its pipe
	// without waiting for the row count.
	idemKeys, seenKeys *keyFilter
	// rebuilt receives the filters rebuilt from their tables
	// (filterrebuild.go), one place per filter of filterSpecs, so a
	// rebuild's send never blocks; filterRebuildMin is when one is due.
	rebuilt          chan rebuiltFilter
	filterRebuildMin int
	// pendingMarks are the dedup marks set since the last fold of the
	// dedup log (dedupfold.go); markFold is when it is folded next.
	pendingMarks map[[2]string]dedupVal
	markFold     logFold
	// wmBehind and wmAt are the intake's watermark (Watermark): while
	// events wait in the stream, time-driven work acts only up to wmAt.
	wmBehind bool
	wmAt     time.Time
	// lastBatch is when the last event batch committed: a small batch
	// after a wait of quietGap means the stream is quiet.
	lastBatch time.Time
	// markLog are the marks of the log not folded yet, in log order, and
	// markID the last log id given.
	markLog []loggedMark
	markID  int64
	// marksIns appends dedup_log rows.
	marksIns *store.Bulk
	// The producers' event ids not folded into seen_ids yet (seenlog.go):
	// by id, the stream sequence each came with, and in log order.
	pendingSeen map[string]uint64
	seenLog     []loggedSeen
	seenID      int64
	seenFold    logFold
	seenIns     *store.Bulk
	// tmplData is the map templates render from (templateData).
	tmplData map[string]any
	// keys shares field names and short values among decoded events and
	// loaded states (event.Interner): Decode runs on the consumer's
	// goroutine, loads on the engine's.
	keys *event.Interner
}

// New opens the engine on a store.
func New(ctx context.Context, o Options) (*Engine, error) {
	if o.Store == nil || o.Config == nil || o.Rules == nil {
		return nil, errors.New("engine: store, config and rules are required")
	}
	if o.Clock == nil {
		o.Clock = clock.Wall{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Wake == nil {
		o.Wake = func() {}
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	e := &Engine{
		st: o.Store, clk: o.Clock, cfg: o.Config, log: o.Logger.With("component", "engine"),
		wake: o.Wake, obs: o.Observer, shadow: o.Shadow, onCommit: o.OnCommit,
		cache:        newEntityCache(cmp.Or(o.Config.Intake.EntityCache, defaultEntityCache)),
		locs:         map[string]*time.Location{},
		ttlCursor:    map[string]string{},
		dedupMemo:    newMemo[[2]string, dedupVal](memoSize, nil),
		contactMemo:  newMemo[string, bool](memoSize, nil),
		decisionRows: store.InsertDecisions(),
		keys:         event.NewInterner(),
		pendingMarks: map[[2]string]dedupVal{},
		marksIns:     insertMarks(),
		pendingSeen:  map[string]uint64{},
		seenIns:      store.Insert("seen_log (id, eid, at, seq)", 4),
	}
	e.rebuilt = make(chan rebuiltFilter, len(e.filterSpecs()))
	e.filterRebuildMin = cmp.Or(o.FilterRebuildMin, filterRebuildMin)
	e.expireEvery = o.ExpireEvery
	loc, err := time.LoadLocation(o.Config.Defaults.Timezone)
	if err != nil {
		return nil, fmt.Errorf("engine: defaults.timezone: %w", err)
	}
	e.defLoc = loc
	if qh := o.Config.Policy.QuietHours; qh.Start != "" {
		s, err1 := config.ParseClock(qh.Start)
		en, err2 := config.ParseClock(qh.End)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("engine: quiet hours: %w", err)
		}
		e.qh = policy.QuietHours{Start: s, End: en, Enabled: true}
	}
	e.channels = map[string]policy.ChannelInfo{}
	for name, ch := range o.Config.Channels {
		e.channels[name] = policy.ChannelInfo{AddressField: ch.AddressField}
	}
	e.msgEnv = map[string]any{"subject": "", "id": "", "time": time.Time{}}
	e.keyEnv = map[string]any{rules.EnvEvent: map[string]any(nil), rules.EnvMsg: e.msgEnv}
	e.flushEvery = o.Config.Intake.StateFlushEvery()
	e.maxDirty = max(e.cache.max/dirtyShare, 1)
	e.SetRules(o.Rules)
	if err := e.readMeta(ctx); err != nil {
		return nil, err
	}
	if err := e.foldAtStart(ctx); err != nil {
		return nil, err
	}
	if err := e.loadFilters(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// SetRules swaps the rule set. State is keyed by rule name and entity, so
// pending for: states, timers and dedup marks of rules that still exist
// carry over untouched.
func (e *Engine) SetRules(s *rules.Set) {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(s.Entities))
	for n := range s.Entities {
		names = append(names, n)
	}
	e.env = rules.NewEnv(names, rules.Funcs{
		Now:             e.now,
		Sent:            e.sentFn,
		CountSent:       e.countSentFn,
		ContactedWithin: e.contactedWithinFn,
	})
	e.env[rules.EnvMsg] = e.msgEnv
	e.set.Store(s)
}

// Rules returns the rule set in force.
func (e *Engine) Rules() *rules.Set { return e.set.Load() }

// LastSeq is the stream sequence of the last committed event.
func (e *Engine) LastSeq() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastSeq
}

// ResetSeq forgets the consumer position (the stream was recreated). The
// state in memory stays; it is written at the next commit, since the old
// stream can no longer rebuild it.
func (e *Engine) ResetSeq(seq uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rebuildPending = false // the events it would need are gone
	if err := e.flushAll(context.Background()); err != nil {
		e.log.Error("could not write entity state before starting over on a recreated stream", "err", err)
	}
	e.lastSeq, e.stateSeq = seq, seq
	e.handJournal()
}

func (e *Engine) now() time.Time { return e.clk.Now() }

// Prepared is an event with its entity keys computed, ready for a batch.
type Prepared struct {
	Ev   *event.Event
	set  *rules.Set
	keys []entityRef
}

type entityRef struct {
	ent   *rules.Entity
	key   string
	merge bool // the entity subscribes to this subject: merge the event into its state
}

// Prepare computes the entity keys an event needs. A missing key is a
// Rejection (dead letter), decided before anything is written.
func (e *Engine) Prepare(ev *event.Event) (*Prepared, *event.Rejection) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.prepare(ev)
}

func (e *Engine) prepare(ev *event.Event) (p *Prepared, rej *event.Rejection) {
	defer func() {
		if r := recover(); r != nil {
			p, rej = nil, &event.Rejection{Reason: event.ReasonMissingKey, Msg: fmt.Sprintf("key expression panicked: %v", r)}
		}
	}()
	s := e.set.Load()
	p = &Prepared{Ev: ev, set: s}
	// Entities the subject feeds come first (the event merges into them);
	// then any entity a rule or an expectation names without being fed by
	// the subject, looked up by key only. The lists are tiny, so a scan
	// dedupes them without a map per event.
	add := func(ent *rules.Entity, merge bool) *event.Rejection {
		if ent == nil {
			return nil
		}
		for _, k := range p.keys {
			if k.ent == ent {
				return nil
			}
		}
		key, err := e.entityKey(ent, ev)
		if err != nil {
			return &event.Rejection{Reason: event.ReasonMissingKey, Msg: fmt.Sprintf("entity %q key %s: %v", ent.Name, ent.KeySrc, err)}
		}
		if key == "" {
			return &event.Rejection{Reason: event.ReasonMissingKey, Msg: fmt.Sprintf("entity %q needs key %s, which is missing or empty", ent.Name, ent.KeySrc)}
		}
		p.keys = append(p.keys, entityRef{ent: ent, key: key, merge: merge})
		return nil
	}
	for _, ent := range s.Index.Entities(ev.Subject) {
		if rej := add(ent, true); rej != nil {
			return nil, rej
		}
	}
	for _, r := range s.Index.Rules(ev.Subject) {
		if rej := add(s.Entities[r.Entity], false); rej != nil {
			return nil, rej
		}
	}
	for _, r := range s.Index.Expecting(ev.Subject) {
		if rej := add(s.Entities[r.Entity], false); rej != nil {
			return nil, rej
		}
	}
	return p, nil
}

func (e *Engine) entityKey(ent *rules.Entity, ev *event.Event) (string, error) {
	e.keyEnv[rules.EnvEvent] = ev.Data
	e.setMsg(ev)
	out, err := e.vm.Run(ent.Key, e.keyEnv)
	if err != nil {
		return "", err
	}
	return event.KeyString(out), nil
}

func (e *Engine) setMsg(ev *event.Event) {
	if e.msgOf == ev {
		return
	}
	e.msgOf = ev
	e.msgEnv["subject"] = ev.Subject
	e.msgEnv["id"] = ev.ID
	e.msgEnv["time"] = ev.Time
}

// quietBatch: a batch smaller than this, after the engine waited
// quietGap for it, means the stream is quiet.
const quietBatch = 8

// quietGap is how long the engine must have waited for a small batch for
// it to count as quiet. Size alone was not enough: in a steady stream at
// 10,000 events/s most batches hold a handful of events (the intake takes
// what is waiting), and each wrote quietFlush entities that the next
// events would change again, 5–10 ms a time (BENCHMARKS.md, eleventh
// round). In such a stream the engine waits well under a millisecond.
const quietGap = 50 * time.Millisecond

// quietFlush is how many queued entity changes a quiet batch writes
// before they are due. Writing all of them made one small batch in a
// steady stream (they come at any rate: the publisher pauses, the
// intake takes what is waiting) write thousands of entities and hold up
// every event behind it for 25–40 ms (BENCHMARKS.md, tenth round). A
// stream that stays quiet is written within a few batches or ticks.
const quietFlush = 256

// HandleBatch applies a batch of prepared events in one transaction and
// commits it. When it returns nil every effect is durable and the caller may
// ack; on error nothing of the batch is kept and the caller must not ack.
func (e *Engine) HandleBatch(ctx context.Context, ps []*Prepared) error {
	return e.handleBatch(ctx, ps, 0)
}

func (e *Engine) handleBatch(ctx context.Context, ps []*Prepared, upTo uint64) (err error) {
	ctx = stmtCtx(ctx)
	if len(ps) == 0 && upTo <= e.LastSeq() {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := e.begin(ctx, true)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			e.rollback(b)
		}
	}()
	maxSeq := max(e.lastSeq, upTo)
	for _, p := range ps {
		ev := p.Ev
		if ev.Seq != 0 && ev.Seq <= e.lastSeq {
			continue // redelivered after we committed it: no second effect
		}
		if ev.ExplicitID {
			dup, err := e.seen(ctx, b, ev.ID, ev.Seq, e.now())
			if err != nil {
				return err
			}
			if dup {
				continue
			}
		}
		if p.set != e.set.Load() { // rules reloaded since Prepare
			np, rej := e.prepare(ev)
			if rej != nil {
				e.log.Warn("event lost its key after reload; skipped", "subject", ev.Subject, "id", ev.ID, "err", rej.Msg)
				continue
			}
			p = np
		}
		if err := e.process(ctx, p); err != nil {
			return err
		}
		if ev.Seq > maxSeq {
			maxSeq = ev.Seq
		}
	}
	b.lastSeq = maxSeq
	// A batch of a few events after a wait (quietGap) means the stream is
	// quiet: write what waits (up to quietFlush entities), so state on
	// disk is current whenever events are not arriving (explain on the
	// file, backups).
	// Not at every batch below full: at half of the maximum rate batches
	// hold a few hundred events and writing everything each time doubled
	// the median latency. The threshold is at most quietBatch: tied to
	// intake.batch alone it grew with the batch and wrote everything at
	// every batch again (BENCHMARKS.md); with tiny batches configured, it
	// is 1 (never).
	b.quiet = len(ps) < min(quietBatch, max(e.cfg.Intake.Batch/64, 1)) && e.now().Sub(e.lastBatch) >= quietGap
	b.events = len(ps)
	if err := e.commit(ctx, b); err != nil {
		return err
	}
	e.lastBatch = e.now()
	if e.onCommit != nil {
		e.onCommit(maxSeq, len(ps))
	}
	return nil
}

// process applies one event: state, support contacts, expectations, rules.
func (e *Engine) process(ctx context.Context, p *Prepared) error {
	ev := p.Ev
	s := p.set
	now := e.now()
	states := make(map[string]*entity, len(p.keys))
	for _, k := range p.keys {
		ent, err := e.load(ctx, k.ent.Name, k.key)
		if err != nil {
			return err
		}
		if k.merge {
			e.merge(ent, ev, now)
			if err := e.queueJournal(ev, k.ent.Name, k.key); err != nil {
				return err
			}
		}
		states[k.ent.Name] = ent
	}
	if e.cfg.Support.Subject != "" && rules.SubjectMatches(e.cfg.Support.Subject, ev.Subject) {
		if err := e.supportContact(ctx, ev); err != nil {
			return err
		}
	}
	// An expected event cancels the deadline of its entity.
	for _, r := range s.Index.Expecting(ev.Subject) {
		ent := states[r.Entity]
		if ent == nil {
			continue
		}
		n, err := e.cur.deleteTimer(ctx, r.Name, ent.typ, ent.key, timerAbsence)
		if err != nil {
			return err
		}
		if n > 0 {
			e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, verdict: policy.VerdictCancelled,
				reason: "expected " + ev.Subject + " arrived", event: ev.ID})
		}
	}
	for _, r := range s.Index.Rules(ev.Subject) {
		var ent *entity
		if r.Entity != "" {
			ent = states[r.Entity]
			if ent == nil {
				continue
			}
		}
		if err := e.onEvent(ctx, r, ent, ev); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) journalOn() bool {
	return e.cfg.Intake.Journal == nil || *e.cfg.Intake.Journal
}

// onEvent runs one rule triggered by an event.
func (e *Engine) onEvent(ctx context.Context, r *rules.Rule, ent *entity, ev *event.Event) error {
	switch r.Kind {
	case rules.KindAbsence:
		return e.arm(ctx, r, ent, ev)
	case rules.KindFanout:
		return e.startFanout(ctx, r, ev)
	}
	ok, cust, err := e.evalRule(ctx, r, ent, ev)
	if err != nil {
		e.decide(ctx, decision{rule: r, etype: ent.typ, ekey: ent.key, verdict: policy.VerdictError, reason: firstLine(err), event: ev.ID})
		return nil
	}
	if r.For > 0 {
		return e.holdDown(ctx, r, ent, ev, ok)
	}
	if !ok {
		return nil
	}
	return e.fire(ctx, fireArgs{rule: r, ent: ent, ev: ev, cust: cust})
}

// evalRule evaluates notify.to (so `customer` is known) and then `if`.
// It returns whether the rule fires and the resolved customer.
func (e *Engine) evalRule(ctx context.Context, r *rules.Rule, ent *entity, ev *event.Event) (fired bool, cust *entity, err error) {
	defer func() {
		if p := recover(); p != nil {
			fired, err = false, fmt.Errorf("rule %q panicked: %v", r.Name, p)
		}
		e.obs.Evaluated(r.Name, fired, err != nil)
	}()
	e.bindEnv(ent, ev)
	e.currentCustomer = ""
	// A condition that does not read the customer is checked first: a
	// rule that does not fire then costs one program run. (Rules with for:
	// keep the full order, their decisions name the customer.)
	early := r.If != nil && r.Notify.To != nil && r.For == 0 && !r.IfReadsCustomer
	if early {
		out, err := e.vm.Run(r.If, e.env)
		if err != nil {
			return false, nil, fmt.Errorf("if: %w", err)
		}
		if b, _ := out.(bool); !b {
			return false, nil, nil
		}
	}
	if r.Notify.To != nil {
		v, err := e.vm.Run(r.Notify.To, e.env)
		if err != nil {
			return false, nil, fmt.Errorf("notify.to: %w", err)
		}
		if key := event.KeyString(v); key != "" {
			cust, err = e.load(ctx, rules.EnvCustomer, key)
			if err != nil {
				return false, nil, err
			}
			e.env[rules.EnvCustomer] = cust.stateOrEmpty()
			e.currentCustomer = key
		} else {
			cust = &entity{typ: rules.EnvCustomer}
		}
	}
	if r.If == nil || early {
		return true, cust, nil
	}
	out, err := e.vm.Run(r.If, e.env)
	if err != nil {
		return false, cust, fmt.Errorf("if: %w", err)
	}
	b, _ := out.(bool)
	return b, cust, nil
}

// boundEnv names what env is bound to: the rule set, event and entity.
type boundEnv struct {
	set *rules.Set
	ev  *event.Event
	ent *entity
}

// bindEnv points the shared environment at this evaluation's data. The
// rules of one event and entity share a binding: only the customer, which
// each rule resolves itself, is reset (binding every variable for each of
// an event's rules was a sixth of its evaluation).
func (e *Engine) bindEnv(ent *entity, ev *event.Event) {
	b := boundEnv{set: e.set.Load(), ev: ev, ent: ent}
	// An entity without state is bound to a fresh empty map, which a merge
	// would not update: bound again each time.
	shareable := ev != nil && (ent == nil || ent.state != nil)
	if shareable && b == e.bound {
		e.env[rules.EnvCustomer] = map[string]any(nil)
		if ent != nil {
			e.env[ent.typ] = ent.state // the customer, when that is the entity
		}
		return
	}
	e.bound = boundEnv{}
	if shareable {
		e.bound = b
	}
	for name := range b.set.Entities {
		e.env[name] = map[string]any(nil)
	}
	e.env[rules.EnvCustomer] = map[string]any(nil)
	if ev != nil {
		e.env[rules.EnvEvent] = ev.Data
		e.setMsg(ev)
	} else {
		e.env[rules.EnvEvent] = map[string]any(nil)
		e.msgEnv["subject"], e.msgEnv["id"], e.msgEnv["time"] = "", "", e.now()
		e.msgOf = nil
	}
	if ent != nil {
		e.env[ent.typ] = ent.stateOrEmpty()
	}
}

func (e *Engine) location(tz string) *time.Location {
	if tz == "" {
		return e.defLoc
	}
	if l, ok := e.locs[tz]; ok {
		return l
	}
	l, err := time.LoadLocation(tz)
	if err != nil {
		l = e.defLoc
	}
	e.locs[tz] = l
	return l
}

// newID returns a time-ordered unique id (ULID-like, Crockford base32).
func (e *Engine) newID() string {
	e.idSeq++
	return newULID(e.now(), e.idSeq)
}
