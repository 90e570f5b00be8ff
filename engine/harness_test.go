package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/outbox"
	"github.com/proactived/proactived/engine/replay"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// rec records notifications; channels named in fail return errors.
type rec struct {
	mu   sync.Mutex
	clk  clock.Clock
	sent []sentN
	fail map[string]bool // channel → permanent failure
}

type sentN struct {
	n  notifiers.Notification
	at time.Time
}

type recChan struct {
	r    *rec
	name string
}

func (c recChan) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if c.r.fail[c.name] {
		return true, errors.New(c.name + " is down")
	}
	c.r.sent = append(c.r.sent, sentN{*n, c.r.clk.Now()})
	return false, nil
}

// harness runs the real engine and dispatcher on a virtual clock over a
// real SQLite file.
type harness struct {
	t     *testing.T
	dir   string
	clk   *clock.Virtual
	cfg   *config.Config
	set   *rules.Set
	st    *store.Store
	eng   *engine.Engine
	disp  *outbox.Dispatcher
	drv   *replay.Driver
	rec   *rec
	seq   uint64
	ctx   context.Context
	rules string
}

const baseConfig = `
channels:
  email: { type: log, address_field: email }
  sms:   { type: log, address_field: phone }
  ops:   { type: log }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "21:00", end: "09:00" }
  frequency_cap: { max: 3, per: 24h }
  retry: { attempts: 2, backoff: 1m, max_backoff: 5m }
`

const entitiesYAML = `
entities:
  order:
    key: event.order_id
    subjects: ["orders.>", "shipments.>"]
  customer:
    key: event.customer_id
    subjects: ["customers.>"]
`

func newHarness(t *testing.T, rulesYAML, cfgYAML string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clk: clock.NewVirtual(t0), ctx: context.Background()}
	h.rec = &rec{clk: h.clk, fail: map[string]bool{}}
	cfg := config.Default()
	if err := config.Parse(cfg, "test.yaml", []byte(cfgYAML), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatalf("config: %v", err)
	}
	h.cfg = cfg
	h.rules = filepath.Join(h.dir, "rules")
	h.writeRules(rulesYAML)
	h.open()
	return h
}

func (h *harness) writeRules(rulesYAML string) {
	h.t.Helper()
	if err := os.MkdirAll(h.rules, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.rules, "entities.yaml"), []byte(entitiesYAML), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.rules, "rules.yaml"), []byte(rulesYAML), 0o644); err != nil {
		h.t.Fatal(err)
	}
	set, err := rules.Load(h.rules, rules.Options{Channels: h.cfg.ChannelNames(), ExtraSubjects: []string{h.cfg.Support.Subject}})
	if err != nil {
		h.t.Fatalf("rules:\n%v", err)
	}
	h.set = set
}

// open starts (or restarts) the engine on the same SQLite file.
func (h *harness) open() {
	h.t.Helper()
	st, err := store.Open(h.ctx, filepath.Join(h.dir, "state.db"))
	if err != nil {
		h.t.Fatal(err)
	}
	h.st = st
	chans := map[string]notifiers.Notifier{}
	for name := range h.cfg.Channels {
		chans[name] = recChan{h.rec, name}
	}
	// The same virtual-time driver as `proactived test` and backtest.
	h.drv, err = replay.New(h.ctx, replay.Options{Store: st, Config: h.cfg, Rules: h.set, Channels: chans, Clock: h.clk})
	if err != nil {
		h.t.Fatal(err)
	}
	h.eng, h.disp = h.drv.Engine, h.drv.Dispatcher
	h.t.Cleanup(func() { _ = st.Close() })
}

// restart closes the store and opens a fresh engine on it, as a daemon
// restart would.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.st.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.open()
}

func (h *harness) reload(rulesYAML string) {
	h.t.Helper()
	h.writeRules(rulesYAML)
	h.eng.SetRules(h.set)
}

// emit processes one event now (stream sequence assigned like JetStream).
func (h *harness) emit(subject string, data map[string]any) {
	h.t.Helper()
	h.seq++
	h.emitSeq(h.seq, "", subject, data)
}

func (h *harness) emitSeq(seq uint64, id, subject string, data map[string]any) {
	h.t.Helper()
	explicit := id != ""
	if !explicit {
		id = fmt.Sprintf("seq-%d", seq)
	}
	ev := &event.Event{Subject: subject, ID: id, Time: h.clk.Now(), Data: event.Normalize(copyMap(data)).(map[string]any), Seq: seq, ExplicitID: explicit}
	p, rej := h.eng.Prepare(ev)
	if rej != nil {
		h.t.Fatalf("%s rejected: %v", subject, rej)
	}
	if err := h.eng.HandleBatch(h.ctx, []*engine.Prepared{p}); err != nil {
		h.t.Fatal(err)
	}
	h.settle()
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if l, ok := v.([]string); ok {
			a := make([]any, len(l))
			for i, s := range l {
				a[i] = s
			}
			v = a
		}
		out[k] = v
	}
	return out
}

func (h *harness) settle() {
	h.t.Helper()
	if err := h.drv.Settle(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// advance moves the virtual clock by d, stopping at every due moment.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	if err := h.drv.Run(h.ctx, replay.Slice(nil), h.clk.Now().Add(d)); err != nil {
		h.t.Fatal(err)
	}
}

// verdicts lists "rule key verdict" for the given rule ("" = all).
func (h *harness) verdicts(rule string) []string {
	h.t.Helper()
	rows, err := h.st.W.Query(`SELECT rule, ekey, verdict FROM decisions ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r, k, v string
		if err := rows.Scan(&r, &k, &v); err != nil {
			h.t.Fatal(err)
		}
		if rule == "" || r == rule {
			out = append(out, r+" "+k+" "+v)
		}
	}
	return out
}

func (h *harness) reasons(verdict string) []string {
	h.t.Helper()
	rows, err := h.st.W.Query(`SELECT reason FROM decisions WHERE verdict = ? ORDER BY id`, verdict)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		_ = rows.Scan(&r)
		out = append(out, r)
	}
	return out
}

// sent lists "rule entity channel +offset" of delivered notifications.
func (h *harness) sent() []sentN {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	return append([]sentN(nil), h.rec.sent...)
}

func (h *harness) sentSummary() []string {
	var out []string
	for _, s := range h.sent() {
		out = append(out, s.n.Rule+" "+s.n.Entity.Key+" "+s.n.Channel+" +"+s.at.Sub(t0).String())
	}
	// Sends of one moment run concurrently: order by time, then text.
	sort.SliceStable(out, func(i, j int) bool {
		ti, tj := out[i][strings.LastIndex(out[i], "+"):], out[j][strings.LastIndex(out[j], "+"):]
		if ti != tj {
			return len(ti) < len(tj) || (len(ti) == len(tj) && ti < tj)
		}
		return out[i] < out[j]
	})
	return out
}

func (h *harness) customer(key string, fields map[string]any) {
	h.t.Helper()
	if err := h.eng.PutEntity(h.ctx, "customer", key, event.Normalize(copyMap(fields)).(map[string]any)); err != nil {
		h.t.Fatal(err)
	}
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got: %q\nwant: %q", what, got, want)
	}
}

// writeTTL rewrites the order entity with a ttl and reloads the set.
func (h *harness) writeTTL(ttl string) {
	h.t.Helper()
	ents := strings.Replace(entitiesYAML, `subjects: ["orders.>", "shipments.>"]`, `subjects: ["orders.>", "shipments.>"]`+"\n    ttl: "+ttl, 1)
	if err := os.WriteFile(filepath.Join(h.rules, "entities.yaml"), []byte(ents), 0o644); err != nil {
		h.t.Fatal(err)
	}
	set, err := rules.Load(h.rules, rules.Options{Channels: h.cfg.ChannelNames(), ExtraSubjects: []string{h.cfg.Support.Subject}})
	if err != nil {
		h.t.Fatalf("rules:\n%v", err)
	}
	h.set = set
}
