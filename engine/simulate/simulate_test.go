package simulate_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/outbox"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/simulate"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

const testRules = `
entities:
  order:
    key: event.order_id
    subjects: ["orders.>", "shipments.>"]
  customer:
    key: event.customer_id
    subjects: ["customers.>"]

rules:
  - name: delivery-delayed
    on: shipments.eta_updated
    entity: order
    if: order.status not in ["delivered", "cancelled"] && date(event.eta) > date(order.promised_at) + duration("1h")
    for: 15m
    notify: { to: order.customer_id, template: late, priority: high }
    holdout: 20%
  - name: stockout
    on: inventory.stockout
    for_each: order
    where: { skus: event.sku }
    if: event.sku in order.skus && order.status == "paid"
    notify: { to: order.customer_id, template: stock }

templates:
  late:  { en: { subject: "Order {{ .order.order_id }} is late", body: "New date {{ .vars }}" } }
  stock: { en: { body: "{{ .event.sku }} ran out" } }
`

const testConfig = `
channels:
  email: { type: log, address_field: email }
  sms:   { type: log, address_field: phone }
  push:  { type: log, address_field: push_token }
defaults: { channels: [email], locale: en, timezone: UTC }
`

// counter is every channel: it accepts and counts.
type counter struct{ n atomic.Int64 }

func (c *counter) Notify(context.Context, *notifiers.Notification) (bool, error) {
	c.n.Add(1)
	return false, nil
}

// world is the real engine and dispatcher over a temp SQLite file on a
// virtual clock, with the test's rule files.
type world struct {
	target *simulate.EngineTarget
	st     *store.Store
	clk    *clock.Virtual
	sent   *counter
}

func newWorld(t *testing.T, start time.Time) *world {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := config.Parse(cfg, "test.yaml", []byte(testConfig), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	// The planted effect is about customers who were told before they
	// decided: no quiet hours or contact budget that would hold messages
	// back from some treated customers.
	cfg.Policy.QuietHours.Start, cfg.Policy.QuietHours.End = "", ""
	cfg.Policy.FrequencyCap.Max = 0
	set, err := rules.Load(dir, rules.Options{Channels: cfg.ChannelNames(), DefaultLocale: "en", ExtraSubjects: []string{cfg.Support.Subject}})
	if err != nil {
		t.Fatalf("rules:\n%v", err)
	}
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clk := clock.NewVirtual(start)
	eng, err := engine.New(ctx, engine.Options{Store: st, Clock: clk, Config: cfg, Rules: set})
	if err != nil {
		t.Fatal(err)
	}
	sent := &counter{}
	chans := map[string]notifiers.Notifier{}
	for name := range cfg.Channels {
		chans[name] = sent
	}
	disp := outbox.New(outbox.Options{Store: st, Clock: clk, Channels: chans, Retry: outbox.Retry{Attempts: 2, Backoff: time.Minute, MaxBackoff: time.Minute, Timeout: time.Second}})
	return &world{
		target: &simulate.EngineTarget{Engine: eng, Outbox: disp, Clock: clk, Store: st, InformedBy: []string{"delivery-delayed"}},
		st:     st, clk: clk, sent: sent,
	}
}

// run plays a simulation into a fresh world and lets every contact
// window close.
func run(t *testing.T, cfg simulate.Config) (*world, *simulate.Sim) {
	t.Helper()
	sim := simulate.New(cfg)
	w := newWorld(t, sim.Config().Start)
	ctx := context.Background()
	if err := sim.Run(ctx, w.target); err != nil {
		t.Fatal(err)
	}
	if err := w.target.Advance(ctx, w.clk.Now().Add(8*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return w, sim
}

func (w *world) report(t *testing.T, o report.Options) report.Rule {
	t.Helper()
	o.Clock = w.clk
	rep, err := report.Compute(context.Background(), w.st.R, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Rules {
		if r.Rule == "delivery-delayed" {
			return r
		}
	}
	t.Fatalf("no delivery-delayed in the report: %+v", rep.Rules)
	return report.Rule{}
}

// TestReportRecoversPlantedEffect is the proof that the estimator works:
// the real engine decides who is told (20% held out by hash), simulated
// customers contact support with known probabilities depending on what
// the engine did, and the report must find the planted difference.
//
// With a fixed seed the outcome is deterministic. A correct 95% interval
// misses the truth for about one seed in twenty — seed 1, for one, draws
// a control arm whose contact rate is two standard errors under 30%, and
// its interval tops out at 0.191 — so if an unrelated change to the
// stream makes this fail, try a few seeds before suspecting the estimator
// (TestIntervalsCoverage in engine/report checks the coverage itself over
// thousands of samples). The checks against Truth below hold for any seed.
func TestReportRecoversPlantedEffect(t *testing.T) {
	cfg := simulate.Config{Seed: 3, Orders: 2000, Span: 48 * time.Hour, DelayShare: 0.5, PUninformed: 0.30, PInformed: 0.10}
	began := time.Now()
	w, sim := run(t, cfg)
	truth := sim.Truth()
	t.Logf("simulated %d orders in %s: %+v; %d notifications sent", truth.Orders, time.Since(began).Round(time.Millisecond), truth, w.sent.n.Load())
	effect := cfg.Effect()
	if math.Abs(effect-0.20) > 1e-9 {
		t.Fatalf("planted effect %v", effect)
	}

	// Only status contacts: exactly the planted behaviour.
	r := w.report(t, report.Options{Topic: "order_status"})
	t.Logf("topic order_status: treated %d/%d, control %d/%d, reduction %.3f (%.3f to %.3f), relative %.3f (%.3f to %.3f), verdict %q",
		r.Treated.Contacted, r.Treated.N, r.Control.Contacted, r.Control.N,
		r.AbsoluteReduction.Value, r.AbsoluteReduction.Low, r.AbsoluteReduction.High,
		r.RelativeReduction.Value, r.RelativeReduction.Low, r.RelativeReduction.High, r.Verdict)

	// The arms are who the engine told and who it held back. Every told
	// customer is in the treated arm and every contact they made is
	// counted; the control arm is the held-out part of the untold (the
	// rest were inhibited — an open contact on another topic — and are in
	// neither arm).
	if r.Treated.N != truth.Informed || r.Treated.Contacted != truth.ContactedInformed {
		t.Fatalf("treated %d (%d contacted), but %d customers were told (%d contacted)", r.Treated.N, r.Treated.Contacted, truth.Informed, truth.ContactedInformed)
	}
	if r.Control.N > truth.Uninformed || r.Control.Contacted > truth.ContactedUninformed {
		t.Fatalf("control %d (%d contacted), but only %d customers were untold (%d contacted)", r.Control.N, r.Control.Contacted, truth.Uninformed, truth.ContactedUninformed)
	}
	if in := r.Treated.N + r.Control.N; float64(in) < 0.97*float64(truth.Delayed) {
		t.Fatalf("arms hold %d entities of %d delayed orders", in, truth.Delayed)
	}
	share := float64(r.Control.N) / float64(truth.Delayed)
	if share < 0.15 || share > 0.25 {
		t.Fatalf("control share %.3f, want about the 20%% holdout", share)
	}
	a := r.AbsoluteReduction
	if !(float64(a.Low) <= effect && effect <= float64(a.High)) {
		t.Fatalf("planted effect %.2f outside the reported 95%% CI %.3f to %.3f", effect, a.Low, a.High)
	}
	if r.VerdictCode != report.CodeReduces || r.Verdict != "cuts repeat contacts" {
		t.Fatalf("verdict %q (%s), want cuts repeat contacts", r.Verdict, r.Why)
	}
	rel := 1 - cfg.PInformed/cfg.PUninformed
	if !(float64(r.RelativeReduction.Low) <= rel && rel <= float64(r.RelativeReduction.High)) {
		t.Fatalf("planted relative reduction %.3f outside %.3f to %.3f", rel, r.RelativeReduction.Low, r.RelativeReduction.High)
	}
	av := r.ContactsAvoided
	if want := effect * float64(r.Treated.N); !(float64(av.Low) <= want && want <= float64(av.High)) {
		t.Fatalf("contacts avoided %v (%v to %v) does not cover %.0f", av.Value, av.Low, av.High, want)
	}

	// Any topic (the default): other contacts add noise to both arms
	// alike; the effect is still found.
	r = w.report(t, report.Options{})
	if r.VerdictCode != report.CodeReduces || !(float64(r.AbsoluteReduction.Low) <= effect && effect <= float64(r.AbsoluteReduction.High)) {
		t.Fatalf("any topic: reduction %+v, verdict %q", r.AbsoluteReduction, r.Verdict)
	}
}

// TestReportSaysNotEnoughDataOnATinySample: 20 orders are a handful of
// delays and one or two held out — no verdict.
func TestReportSaysNotEnoughDataOnATinySample(t *testing.T) {
	w, sim := run(t, simulate.Config{Seed: 7, Orders: 20, DelayShare: 0.5})
	if sim.Truth().Delayed == 0 {
		t.Fatal("the tiny sample has no delayed order; pick another seed")
	}
	r := w.report(t, report.Options{})
	if r.VerdictCode != report.CodeNotEnoughData || r.Verdict != "not enough data yet" || r.Why == "" {
		t.Fatalf("verdict %q (%s) on %d + %d entities", r.Verdict, r.Why, r.Treated.N, r.Control.N)
	}
}

// TestNoEffectWhenNotificationsDoNotHelp: the same engine with customers
// who call just as much when told; the report must not claim a cut.
func TestNoEffectWhenNotificationsDoNotHelp(t *testing.T) {
	w, _ := run(t, simulate.Config{Seed: 9, Orders: 1000, Span: 48 * time.Hour, DelayShare: 0.6, PUninformed: 0.25, PInformed: 0.25})
	r := w.report(t, report.Options{Topic: "order_status"})
	if r.VerdictCode != report.CodeNoEffect || !(float64(r.AbsoluteReduction.Low) <= 0 && 0 <= float64(r.AbsoluteReduction.High)) {
		t.Fatalf("reduction %+v, verdict %q (%s)", r.AbsoluteReduction, r.Verdict, r.Why)
	}
}

// TestStreamIsSeededAndOrdered: the same seed gives the same stream
// whatever the engine answers up to the contact decisions, events come in
// time order, and Notified is never asked about a moment before an event
// already returned.
func TestStreamIsSeededAndOrdered(t *testing.T) {
	cfg := simulate.Config{Seed: 5, Orders: 300, DelayShare: 0.5}
	play := func(told bool) (subjects []string, asked int) {
		sim := simulate.New(cfg)
		var last time.Time
		for {
			ev, ok, err := sim.Next(func(order string, at time.Time) (bool, error) {
				if at.Before(last) {
					t.Fatalf("asked about %s at %s, before the event at %s", order, at, last)
				}
				asked++
				return told, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return subjects, asked
			}
			if ev.At.Before(last) {
				t.Fatalf("%s %s at %s after an event at %s", ev.Subject, ev.ID, ev.At, last)
			}
			last = ev.At
			if _, err := ev.JSON(); err != nil {
				t.Fatal(err)
			}
			if ev.Subject != simulate.SubjectContact || ev.Data["topic"] != "order_status" {
				subjects = append(subjects, ev.ID+" "+ev.Subject)
			}
		}
	}
	a, askedA := play(true)
	b, askedB := play(false)
	if askedA == 0 || askedA != askedB || len(a) < 1000 {
		t.Fatalf("asked %d and %d times, %d events", askedA, askedB, len(a))
	}
	if len(a) != len(b) {
		t.Fatalf("the answers changed the rest of the stream: %d vs %d events", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("event %d differs: %s vs %s", i, a[i], b[i])
		}
	}
}
