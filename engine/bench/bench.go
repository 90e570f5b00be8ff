// Package bench measures proactived on the machine it runs on: it starts an
// embedded NATS server and the real daemon (engine, SQLite store, JetStream
// intake, outbox dispatcher, webhook channel) on a temporary directory with
// a generated rule set, publishes realistic events and reports
//
//   - the raw JetStream consume rate of the same events with the same ack
//     policy (AckAll per batch) and no processing — measured first, in the
//     same run, as the yardstick;
//   - events/s through the whole engine (decode → state → rules →
//     decisions → outbox commit → ack), on a backlog;
//   - event→decision latency percentiles at several publish rates;
//   - notifications/s written to the outbox (during that drain, and in a
//     burst where nearly every event is a new notification) and delivered
//     to a local webhook;
//   - peak RSS.
//
// `proactived bench` is its command line; the test runs a tiny bench end
// to end. Figures are goals to compare against (BENCHMARKS.md), never
// assertions.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/notifiers/all"
	"github.com/proactived/proactived/triggers/jsintake"
	"github.com/proactived/proactived/triggers/natsembed"
)

// Options say what to measure.
type Options struct {
	Rules    int // total rules (default 1000)
	Matching int // rules per hot subject, i.e. evaluated per event (default 5)
	Events   int // events in the throughput run (default 500,000)
	// Rate is the fixed publish rate of one latency run (default 20,000/s;
	// negative = skip).
	Rate int
	// LatencyFor is how long each latency run publishes (default 5s).
	LatencyFor time.Duration
	// Orders and Customers are the entity keys (default: a few thousand,
	// fewer for small runs).
	Orders, Customers int
	// FireShare is the share of events that fire one rule (default 0.4).
	FireShare float64
	// Burst is the number of events in the outbox run: a backlog in which
	// nearly every event is a new notification, to measure the outbox's
	// write rate alone (default Events/5; negative = skip).
	Burst int
	// Journal keeps the per-event journal (intake.journal); default on, as
	// in the daemon.
	Journal *bool
	// IDs publishes every event with a Nats-Msg-Id, as producers that set
	// their own event ids do: the engine then records each id (seen_ids)
	// to drop a redelivered copy, and the server tracks it for its
	// duplicate window.
	IDs bool
	// Batch is intake.batch (default: the daemon's default).
	Batch int
	// CatchUpBatch is intake.catch_up_batch (0: the daemon's default).
	CatchUpBatch int
	// MaxWait is intake.max_wait (0: the daemon's default).
	MaxWait time.Duration
	// EntityCache is intake.entity_cache (0: the daemon's default).
	EntityCache int
	// Embedded makes the memory run's daemon use its own embedded NATS
	// server (the default deployment) instead of the bench's.
	Embedded bool
	// Dir is the work directory; default a temporary one, removed after.
	Dir string
	// CPUProfile, if set, receives a CPU profile of the engine draining
	// the backlog (not of the delivery and latency runs after it), and
	// CPUProfile+".burst" one of the outbox burst.
	CPUProfile string
	// Trace, if set, receives an execution trace (go tool trace) of the
	// engine draining the backlog: where its goroutine waits.
	Trace string
	// MemProfile, if set, receives the allocations of the engine draining
	// the backlog: an allocs profile taken at the end of the drain, with
	// the one taken at its start beside it as MemProfile+".base" (read it
	// with go tool pprof -sample_index=alloc_space -base FILE.base FILE).
	MemProfile string
	// Progress receives progress lines (nil = none).
	Progress io.Writer
	// Seed makes the generated world reproducible (default 1).
	Seed uint64
}

// Report is what a run measured. JSON field names are stable.
type Report struct {
	Machine   Machine `json:"machine"`
	Rules     int     `json:"rules"`
	Matching  int     `json:"matching_rules_per_event"`
	Subjects  int     `json:"hot_subjects"`
	Events    int     `json:"events"`
	Orders    int     `json:"orders"`
	Customers int     `json:"customers"`
	Journal   bool    `json:"journal"`
	// IDs: every event carried a Nats-Msg-Id (Options.IDs).
	IDs   bool `json:"event_ids"`
	Batch int  `json:"batch"`
	// CatchUpBatch is intake.catch_up_batch: the batch over a backlog.
	CatchUpBatch int `json:"catch_up_batch"`
	AvgBytes     int `json:"avg_event_bytes"`

	PublishRate float64 `json:"publish_events_per_sec"`
	RawRate     float64 `json:"raw_consume_events_per_sec"`
	EngineRate  float64 `json:"engine_events_per_sec"`
	Ratio       float64 `json:"engine_to_raw_ratio"`
	EngineSecs  float64 `json:"engine_seconds"`
	// EngineCPUus is the whole process's CPU time (user + system, every
	// goroutine: engine, its SQLite writers, NATS server, GC) per event of
	// the drain. Less sensitive than the rate to what else runs on the
	// machine, so it is what to compare between two builds.
	EngineCPUus float64 `json:"engine_cpu_us_per_event"`

	FiringEvents int     `json:"firing_events"`
	OutboxRows   int     `json:"notifications_written"`
	OutboxRate   float64 `json:"notifications_written_per_sec"`
	// Burst is the outbox run (zero when skipped): a burst of events in
	// which nearly every event is a new notification.
	Burst     Burst `json:"outbox_burst"`
	Expected  int   `json:"notifications_expected"`
	Delivered int   `json:"notifications_delivered"`
	// Duplicates are repeated deliveries of a notification (same
	// idempotency key). The sink holds requests during the engine run; one
	// released just as the daemon's 30 s HTTP client timeout expires is
	// answered after the sender gave up, and sent again: at most the
	// dispatcher's in-flight sends.
	Duplicates  int     `json:"notifications_duplicate_deliveries"`
	Unexpected  int     `json:"notifications_unexpected"`
	DeliverRate float64 `json:"notifications_delivered_per_sec"`
	DeliverSecs float64 `json:"delivery_seconds"`

	Latency []Latency `json:"latency"`

	PeakRSSMB float64 `json:"peak_rss_mb"`
	// Targets are SPEC.md's goals this run measures, each met or not
	// (targets.go); NotMeasured names the others and how to measure them.
	Targets     []Target `json:"targets"`
	NotMeasured string   `json:"targets_not_measured"`
	Load        string   `json:"load_before"`
	LoadAfter   string   `json:"load_after"`
}

// Burst is what the outbox run measured.
type Burst struct {
	Events int `json:"events"`
	// Expected is the new notifications the generator made (fewer than
	// Events when a small world runs out of new rule-and-order pairs).
	Expected      int     `json:"notifications_expected"`
	Notifications int     `json:"notifications_written"`
	Secs          float64 `json:"seconds"`
	// Rate is notifications written to the outbox a second, from the
	// daemon's first commit of the burst to its last.
	Rate float64 `json:"notifications_written_per_sec"`
	// CPUus is the whole process's CPU time a notification written.
	CPUus float64 `json:"cpu_us_per_notification"`
}

// Latency is one latency run.
type Latency struct {
	Name   string  `json:"name"` // "half", "fixed", "max"
	Target float64 `json:"target_events_per_sec"`
	Actual float64 `json:"published_events_per_sec"`
	Events int     `json:"events"`
	// Samples are the events that fired a rule (event→decision).
	Samples int     `json:"samples"`
	P50ms   float64 `json:"p50_ms"`
	P95ms   float64 `json:"p95_ms"`
	P99ms   float64 `json:"p99_ms"`
	Maxms   float64 `json:"max_ms"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model"`
	MemMB  int    `json:"mem_mb"`
	GoVer  string `json:"go"`
	GOARCH string `json:"goarch"`
}

func (o *Options) defaults() {
	if o.Rules <= 0 {
		o.Rules = 1000
	}
	if o.Matching <= 0 {
		o.Matching = 5
	}
	o.Matching = min(o.Matching, o.Rules)
	if o.Events <= 0 {
		o.Events = 500_000
	}
	if o.Rate == 0 {
		o.Rate = 20_000
	}
	if o.LatencyFor <= 0 {
		o.LatencyFor = 5 * time.Second
	}
	if o.Orders <= 0 {
		o.Orders = min(4000, max(10, o.Events/20))
	}
	if o.Customers <= 0 {
		o.Customers = max(1, o.Orders/4)
	}
	if o.FireShare <= 0 {
		o.FireShare = 0.4
	}
	if o.Burst == 0 {
		o.Burst = o.Events / 5
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// runner is one bench in progress.
type runner struct {
	o       Options
	dir     string
	w       *world
	ns      *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	sink    *sink
	cfg     *config.Config
	cfgText string // the daemon's configuration file, for a child process
	d       *daemon.Daemon
	commits commitLog
	// pubErr is the first asynchronous publish error.
	pubErr atomic.Value
	firing int
	bytes  int64
	sent   int
}

// eventID is the id of the bench's i-th event: UUID-shaped and random
// looking, as most producers' ids are (a random key is the costly case for
// the id's B-tree; a time-ordered one appends).
func eventID(i int) string {
	mix := func(x uint64) uint64 { // splitmix64's finalizer
		x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
		x = (x ^ x>>27) * 0x94d049bb133111eb
		return x ^ x>>31
	}
	a, b := mix(uint64(i)+1), mix(uint64(i)^0x9e3779b97f4a7c15)
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, a>>16&0xffff, a&0xfff, b>>48&0x3fff|0x8000, b&0xffffffffffff)
}

// Run runs the whole bench and returns its report.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	o.defaults()
	rep = &Report{Machine: machine(), Rules: o.Rules, Matching: o.Matching, Events: o.Events,
		Orders: o.Orders, Customers: o.Customers, Journal: o.Journal == nil || *o.Journal, IDs: o.IDs, Load: loadAvg()}
	r, done, err := newRunner(o)
	if err != nil {
		return nil, err
	}
	defer done()
	rep.Subjects = len(r.w.hot)
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	rep.Batch, rep.CatchUpBatch = r.cfg.Intake.Batch, r.cfg.Intake.CatchUpBatch

	// 1. Publish the backlog, then consume it raw: the yardstick.
	r.progress("publishing %d events (%d rules, %d per event, %d subjects, %d orders, %d customers)",
		o.Events, o.Rules, o.Matching, len(r.w.hot), o.Orders, o.Customers)
	start := time.Now()
	if _, err := r.publish(ctx, o.Events, 0); err != nil {
		return nil, err
	}
	rep.PublishRate = float64(o.Events) / time.Since(start).Seconds()
	rep.AvgBytes = int(r.bytes / int64(r.sent))
	r.progress("published at %.0f events/s; raw JetStream consume (AckAll per batch of %d, no processing)", rep.PublishRate, rep.Batch)
	if rep.RawRate, err = r.raw(ctx, o.Events); err != nil {
		return nil, err
	}
	r.progress("raw consume: %.0f events/s", rep.RawRate)

	// 2. The engine drains the same backlog.
	if err := r.engine(ctx, rep); err != nil {
		return nil, err
	}

	// 3. Latency at half the measured maximum, at the fixed rate, and at
	// the maximum.
	runs := []struct {
		name string
		rate float64
	}{{"half", rep.EngineRate / 2}}
	if o.Rate > 0 {
		runs = append(runs, struct {
			name string
			rate float64
		}{"fixed", float64(o.Rate)})
	}
	runs = append(runs, struct {
		name string
		rate float64
	}{"max", rep.EngineRate})
	for _, lr := range runs {
		l, err := r.latency(ctx, lr.name, lr.rate)
		if err != nil {
			return nil, err
		}
		rep.Latency = append(rep.Latency, l)
	}

	// 4. The outbox's write rate alone.
	if err := r.burst(ctx, rep); err != nil {
		return nil, err
	}

	// 5. Everything expected reaches the webhook.
	if err := r.drain(ctx, rep); err != nil {
		return nil, err
	}
	rep.PeakRSSMB = peakRSS()
	rep.LoadAfter = loadAvg()
	rep.Targets, rep.NotMeasured = rep.targets(), notMeasured
	return rep, nil
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.o.Progress, "bench: "+format+"\n", args...)
}

// extraIntake adds the intake keys the options set to the daemon's
// configuration file, which both the in-process run and the memory run's
// child daemon read.
func extraIntake(o Options) string {
	var s string
	if o.Batch > 0 {
		s += fmt.Sprintf(", batch: %d", o.Batch)
	}
	if o.CatchUpBatch > 0 {
		s += fmt.Sprintf(", catch_up_batch: %d", o.CatchUpBatch)
	}
	if o.MaxWait > 0 {
		s += fmt.Sprintf(", max_wait: %s", o.MaxWait)
	}
	if o.EntityCache > 0 {
		s += fmt.Sprintf(", entity_cache: %d", o.EntityCache)
	}
	return s
}

// newRunner prepares a run of o (defaults applied): its work directory and
// generated world. done stops what the run started and removes a temporary
// directory.
func newRunner(o Options) (r *runner, done func(), err error) {
	r = &runner{o: o, dir: o.Dir}
	removeDir := func() {}
	if r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "proactived-bench-"); err != nil {
			return nil, nil, fmt.Errorf("bench: %w", err)
		}
		removeDir = func() { os.RemoveAll(r.dir) }
	}
	r.w = newWorld(o.Seed, o.Rules, o.Matching, o.Orders, o.Customers, o.FireShare)
	return r, func() { r.close(); removeDir() }, nil
}

// dial connects the publisher to a NATS server; asynchronous publish errors
// land in r.pubErr.
func (r *runner) dial(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name("proactived-bench"))
	if err != nil {
		return nil, nil, fmt.Errorf("bench: connect: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			r.pubErr.CompareAndSwap(nil, err)
		}))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	return nc, js, nil
}

// setup starts NATS and the sink, writes the rules and the config and
// creates the stream the daemon will bind.
func (r *runner) setup(ctx context.Context) error {
	ns, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(r.dir, "nats")})
	if err != nil {
		return err
	}
	r.ns = ns
	if r.nc, r.js, err = r.dial(ns.ClientURL()); err != nil {
		return err
	}
	if r.sink, err = startSink(); err != nil {
		return err
	}
	rulesDir := filepath.Join(r.dir, "rules")
	if err := r.w.writeRules(rulesDir); err != nil {
		return err
	}
	journal := r.o.Journal == nil || *r.o.Journal
	text := fmt.Sprintf(`
channels:
  webhook: { type: webhook, url: %q }
defaults: { channels: [webhook], locale: en, timezone: UTC }
policy:
  frequency_cap: { max: 0 }
  quiet_hours: { start: "", end: "" }
  # A long per-attempt timeout: the sink holds requests while the engine
  # is measured, and a send must not time out (and repeat) meanwhile.
  retry: { attempts: 5, backoff: 1s, max_backoff: 10s, timeout: 30m }
intake: { journal: %t%s }
http: { addr: "off" }
log: { level: warn }
`, r.sink.url, journal, extraIntake(r.o))
	r.cfgText = text
	cfg := config.Default()
	if err := config.Parse(cfg, "bench.yaml", []byte(text), func(string) (string, bool) { return "", false }); err != nil {
		return fmt.Errorf("bench: config: %w", err)
	}
	cfg.Rules = rulesDir
	cfg.Data = filepath.Join(r.dir, "data")
	cfg.NATS.URL = ns.ClientURL()
	r.cfg = cfg
	set, err := daemon.LoadRules(cfg)
	if err != nil {
		return fmt.Errorf("bench: generated rules: %w", err)
	}
	// The stream exactly as the daemon would create it, so it binds it.
	in, err := jsintake.New(jsintake.Options{Conn: r.nc, Stream: cfg.NATS.Stream, Consumer: cfg.NATS.Consumer,
		DeadPrefix: cfg.NATS.DeadPrefix, Handler: nopHandler{}, MaxAge: cfg.NATS.MaxAge.D()})
	if err != nil {
		return err
	}
	return in.EnsureStream(ctx, set.Subjects())
}

func (r *runner) close() {
	if r.d != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = r.d.Stop(sctx)
		cancel()
	}
	if r.sink != nil {
		r.sink.close()
	}
	if r.nc != nil {
		r.nc.Close()
	}
	if r.ns != nil {
		r.ns.Shutdown()
		r.ns.WaitForShutdown()
	}
}

// published is what a publish run records per event, for latency.
type published struct {
	at   []time.Time
	fire []bool
	seq0 uint64 // stream sequence of the first event
}

// publish generates and publishes n events, as fast as possible (rate 0)
// or paced at rate events/s.
func (r *runner) publish(ctx context.Context, n int, rate float64) (*published, error) {
	info, err := r.js.Stream(ctx, r.cfg.NATS.Stream)
	if err != nil {
		return nil, fmt.Errorf("bench: stream: %w", err)
	}
	p := &published{seq0: info.CachedInfo().State.LastSeq + 1}
	if rate > 0 {
		p.at = make([]time.Time, 0, n)
		p.fire = make([]bool, 0, n)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if rate > 0 {
			// Pace: sleep until event i is due.
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		now := time.Now()
		ev := r.w.next(now)
		if ev.fires >= 0 {
			r.firing++
		}
		r.bytes += int64(len(ev.body))
		r.sent++
		if rate > 0 {
			p.at = append(p.at, now)
			p.fire = append(p.fire, ev.fires >= 0)
		}
		// A loaded machine may take a while to ack: wait rather than fail.
		opts := []jetstream.PublishOpt{jetstream.WithStallWait(time.Minute)}
		if r.o.IDs {
			opts = append(opts, jetstream.WithMsgID(eventID(r.sent)))
		}
		if _, err := r.js.PublishAsync(ev.subject, ev.body, opts...); err != nil {
			return nil, fmt.Errorf("bench: publish: %w", err)
		}
		if i%20000 == 19999 && rate == 0 {
			r.progress("published %d/%d", i+1, n)
		}
	}
	select {
	case <-r.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return nil, errors.New("bench: publish acks timed out")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if v := r.pubErr.Load(); v != nil {
		return nil, fmt.Errorf("bench: publish: %w", v.(error))
	}
	info, err = r.js.Stream(ctx, r.cfg.NATS.Stream)
	if err != nil {
		return nil, fmt.Errorf("bench: stream: %w", err)
	}
	if last := info.CachedInfo().State.LastSeq; last != p.seq0+uint64(n)-1 {
		return nil, fmt.Errorf("bench: stream sequences %d..%d, want %d..%d: someone else publishes to the stream", p.seq0, last, p.seq0, p.seq0+uint64(n)-1)
	}
	return p, nil
}

// raw consumes n events with the intake's ack policy — AckAll, one ack per
// batch, batches growing to the catch-up size over a backlog, the same
// pull size — and does nothing else.
func (r *runner) raw(ctx context.Context, n int) (float64, error) {
	batchN := max(r.cfg.Intake.Batch, r.cfg.Intake.CatchUpBatch)
	buffered, maxAckPending := jsintake.Flow(r.cfg.Intake.Batch, batchN)
	cons, err := r.js.CreateConsumer(ctx, r.cfg.NATS.Stream, jetstream.ConsumerConfig{
		Durable: "bench-raw", AckPolicy: jetstream.AckAllPolicy, AckWait: 30 * time.Second,
		MaxAckPending: maxAckPending, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("bench: raw consumer: %w", err)
	}
	defer func() { _ = r.js.DeleteConsumer(context.WithoutCancel(ctx), r.cfg.NATS.Stream, "bench-raw") }()
	msgs := make(chan jetstream.Msg, buffered)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-cctx.Done():
		}
	}, jetstream.PullMaxMessages(buffered))
	if err != nil {
		return 0, fmt.Errorf("bench: raw consume: %w", err)
	}
	defer cc.Stop()
	got, firstN := 0, 0
	var first time.Time
	batch := make([]jetstream.Msg, 0, batchN)
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	for got < n {
		batch = batch[:0]
		select {
		case m := <-msgs:
			batch = append(batch, m)
		case <-timeout.C:
			return 0, fmt.Errorf("bench: raw consume stalled at %d/%d", got, n)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	fill:
		for len(batch) < batchN {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		if err := batch[len(batch)-1].Ack(); err != nil {
			return 0, fmt.Errorf("bench: raw ack: %w", err)
		}
		got += len(batch)
		if first.IsZero() {
			first, firstN = time.Now(), got
		}
	}
	secs := time.Since(first).Seconds()
	if got == firstN || secs <= 0 {
		return float64(got) / max(secs, 1e-3), nil
	}
	return float64(got-firstN) / secs, nil
}

// commitLog records the engine's commits (stream position, time).
type commitLog struct {
	mu   sync.Mutex
	seqs []uint64
	at   []time.Time
	n    int
}

func (c *commitLog) add(seq uint64, events int) {
	now := time.Now()
	c.mu.Lock()
	c.seqs = append(c.seqs, seq)
	c.at = append(c.at, now)
	c.n += events
	c.mu.Unlock()
}

func (c *commitLog) last() (uint64, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seqs) == 0 {
		return 0, time.Time{}
	}
	return c.seqs[len(c.seqs)-1], c.at[len(c.at)-1]
}

// commitOf returns the first commit that covers seq: its position and
// time.
func (c *commitLog) commitOf(seq uint64) (uint64, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, _ := slices.BinarySearch(c.seqs, seq)
	if i == len(c.seqs) {
		return 0, time.Time{}, false
	}
	return c.seqs[i], c.at[i], true
}

// engine starts the daemon over the backlog and measures it draining.
func (r *runner) engine(ctx context.Context, rep *Report) error {
	d, err := daemon.New(daemon.Options{
		Config: r.cfg, Registry: all.Registry(), OnCommit: r.commits.add, WatchDebounce: -1,
		Logger: slog.New(slog.NewTextHandler(r.o.Progress, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	stopProfile, err := recordTo(r.o.CPUProfile, "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	r.progress("engine: draining the backlog")
	if err := d.Start(ctx); err != nil {
		return err
	}
	r.d = d
	cpu0 := processCPU()
	if err := writeAllocs(r.o.MemProfile, ".base"); err != nil {
		return err
	}
	stopTrace, err := recordTo(r.o.Trace, "trace", trace.Start, trace.Stop)
	if err != nil {
		return err
	}
	target := uint64(r.o.Events)
	err = r.waitSeq(ctx, target, true)
	cpu := processCPU() - cpu0
	stopTrace()
	stopProfile()
	if err != nil {
		return err
	}
	if err := writeAllocs(r.o.MemProfile, ""); err != nil {
		return err
	}
	r.commits.mu.Lock()
	firstSeq, firstAt := r.commits.seqs[0], r.commits.at[0]
	lastAt := r.commits.at[len(r.commits.at)-1]
	r.commits.mu.Unlock()
	secs := lastAt.Sub(firstAt).Seconds()
	rep.EngineSecs = secs
	if secs > 0 && target > firstSeq {
		rep.EngineRate = float64(target-firstSeq) / secs
	} else {
		rep.EngineRate = float64(target) / max(secs, 1e-3)
	}
	if rep.RawRate > 0 {
		rep.Ratio = rep.EngineRate / rep.RawRate
	}
	if target > 0 {
		rep.EngineCPUus = float64(cpu.Microseconds()) / float64(target)
	}
	rep.FiringEvents = r.firing
	rows, err := r.outboxRows(ctx)
	if err != nil {
		return err
	}
	rep.OutboxRows = rows
	rep.OutboxRate = float64(rows) / max(secs, 1e-3)
	r.progress("engine: %.0f events/s (%.2f× raw), %d notifications written", rep.EngineRate, rep.Ratio, rows)

	// Delivery alone: the sink held every request while the engine ran,
	// so the outbox is full; open it and time the dispatcher draining it.
	r.progress("webhook: delivering the backlog's %d notifications", r.w.expected())
	r.sink.open()
	if err := r.waitDelivered(ctx, r.w.expected()); err != nil {
		return err
	}
	n, took := r.sink.drained()
	rep.DeliverSecs = took.Seconds()
	if rep.DeliverSecs > 0 {
		rep.DeliverRate = float64(n) / rep.DeliverSecs
	}
	r.progress("webhook: %d delivered in %.1fs, %.0f/s", n, rep.DeliverSecs, rep.DeliverRate)
	return nil
}

// burst measures the outbox's write rate alone. The drain's figure is
// bounded by its mix (at the default fire share about a third of its
// events are new notifications); here Burst events in which nearly every
// event fires a rule for an order it has not fired for yet are published
// as fast as possible to the running daemon, with the webhook held as in
// the drain — so what is timed is decode → state → rules → decision →
// outbox row → commit for one notification an event. The publisher is
// done long before the engine (it runs ~5× faster), so the engine works
// through a backlog for most of the run.
func (r *runner) burst(ctx context.Context, rep *Report) error {
	n := r.o.Burst
	if n <= 0 {
		return nil
	}
	if err := r.waitDelivered(ctx, r.w.expected()); err != nil {
		return err
	}
	before, err := r.outboxRows(ctx)
	if err != nil {
		return err
	}
	r.sink.hold()
	defer r.sink.open()
	r.progress("outbox: %d events, nearly each a new notification", n)
	// The firing share the report gives is the drain's and the latency
	// runs' mix: the burst's events are not counted in it.
	r.w.onlyNew = true
	expected, firing := r.w.expected(), r.firing
	stopProfile, err := recordTo(burstProfile(r.o.CPUProfile), "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	cpu0 := processCPU()
	p, err := r.publish(ctx, n, 0)
	r.w.onlyNew, r.firing = false, firing
	if err != nil {
		return err
	}
	expected = r.w.expected() - expected
	last := p.seq0 + uint64(n) - 1
	if err := r.waitSeq(ctx, last, true); err != nil {
		return err
	}
	cpu := processCPU() - cpu0
	stopProfile()
	after, err := r.outboxRows(ctx)
	if err != nil {
		return err
	}
	firstSeq, firstAt, ok := r.commits.commitOf(p.seq0)
	_, lastAt := r.commits.last()
	if !ok {
		return fmt.Errorf("bench: no commit covers sequence %d", p.seq0)
	}
	b := Burst{Events: n, Expected: expected, Notifications: after - before, Secs: lastAt.Sub(firstAt).Seconds()}
	// The first commit's events are timed from its end: count only the
	// notifications of the events after it.
	timed := float64(b.Notifications) * float64(last-firstSeq) / float64(n)
	b.Rate = timed / max(b.Secs, 1e-3)
	if b.Notifications > 0 {
		b.CPUus = float64(cpu.Microseconds()) / float64(b.Notifications)
	}
	rep.Burst = b
	r.progress("outbox: %d notifications from %d events, %.0f/s written", b.Notifications, n, b.Rate)
	return nil
}

// burstProfile is where the outbox burst's CPU profile goes: beside the
// drain's, with ".burst" added ("" without one).
func burstProfile(path string) string {
	if path == "" {
		return ""
	}
	return path + ".burst"
}

// recordTo starts a CPU profile or an execution trace into path (nothing
// when path is empty) and returns what stops it.
func recordTo(path, what string, start func(io.Writer) error, stop func()) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", what, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: %s: %w", what, err)
	}
	return sync.OnceFunc(func() {
		stop()
		f.Close()
	}), nil
}

// writeAllocs writes the allocs profile so far to path+suffix (nothing
// without a path).
func writeAllocs(path, suffix string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path + suffix)
	if err != nil {
		return fmt.Errorf("bench: memory profile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("bench: memory profile: %w", err)
	}
	return f.Close()
}

func (r *runner) outboxRows(ctx context.Context) (int, error) {
	var n int
	if err := r.d.Store().R.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("bench: count outbox: %w", err)
	}
	return n, nil
}

// waitSeq waits until the engine committed seq.
func (r *runner) waitSeq(ctx context.Context, seq uint64, report bool) error {
	lastProgress := time.Now()
	stall := time.Now()
	var prev uint64
	for {
		got, _ := r.commits.last()
		if got >= seq {
			return nil
		}
		if got != prev {
			prev, stall = got, time.Now()
		}
		if time.Since(stall) > time.Minute {
			return fmt.Errorf("bench: engine stalled at stream sequence %d of %d", got, seq)
		}
		select {
		case err := <-r.d.Errors():
			return fmt.Errorf("bench: daemon: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if report && time.Since(lastProgress) > 2*time.Second {
			lastProgress = time.Now()
			r.progress("engine: %d/%d", got, seq)
		}
	}
}

func (r *runner) waitDelivered(ctx context.Context, want int) error {
	stall, prev := time.Now(), -1
	for {
		n := r.sink.count()
		if n >= want {
			return nil
		}
		if n != prev {
			prev, stall = n, time.Now()
		}
		if time.Since(stall) > time.Minute {
			return fmt.Errorf("bench: webhook got %d of %d expected notifications and nothing more for a minute", n, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// latency publishes at rate for LatencyFor and measures, for each event
// that fires a rule, the time from its publication to the commit of its
// batch (which holds its decision and outbox row).
func (r *runner) latency(ctx context.Context, name string, rate float64) (Latency, error) {
	l := Latency{Name: name, Target: rate}
	// Start quiet: everything earlier runs queued has been delivered.
	if err := r.waitDelivered(ctx, r.w.expected()); err != nil {
		return l, err
	}
	n := max(100, int(rate*r.o.LatencyFor.Seconds()))
	r.progress("latency (%s): %d events at %.0f/s", name, n, rate)
	start := time.Now()
	p, err := r.publish(ctx, n, rate)
	if err != nil {
		return l, err
	}
	l.Actual = float64(n) / time.Since(start).Seconds()
	l.Events = n
	if err := r.waitSeq(ctx, p.seq0+uint64(n)-1, false); err != nil {
		return l, err
	}
	var lat []time.Duration
	for i, at := range p.at {
		if !p.fire[i] {
			continue
		}
		_, c, ok := r.commits.commitOf(p.seq0 + uint64(i))
		if !ok {
			return l, fmt.Errorf("bench: no commit covers sequence %d", p.seq0+uint64(i))
		}
		lat = append(lat, c.Sub(at))
	}
	l.Samples = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		pct := func(q float64) float64 {
			i := min(len(lat)-1, int(q*float64(len(lat))))
			return float64(lat[i].Microseconds()) / 1000
		}
		l.P50ms, l.P95ms, l.P99ms, l.Maxms = pct(0.50), pct(0.95), pct(0.99), float64(lat[len(lat)-1].Microseconds())/1000
	}
	r.progress("latency (%s): p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (published at %.0f/s)", name, l.P50ms, l.P95ms, l.P99ms, l.Actual)
	return l, nil
}

// drain waits for every expected notification and checks none is extra.
func (r *runner) drain(ctx context.Context, rep *Report) error {
	rep.Expected = r.w.expected()
	if err := r.waitDelivered(ctx, rep.Expected); err != nil {
		return err
	}
	// A short grace for anything unexpected still in flight.
	time.Sleep(200 * time.Millisecond)
	rep.Delivered, rep.Duplicates = r.sink.stats()
	rep.Unexpected = max(0, rep.Delivered-rep.Expected)
	rep.FiringEvents = r.firing
	if rep.Delivered != rep.Expected {
		return fmt.Errorf("bench: webhook got %d distinct notifications, the generator expected %d", rep.Delivered, rep.Expected)
	}
	return nil
}

// nopHandler lets the bench use jsintake.EnsureStream without an engine.
type nopHandler struct{}

func (nopHandler) Accept(event.Raw) (any, *event.Rejection)    { return nil, nil }
func (nopHandler) Commit(context.Context, []any, uint64) error { return nil }
func (nopHandler) LastSeq() uint64                             { return 0 }
func (nopHandler) ResetSeq(uint64)                             {}
func (nopHandler) Tick(context.Context) (bool, error)          { return false, nil }

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVer: runtime.Version(), GOARCH: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemMB = kb / 1024
		}
	}
	return m
}

// peakRSS is VmHWM of this process (MB): engine, NATS server, publisher
// and sink together.
func peakRSS() float64 { return procStatusMB("/proc/self/status", "VmHWM:") }

// procStatusMB reads one kB figure of a /proc/<pid>/status file, in MB.
func procStatusMB(path, field string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb float64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kb); err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
