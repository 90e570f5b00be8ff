// Package backtest replays the events retained in the JetStream stream
// through a rule set — the running one or a candidate — and reports what it
// would have sent, per rule, against what the running rules actually sent
// in the same window (`proactived backtest`).
//
// It runs the real engine and outbox dispatcher (engine/replay) on a
// virtual clock that follows the events' own times, against a scratch
// SQLite store in a temporary directory, with recording channels. So it
// never sends anything and never writes live state: the live database is
// opened read-only, and the stream is read with an ephemeral ordered
// consumer (no acks, no durable consumer).
//
// The replay starts from empty state (no entities, dedup marks, budgets or
// timers), or from the entities of a snapshot file. Decisions therefore
// differ from live ones where they depend on history from before the
// window: widen --since, or pass --snapshot, when that matters.
package backtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/replay"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/triggers/jsintake"
)

// Options configure one backtest.
type Options struct {
	// Conn reaches the NATS server that holds the stream.
	Conn *nats.Conn
	// Config is the daemon's configuration: stream name, event size limit,
	// delivery policy, channels and defaults all apply as in `run`.
	Config *config.Config
	// Rules is the rule set to replay (the candidate).
	Rules *rules.Set
	// RulesDir names the candidate set in the report.
	RulesDir string
	// LiveRules is the running rule set, to mark rules as new, removed or
	// changed; nil when unknown.
	LiveRules *rules.Set
	// LiveDB is the live SQLite file, read-only, for what was actually
	// sent; "" skips the comparison.
	LiveDB string
	// Since and Until bound the window by stream time; a zero Until is now.
	Since, Until time.Time
	// Snapshot is an optional SQLite file (a copy of proactived.db taken at
	// or before Since) whose entities seed the replay.
	Snapshot string
	// Progress, when set, is called from the replay goroutine now and then.
	Progress func(Progress)
	// TempDir holds the scratch store ("" = the system's temp dir).
	TempDir string
	// Now is the wall clock (tests); nil = time.Now.
	Now func() time.Time
	// MaxWait bounds the wait for the next message before the stream is
	// declared stalled (default 30s).
	MaxWait time.Duration
	// Resolution buckets event times: events in the same bucket are handled
	// as one batch at the bucket's start, as the daemon batches what
	// arrives together (default 1s; time.Nanosecond = one step per
	// distinct time). Expression values such as msg.time keep the event's
	// own time.
	Resolution time.Duration
}

// Progress is how far a replay has come.
type Progress struct {
	Done, Total uint64 // events read from the stream / expected in the window
	Elapsed     time.Duration
}

// Report is a backtest's outcome.
type Report struct {
	Stream   string `json:"stream"`
	RulesDir string `json:"rules_dir,omitempty"`
	LiveDB   string `json:"live_db,omitempty"`
	// LiveNote says why there is no comparison with live ("" = there is).
	LiveNote string `json:"live_note,omitempty"`
	// Since and Until are the window, by stream time.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// VirtualStart and VirtualEnd are the span of the virtual clock, which
	// follows the events' own times (CloudEvents `time` when given).
	VirtualStart time.Time `json:"virtual_start"`
	VirtualEnd   time.Time `json:"virtual_end"`
	// Snapshot is the file whose entities seeded the replay ("" = empty).
	Snapshot         string `json:"snapshot,omitempty"`
	SnapshotEntities int    `json:"snapshot_entities,omitempty"`
	// Events were read from the stream in the window: Replayed went to the
	// engine, Ignored are on subjects the rule set does not use, Rejected
	// would have been dead letters (by reason).
	Events     int            `json:"events"`
	Replayed   int            `json:"replayed"`
	Ignored    int            `json:"ignored"`
	Rejected   int            `json:"rejected"`
	RejectedBy map[string]int `json:"rejected_by,omitempty"`
	// Reordered events carried a time before an earlier event's; they were
	// handled at the later time (the virtual clock never goes back).
	Reordered int `json:"reordered,omitempty"`
	// Uncaptured are subjects the rule set needs that the stream does not
	// capture: their events cannot be in the replay.
	Uncaptured []string     `json:"uncaptured_subjects,omitempty"`
	Rules      []RuleReport `json:"rules"`
	// Took is the replay's wall time; EventsPerSec = Events / Took.
	Took         time.Duration `json:"-"`
	TookSeconds  float64       `json:"took_seconds"`
	EventsPerSec float64       `json:"events_per_second"`
}

// RuleReport is one rule's line.
type RuleReport struct {
	Name string `json:"name"`
	// Change is "new" (only in the candidate set), "removed" (only live),
	// "changed" (definition differs) or "".
	Change string `json:"change,omitempty"`
	// Mode is the candidate's mode (live | shadow); "" when not in it.
	Mode string `json:"mode,omitempty"`
	// InCandidate is false for rules seen only live.
	InCandidate bool `json:"in_candidate"`
	// WouldSend counts notifications delivered to the recording channels
	// by the end of the window, plus the decisions of shadow rules.
	WouldSend int `json:"would_send"`
	Customers int `json:"customers"`
	// QueuedAtEnd were still waiting at the end (deferred past it).
	QueuedAtEnd int `json:"queued_at_end"`
	// Verdicts counts every decision the replay recorded for the rule.
	Verdicts map[string]int `json:"verdicts"`
	// Live is what the running rules did in the window; nil without a live
	// database.
	Live *Live `json:"live,omitempty"`
	// Diff is WouldSend - Live.Sent.
	Diff int `json:"diff"`
}

// Live is what a rule did live: its notifications created in the window,
// by status as of now, and its decisions in the window.
type Live struct {
	Sent      int            `json:"sent"`
	Customers int            `json:"customers"`
	Queued    int            `json:"queued"` // pending, retrying or deferred
	Failed    int            `json:"failed"`
	Shadow    int            `json:"shadow"` // would-sends of a live shadow rule
	Verdicts  map[string]int `json:"verdicts"`
}

// Suppressions are the verdicts that explain a notification not (yet)
// sent, in the order of the delivery policy.
var Suppressions = []string{
	policy.VerdictDeduped, policy.VerdictHeldOut, policy.VerdictOptedOut, policy.VerdictNoChannel,
	policy.VerdictInhibited, policy.VerdictCapped, policy.VerdictDeferred, policy.VerdictSuperseded, policy.VerdictError,
}

// sweep is how often, in virtual time, the replay runs the engine's
// time-driven work when nothing is due (entity TTL expiry has no wake
// time). TTLs are days; ten minutes is plenty and keeps a week cheap.
const sweep = 10 * time.Minute

// Run replays the window and builds the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Conn == nil || o.Config == nil || o.Rules == nil {
		return nil, errors.New("backtest: nats connection, config and rules are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 30 * time.Second
	}
	if o.Resolution <= 0 {
		o.Resolution = time.Second
	}
	began := o.Now()
	if o.Until.IsZero() {
		o.Until = began
	}
	o.Since, o.Until = o.Since.UTC(), o.Until.UTC()
	if !o.Until.After(o.Since) {
		return nil, fmt.Errorf("backtest: the window is empty: until %s is not after since %s", o.Until.Format(time.RFC3339), o.Since.Format(time.RFC3339))
	}
	rep := &Report{Stream: o.Config.NATS.Stream, RulesDir: o.RulesDir, Since: o.Since, Until: o.Until, RejectedBy: map[string]int{}}

	rd, err := openReader(ctx, o)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	rep.Uncaptured = jsintake.Uncovered(o.Rules.Subjects(), rd.subjects)

	dir, err := os.MkdirTemp(o.TempDir, "proactived-backtest-")
	if err != nil {
		return nil, fmt.Errorf("backtest: %w", err)
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, filepath.Join(dir, "backtest.db"))
	if err != nil {
		return nil, fmt.Errorf("backtest: scratch store: %w", err)
	}
	defer st.Close()
	// The scratch store is thrown away: durability buys nothing here.
	if _, err := st.W.ExecContext(ctx, `PRAGMA synchronous = OFF`); err != nil {
		return nil, fmt.Errorf("backtest: scratch store: %w", err)
	}
	if o.Snapshot != "" {
		n, err := seed(ctx, st, o.Snapshot)
		if err != nil {
			return nil, err
		}
		rep.Snapshot, rep.SnapshotEntities = o.Snapshot, n
	}

	cfg := *o.Config
	noJournal := false
	cfg.Intake.Journal = &noJournal // explain's journal is not needed here
	rec := &recorder{}
	chans := map[string]notifiers.Notifier{}
	for name := range cfg.Channels {
		chans[name] = rec
	}

	start := time.Now()
	first, err := rd.next(ctx, rep)
	if err != nil {
		return nil, err
	}
	vstart := o.Since
	if first != nil && first.Time.Before(vstart) {
		vstart = first.Time.Truncate(o.Resolution)
	}
	drv, err := replay.New(ctx, replay.Options{Store: st, Config: &cfg, Rules: o.Rules, Channels: chans,
		Start: vstart, Sweep: sweep}) // no logger: a delivery line per recorded send is noise
	if err != nil {
		return nil, err
	}
	rec.clk = drv.Clock
	rep.VirtualStart = vstart
	last := vstart
	pending := first
	src := func(ctx context.Context) (replay.Event, bool, error) {
		for {
			ev := pending
			pending = nil
			if ev == nil {
				var err error
				if ev, err = rd.next(ctx, rep); err != nil {
					return replay.Event{}, false, err
				}
				if ev == nil {
					return replay.Event{}, false, nil
				}
			}
			p, rej := drv.Engine.Prepare(ev)
			if rej != nil {
				rep.Rejected++
				rep.RejectedBy[rej.Reason]++
				continue
			}
			rep.Replayed++
			at := ev.Time.Truncate(o.Resolution)
			if ev.Time.Before(last) {
				rep.Reordered++
			}
			if at.Before(last) {
				at = last
			}
			last = at
			return replay.Event{At: at, P: p}, true, nil
		}
	}
	if err := drv.Run(ctx, src, o.Until); err != nil {
		return nil, fmt.Errorf("backtest: replay: %w", err)
	}
	rep.Took = time.Since(start)
	rep.TookSeconds = rep.Took.Seconds()
	if rep.Took > 0 {
		rep.EventsPerSec = float64(rep.Events) / rep.Took.Seconds()
	}
	rep.VirtualEnd = drv.Clock.Now()
	if err := rep.collect(ctx, o, st, rec); err != nil {
		return nil, err
	}
	if len(rep.RejectedBy) == 0 {
		rep.RejectedBy = nil
	}
	return rep, nil
}

// recorder stands in for every channel: it counts, never sends.
type recorder struct {
	mu   sync.Mutex
	clk  interface{ Now() time.Time }
	sent []delivered
}

type delivered struct {
	rule, customer string
	at             time.Time
}

func (r *recorder) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, delivered{rule: n.Rule, customer: n.To.Customer, at: r.clk.Now()})
	return false, nil
}

// reader walks the stream window with an ordered consumer.
type reader struct {
	o        Options
	js       jetstream.JetStream
	cons     jetstream.Consumer
	it       jetstream.MessagesContext
	subjects []string // the stream's
	lastSeq  uint64   // the stream's last sequence when the backtest began
	total    uint64
	done     bool
	began    time.Time
	lastProg time.Time
}

func openReader(ctx context.Context, o Options) (*reader, error) {
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("backtest: %w", err)
	}
	name := o.Config.NATS.Stream
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("backtest: stream %s not found on %s (nats.stream; the daemon creates it on first start)", name, o.Conn.ConnectedUrlRedacted())
	}
	if err != nil {
		return nil, fmt.Errorf("backtest: stream %s: %w", name, err)
	}
	info := s.CachedInfo()
	rd := &reader{o: o, js: js, subjects: info.Config.Subjects, lastSeq: info.State.LastSeq, began: time.Now()}
	if info.State.Msgs == 0 || !info.State.LastTime.After(o.Since) {
		rd.done = true // nothing retained in the window
		return rd, nil
	}
	since := o.Since
	rd.cons, err = js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
		InactiveThreshold: time.Minute, NamePrefix: "proactived-backtest",
	})
	if err != nil {
		return nil, fmt.Errorf("backtest: read stream %s: %w", name, err)
	}
	rd.it, err = rd.cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return nil, fmt.Errorf("backtest: read stream %s: %w", name, err)
	}
	ci, err := rd.cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("backtest: read stream %s: %w", name, err)
	}
	rd.total = ci.NumPending
	if rd.total == 0 {
		rd.done = true
	}
	return rd, nil
}

func (rd *reader) close() {
	if rd.it != nil {
		rd.it.Stop()
	}
	if rd.cons != nil {
		if ci := rd.cons.CachedInfo(); ci != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = rd.js.DeleteConsumer(ctx, rd.o.Config.NATS.Stream, ci.Name)
			cancel()
		}
	}
}

// next returns the next event of the window that the rules use, nil at
// the end. Rejections by the decoder are counted in rep.
func (rd *reader) next(ctx context.Context, rep *Report) (*event.Event, error) {
	cfg := rd.o.Config
	set := rd.o.Rules
	for !rd.done {
		wctx, cancel := context.WithTimeout(ctx, rd.o.MaxWait)
		m, err := rd.it.Next(jetstream.NextContext(wctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("backtest: stream %s stopped delivering after %d of %d events: %w", cfg.NATS.Stream, rep.Events, rd.total, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("backtest: message metadata: %w", err)
		}
		if md.Timestamp.After(rd.o.Until) {
			rd.done = true
			break
		}
		if md.Sequence.Stream >= rd.lastSeq || md.NumPending == 0 {
			rd.done = true // the end of the stream as it was when we began
		}
		if rep.Events == 0 {
			rd.total = min(rd.total, rd.lastSeq-min(rd.lastSeq, md.Sequence.Stream)+1)
		}
		rep.Events++
		rd.progress(uint64(rep.Events), false)
		if cfg.NATS.DeadPrefix != "" && strings.HasPrefix(m.Subject(), cfg.NATS.DeadPrefix+".") {
			rep.Ignored++
			continue
		}
		if !uses(set, cfg, m.Subject()) {
			rep.Ignored++
			continue
		}
		raw := jsintake.RawOf(m, md)
		ev, rej := event.Decode(raw, cfg.Intake.MaxEventBytes)
		if rej != nil {
			rep.Rejected++
			rep.RejectedBy[rej.Reason]++
			continue
		}
		return ev, nil
	}
	rd.progress(uint64(rep.Events), true)
	return nil, nil
}

func (rd *reader) progress(done uint64, final bool) {
	if rd.o.Progress == nil {
		return
	}
	now := time.Now()
	if !final && now.Sub(rd.lastProg) < 100*time.Millisecond {
		return
	}
	rd.lastProg = now
	rd.o.Progress(Progress{Done: done, Total: max(rd.total, done), Elapsed: now.Sub(rd.began)})
}

// uses says whether any entity, rule, expectation or the support-contact
// intake of the set looks at a subject.
func uses(set *rules.Set, cfg *config.Config, subject string) bool {
	if len(set.Index.Entities(subject)) > 0 || len(set.Index.Rules(subject)) > 0 || len(set.Index.Expecting(subject)) > 0 {
		return true
	}
	return cfg.Support.Subject != "" && rules.SubjectMatches(cfg.Support.Subject, subject)
}

// seed copies the entities of a snapshot file into the scratch store.
func seed(ctx context.Context, st *store.Store, path string) (int, error) {
	src, err := openReadOnly(path)
	if err != nil {
		return 0, fmt.Errorf("backtest: snapshot: %w", err)
	}
	defer src.Close()
	rows, err := src.QueryContext(ctx, `SELECT type, key, state, created_at, updated_at FROM entities`)
	if err != nil {
		return 0, fmt.Errorf("backtest: snapshot %s: %w", path, err)
	}
	defer rows.Close()
	tx, err := st.W.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("backtest: snapshot: %w", err)
	}
	defer tx.Rollback()
	n := 0
	for rows.Next() {
		var typ, key string
		var state []byte
		var c, u int64
		if err := rows.Scan(&typ, &key, &state, &c, &u); err != nil {
			return 0, fmt.Errorf("backtest: snapshot %s: %w", path, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO entities (type, key, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`, typ, key, state, c, u); err != nil {
			return 0, fmt.Errorf("backtest: snapshot: %w", err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("backtest: snapshot %s: %w", path, err)
	}
	return n, tx.Commit()
}

// openReadOnly opens an existing SQLite file without any write: no
// migration, no journal change.
func openReadOnly(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", "10000")
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// collect fills the per-rule lines from the scratch store, the recorder
// and the live database.
func (rep *Report) collect(ctx context.Context, o Options, st *store.Store, rec *recorder) error {
	byName := map[string]*RuleReport{}
	line := func(name string) *RuleReport {
		if r := byName[name]; r != nil {
			return r
		}
		r := &RuleReport{Name: name, Verdicts: map[string]int{}}
		byName[name] = r
		return r
	}
	for _, r := range o.Rules.Rules {
		l := line(r.Name)
		l.InCandidate, l.Mode = true, r.Mode
		if l.Mode == "" {
			l.Mode = "live"
		}
		if o.LiveRules != nil {
			if lr := o.LiveRules.ByName[r.Name]; lr == nil {
				l.Change = "new"
			} else if fingerprint(lr) != fingerprint(r) {
				l.Change = "changed"
			}
		}
	}
	if o.LiveRules != nil {
		for _, r := range o.LiveRules.Rules {
			if o.Rules.ByName[r.Name] == nil {
				line(r.Name).Change = "removed"
			}
		}
	}
	customers := map[string]map[string]bool{}
	addCustomer := func(rule, c string) {
		if c == "" {
			return
		}
		if customers[rule] == nil {
			customers[rule] = map[string]bool{}
		}
		customers[rule][c] = true
	}
	rec.mu.Lock()
	for _, d := range rec.sent {
		line(d.rule).WouldSend++
		addCustomer(d.rule, d.customer)
	}
	rec.mu.Unlock()

	err := query(ctx, st.W, `SELECT rule, verdict, count(*) FROM decisions GROUP BY rule, verdict`, func(s scanner) error {
		var rule, verdict string
		var n int
		if err := s.Scan(&rule, &verdict, &n); err != nil {
			return err
		}
		line(rule).Verdicts[verdict] += n
		return nil
	})
	if err != nil {
		return fmt.Errorf("backtest: read decisions: %w", err)
	}
	err = query(ctx, st.W, `SELECT rule, customer FROM decisions WHERE verdict = 'shadow'`, func(s scanner) error {
		var rule, cust string
		if err := s.Scan(&rule, &cust); err != nil {
			return err
		}
		line(rule).WouldSend++
		addCustomer(rule, cust)
		return nil
	})
	if err != nil {
		return fmt.Errorf("backtest: read decisions: %w", err)
	}
	err = query(ctx, st.W, `SELECT rule, count(*) FROM outbox WHERE status IN ('pending', 'retry', 'sending', 'deferred') GROUP BY rule`, func(s scanner) error {
		var rule string
		var n int
		if err := s.Scan(&rule, &n); err != nil {
			return err
		}
		line(rule).QueuedAtEnd = n
		return nil
	})
	if err != nil {
		return fmt.Errorf("backtest: read outbox: %w", err)
	}
	for name, cs := range customers {
		line(name).Customers = len(cs)
	}

	if err := rep.live(ctx, o, line); err != nil {
		return err
	}
	for _, l := range byName {
		if l.Live != nil {
			l.Diff = l.WouldSend - l.Live.Sent
		}
	}
	// Candidate rules in file order, then the rest by name.
	for _, r := range o.Rules.Rules {
		rep.Rules = append(rep.Rules, *byName[r.Name])
		delete(byName, r.Name)
	}
	rest := make([]string, 0, len(byName))
	for name := range byName {
		rest = append(rest, name)
	}
	sort.Strings(rest)
	for _, name := range rest {
		rep.Rules = append(rep.Rules, *byName[name])
	}
	return nil
}

// live reads what the running rules did in the window, read-only.
func (rep *Report) live(ctx context.Context, o Options, line func(string) *RuleReport) error {
	if o.LiveDB == "" {
		rep.LiveNote = "no live database given"
		return nil
	}
	rep.LiveDB = o.LiveDB
	db, err := openReadOnly(o.LiveDB)
	if errors.Is(err, os.ErrNotExist) {
		rep.LiveNote = "no live database at " + o.LiveDB
		return nil
	}
	if err != nil {
		return fmt.Errorf("backtest: live database: %w", err)
	}
	defer db.Close()
	from, to := store.Millis(rep.Since), store.Millis(rep.Until)
	lives := map[string]*Live{}
	lv := func(name string) *Live {
		if l := lives[name]; l != nil {
			return l
		}
		l := &Live{Verdicts: map[string]int{}}
		lives[name] = l
		line(name).Live = l
		return l
	}
	// Every rule of either set gets a live line, so "0 sent" is shown
	// as 0 rather than unknown.
	for _, r := range o.Rules.Rules {
		lv(r.Name)
	}
	if o.LiveRules != nil {
		for _, r := range o.LiveRules.Rules {
			lv(r.Name)
		}
	}
	err = query(ctx, db, `SELECT rule, status, count(*), count(DISTINCT CASE WHEN customer != '' THEN customer END) FROM outbox
		WHERE created_at >= ? AND created_at <= ? GROUP BY rule, status`, func(s scanner) error {
		var rule, status string
		var n, cust int
		if err := s.Scan(&rule, &status, &n, &cust); err != nil {
			return err
		}
		l := lv(rule)
		switch status {
		case "sent":
			l.Sent += n
			l.Customers += cust // one status per group: no double count
		case "pending", "retry", "sending", "deferred":
			l.Queued += n
		case "failed":
			l.Failed += n
		}
		return nil
	}, from, to)
	if err != nil {
		return fmt.Errorf("backtest: live outbox: %w", err)
	}
	err = query(ctx, db, `SELECT rule, verdict, count(*) FROM decisions WHERE at >= ? AND at <= ? GROUP BY rule, verdict`, func(s scanner) error {
		var rule, verdict string
		var n int
		if err := s.Scan(&rule, &verdict, &n); err != nil {
			return err
		}
		l := lv(rule)
		l.Verdicts[verdict] += n
		if verdict == policy.VerdictShadow {
			l.Shadow += n
		}
		return nil
	}, from, to)
	if err != nil {
		return fmt.Errorf("backtest: live decisions: %w", err)
	}
	return nil
}

type scanner interface{ Scan(...any) error }

func query(ctx context.Context, db *sql.DB, q string, each func(scanner) error, args ...any) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// fingerprint renders what a rule does, to tell a changed rule from an
// unchanged one across two sets. Templates are compared by name only.
func fingerprint(r *rules.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v|%s|%s|%s|%s|%s|%s|%s|%s|%s|", r.Kind, r.On, r.Entity, r.ForEach, r.IfSrc, r.For, r.Expect, r.Within, r.Rearm, r.Schedule)
	if r.Deadline != nil {
		b.WriteString(r.Deadline.Source().String())
	}
	if r.Timezone != nil {
		b.WriteString("|" + r.Timezone.String())
	}
	for _, w := range r.Where {
		fmt.Fprintf(&b, "|where %s=%s", w.Field, w.Src)
	}
	n := r.Notify
	fmt.Fprintf(&b, "|notify %s %s %s %v", n.ToSrc, n.Channel, n.Template, n.Priority)
	for _, v := range n.Vars {
		fmt.Fprintf(&b, " %s=%s", v.Name, v.Src)
	}
	fmt.Fprintf(&b, "|dedup %s %s|holdout %g|mode %s|inhibit %v %s", r.Dedup.KeySrc, r.Dedup.Window, r.Holdout, r.Mode, r.InhibitedBy, r.InhibitFor)
	if r.Cap != nil {
		fmt.Fprintf(&b, "|cap %d/%s", r.Cap.Max, r.Cap.Per)
	}
	if r.Promise != nil {
		fmt.Fprintf(&b, "|promise %s %s", r.Promise.NextUpdateWithin, r.Promise.Template)
	}
	return b.String()
}
