// Package metrics is proactived's Prometheus instrumentation. One Metrics
// is created per daemon with its own registry (no global default registry,
// so two daemons in one test binary never share or clash), and it is the
// observer the engine, the intake and the outbox dispatcher report to.
//
// The engine reports every rule evaluation and decision on its hot path, so
// the labelled children are looked up once per label set and cached: an
// observation is a read-locked map lookup and an atomic add, without
// allocation.
package metrics

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/outbox"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/triggers/jsintake"
)

const namespace = "proactived"

// Compile-time checks: Metrics is the observer of all three parts.
var (
	_ engine.Observer   = (*Metrics)(nil)
	_ jsintake.Observer = (*Metrics)(nil)
	_ outbox.Observer   = (*Metrics)(nil)
)

// Metrics holds the registry and every series.
type Metrics struct {
	reg *prometheus.Registry

	consumed      prometheus.Counter
	deadLettered  *prometheus.CounterVec
	pending       prometheus.Gauge
	evaluations   *prometheus.CounterVec
	fires         *prometheus.CounterVec
	ruleErrors    *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	outboxDepth   *prometheus.GaugeVec
	attempts      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	channelDown   *prometheus.GaugeVec
	reloads       *prometheus.CounterVec
	rulesLoaded   prometheus.Gauge
	timersPending prometheus.Gauge
	pruned        *prometheus.CounterVec

	// Caches of labelled children. The engine calls from one goroutine,
	// the dispatcher from many: a read lock keeps lookups cheap.
	mu       sync.RWMutex
	rules    map[string]*ruleSeries
	decided  map[decisionKey]prometheus.Counter
	dead     map[string]prometheus.Counter
	channels map[string]*channelSeries

	depthMu   sync.Mutex
	depthSeen map[string]bool
	// samples counts SampleStore calls: every fullSampleEvery-th also
	// counts the final statuses.
	samples int
}

// Counting the waiting statuses (store.WaitingStatuses) reads a range of
// the status index: what is waiting, not the outbox's history.
func isLive(status string) bool { return strings.Contains(store.WaitingStatuses, "'"+status+"'") }

// fullSampleEvery: the final statuses (sent, failed, superseded, capped)
// are counted at every fullSampleEvery-th sample only (every minute at
// the daemon's default 5 s). Counting them reads every such row the outbox
// ever had — 0.25 s at 5 million rows — and they only grow, so a minute
// late is enough for an alert on new failures.
const fullSampleEvery = 12

type ruleSeries struct {
	evaluations, fires, errors prometheus.Counter
}

type decisionKey struct{ rule, verdict, mode string }

type channelSeries struct {
	ok, failed prometheus.Counter
	duration   prometheus.Observer
}

// New creates the metrics and registers them, with the Go and process
// collectors, on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "events_consumed_total",
			Help: "Messages taken from the stream and acked (accepted, skipped as already committed, or dead-lettered)."}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "events_dead_lettered_total",
			Help: "Events published to proactive.dead.<reason> instead of being processed."}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "consumer_pending",
			Help: "Messages in the stream not yet delivered to the durable consumer (backlog), sampled periodically."}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rule_evaluations_total",
			Help: "Evaluations of a rule's condition."}, []string{"rule"}),
		fires: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rule_fires_total",
			Help: "Evaluations whose condition was true."}, []string{"rule"}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rule_errors_total",
			Help: "Evaluations that failed with an expression error (recorded as an error decision)."}, []string{"rule"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "decisions_total",
			Help: "Verdicts recorded by the engine, by rule, verdict and mode (live or shadow)."}, []string{"rule", "verdict", "mode"}),
		outboxDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "outbox_depth",
			Help: "Outbox rows by status, sampled periodically."}, []string{"status"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "delivery_attempts_total",
			Help: "Delivery attempts by channel and result (ok or error)."}, []string{"channel", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "delivery_duration_seconds",
			Help:    "Time a channel took to answer one delivery attempt.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"channel"}),
		channelDown: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "channel_down",
			Help: "1 while the dispatcher counts a channel as down and probes it (engine/outbox/probe.go), 0 once it is back."}, []string{"channel"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "reloads_total",
			Help: "Rule reloads by result (ok or error; on error the old rules keep running)."}, []string{"result"}),
		rulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "rules_loaded",
			Help: "Rules in the set in force."}),
		timersPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "timers_pending",
			Help: "Armed timers (absence deadlines, for: hold-downs, promises), sampled periodically."}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "history_pruned_rows_total",
			Help: "Rows deleted from SQLite because they are older than the retention (or expired dedup marks), by table."}, []string{"table"}),
		rules:     map[string]*ruleSeries{},
		decided:   map[decisionKey]prometheus.Counter{},
		dead:      map[string]prometheus.Counter{},
		channels:  map[string]*channelSeries{},
		depthSeen: map[string]bool{},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.consumed, m.deadLettered, m.pending, m.evaluations, m.fires, m.ruleErrors, m.decisions,
		m.outboxDepth, m.attempts, m.duration, m.channelDown, m.reloads, m.rulesLoaded, m.timersPending, m.pruned,
	)
	// Series that alerts rely on exist from the start, at zero.
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	// The outbox row states exist at 0 from the start, so an alert on them
	// never meets a missing series.
	for _, s := range []string{"pending", "deferred", "retry", "sending", "sent", "failed", "superseded", "capped"} {
		m.outboxDepth.WithLabelValues(s)
		m.depthSeen[s] = true
	}
	return m
}

// Registry is the daemon's registry (tests, extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Evaluated implements engine.Observer.
func (m *Metrics) Evaluated(rule string, fired, failed bool) {
	s := m.rule(rule)
	s.evaluations.Inc()
	if fired {
		s.fires.Inc()
	}
	if failed {
		s.errors.Inc()
	}
}

func (m *Metrics) rule(name string) *ruleSeries {
	m.mu.RLock()
	s := m.rules[name]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.rules[name]; s == nil {
		s = &ruleSeries{
			evaluations: m.evaluations.WithLabelValues(name),
			fires:       m.fires.WithLabelValues(name),
			errors:      m.ruleErrors.WithLabelValues(name),
		}
		m.rules[name] = s
	}
	return s
}

// Decided implements engine.Observer.
func (m *Metrics) Decided(rule, verdict, mode string) {
	k := decisionKey{rule, verdict, mode}
	m.mu.RLock()
	c := m.decided[k]
	m.mu.RUnlock()
	if c == nil {
		m.mu.Lock()
		if c = m.decided[k]; c == nil {
			c = m.decisions.WithLabelValues(rule, verdict, mode)
			m.decided[k] = c
		}
		m.mu.Unlock()
	}
	c.Inc()
}

// Consumed implements jsintake.Observer.
func (m *Metrics) Consumed(n int) { m.consumed.Add(float64(n)) }

// DeadLettered implements jsintake.Observer.
func (m *Metrics) DeadLettered(reason string) {
	m.mu.RLock()
	c := m.dead[reason]
	m.mu.RUnlock()
	if c == nil {
		m.mu.Lock()
		if c = m.dead[reason]; c == nil {
			c = m.deadLettered.WithLabelValues(reason)
			m.dead[reason] = c
		}
		m.mu.Unlock()
	}
	c.Inc()
}

// Pending implements jsintake.Observer.
func (m *Metrics) Pending(n uint64) { m.pending.Set(float64(n)) }

// ChannelDown implements outbox.Observer: a channel was found down, or
// came back.
func (m *Metrics) ChannelDown(channel string, down bool) {
	v := 0.0
	if down {
		v = 1
	}
	m.channelDown.WithLabelValues(channel).Set(v)
}

// Attempt implements outbox.Observer.
func (m *Metrics) Attempt(channel string, ok bool, d time.Duration) {
	m.mu.RLock()
	s := m.channels[channel]
	m.mu.RUnlock()
	if s == nil {
		m.mu.Lock()
		if s = m.channels[channel]; s == nil {
			s = &channelSeries{
				ok:       m.attempts.WithLabelValues(channel, "ok"),
				failed:   m.attempts.WithLabelValues(channel, "error"),
				duration: m.duration.WithLabelValues(channel),
			}
			m.channels[channel] = s
		}
		m.mu.Unlock()
	}
	if ok {
		s.ok.Inc()
	} else {
		s.failed.Inc()
	}
	s.duration.Observe(d.Seconds())
}

// Reloaded counts a reload; on success rules is the size of the new set.
func (m *Metrics) Reloaded(ok bool, rules int) {
	if !ok {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.rulesLoaded.Set(float64(rules))
}

// Pruned counts rows deleted by history retention, by table.
func (m *Metrics) Pruned(deleted map[string]int64) {
	for table, n := range deleted {
		m.pruned.WithLabelValues(table).Add(float64(n))
	}
}

// RulesLoaded sets the size of the rule set in force (start-up).
func (m *Metrics) RulesLoaded(n int) { m.rulesLoaded.Set(float64(n)) }

// SampleStore updates the gauges read from the store: outbox depth by
// status and armed timers. db should be the read pool, so sampling never
// queues behind the writer. The waiting statuses are counted every time,
// the final ones at the first sample and every fullSampleEvery-th after.
func (m *Metrics) SampleStore(ctx context.Context, db *sql.DB) error {
	m.depthMu.Lock()
	full := m.samples%fullSampleEvery == 0
	m.samples++
	m.depthMu.Unlock()
	q := `SELECT status, count(*) FROM outbox WHERE status IN ` + store.WaitingStatuses + ` GROUP BY status`
	if full {
		q = `SELECT status, count(*) FROM outbox GROUP BY status`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("sample outbox depth: %w", err)
	}
	depth := map[string]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return fmt.Errorf("sample outbox depth: %w", err)
		}
		depth[s] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sample outbox depth: %w", err)
	}
	m.depthMu.Lock()
	for s, n := range depth {
		m.outboxDepth.WithLabelValues(s).Set(float64(n))
		m.depthSeen[s] = true
	}
	// A status that emptied reads 0, not its last value (a final status
	// only when it was counted).
	for s := range m.depthSeen {
		if _, ok := depth[s]; !ok && (full || isLive(s)) {
			m.outboxDepth.WithLabelValues(s).Set(0)
		}
	}
	m.depthMu.Unlock()
	var timers int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM timers`).Scan(&timers); err != nil {
		return fmt.Errorf("sample timers: %w", err)
	}
	m.timersPending.Set(float64(timers))
	return nil
}

// Sampler is one periodic gauge update.
type Sampler func(ctx context.Context) error

// RunSamplers calls every sampler now and then every interval until ctx
// ends. A failing sampler is logged at debug (the store or the consumer
// may be briefly unavailable; readiness reports that) and retried on the
// next round.
func (m *Metrics) RunSamplers(ctx context.Context, every time.Duration, log *slog.Logger, samplers ...Sampler) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, s := range samplers {
			if err := s(ctx); err != nil && ctx.Err() == nil {
				log.Debug("metrics sample", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
