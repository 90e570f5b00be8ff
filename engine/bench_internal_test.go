package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/internal/cpumeter"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// Benchmarks of the engine's hot pieces on a real SQLite file, with rules
// shaped like the ones `proactived bench` generates. BENCHMARKS.md tracks
// them with benchstat.

const benchRules = `
entities:
  order:
    key: event.order_id
    subjects: ["orders.>", "shipments.>"]
  customer:
    key: event.customer_id
    subjects: ["customers.>"]
rules:
  - name: late
    on: shipments.eta_updated
    entity: order
    if: 'event.reason in ["carrier_delay", "weather"] && date(event.eta) > date(order.promised_at) + duration("2h")'
    notify: { to: order.customer_id, template: t }
  - name: big
    on: shipments.eta_updated
    entity: order
    if: 'event.reason in ["customs", "damaged"] && order.status not in ["cancelled", "delivered"] && order.total >= 5000'
    notify: { to: order.customer_id, template: t }
  - name: region
    on: shipments.eta_updated
    entity: order
    if: 'event.reason in ["capacity", "held"] && event.region in ["eu-west", "eu-north", "us-east"] && event.attempts >= 2'
    notify: { to: order.customer_id, template: t }
  - name: vip
    on: shipments.eta_updated
    entity: order
    if: 'event.reason in ["lost", "stock"] && customer.tier in ["gold", "platinum"] && order.total >= 20000'
    notify: { to: order.customer_id, template: t }
  - name: always
    on: shipments.eta_updated
    entity: order
    if: 'event.reason == "fire"'
    notify: { to: order.customer_id, template: t }
templates:
  t:
    en:
      subject: "Order {{ .order.order_id }}: an update"
      body: "Your order {{ .order.order_id }} of {{ .order.total }} {{ .order.currency }} is {{ .order.status }}. Reason: {{ .event.reason }}; new estimate {{ .event.eta }}."
`

const benchConfig = `
channels:
  console: { type: log }
defaults: { channels: [console], locale: en, timezone: UTC }
policy:
  frequency_cap: { max: 0 }
  quiet_hours: { start: "", end: "" }
`

func newBenchEngine(b testing.TB, journal bool) *Engine {
	b.Helper()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(benchRules), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	if err := config.Parse(cfg, "bench.yaml", []byte(benchConfig), func(string) (string, bool) { return "", false }); err != nil {
		b.Fatal(err)
	}
	cfg.Intake.Journal = &journal
	set, err := rules.Load(dir, rules.Options{Channels: cfg.ChannelNames(), ExtraSubjects: []string{cfg.Support.Subject}})
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "db", "p.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	e, err := New(context.Background(), Options{Store: st, Config: cfg, Rules: set, Clock: clock.NewVirtual(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// benchEvent renders a ~300-byte event for order i; reason picks the rule
// that fires ("fire" always fires rule "always", "routine" none).
func benchEvent(i int, reason string) []byte {
	return fmt.Appendf(nil, `{"order_id":"o-%07d","customer_id":"c-%06d","status":"in_transit","reason":%q,"region":"eu-west","eta":"2026-12-03T18:00:00Z","attempts":2,"carrier":"dhl-express","tracking":"JJD00%07d","warehouse":"wh-berlin-3","sku":"SKU-4521","total":12900,"currency":"EUR","promised_at":"2026-12-02T18:00:00Z","emitted_at":"2026-11-22T11:48:31.123456789Z"}`,
		i, i/4, reason, i)
}

func prepared(b testing.TB, e *Engine, seq uint64, subject string, body []byte) *Prepared {
	return preparedID(b, e, seq, "", subject, body)
}

// preparedID is prepared for a message with a Nats-Msg-Id (none if "").
func preparedID(b testing.TB, e *Engine, seq uint64, msgID, subject string, body []byte) *Prepared {
	// Decoded as the intake does (Engine.Decode, which shares keys and
	// short values among events).
	dec, rej := e.Decode(event.Raw{Subject: subject, Body: body, MsgID: msgID, Seq: seq, Time: time.Now()})
	if rej != nil {
		b.Fatal(rej)
	}
	p, rej := e.Prepare(dec.(*event.Event))
	if rej != nil {
		b.Fatal(rej)
	}
	return p
}

// BenchmarkHandleBatch is the intake path after decode: state, 5 indexed
// rules, decisions, outbox, commit — 512 events per transaction over 4,000
// orders, 40% firing one rule (dedup per rule and order, so repeats are
// recorded as deduped). ns/op is per event.
func BenchmarkHandleBatch(b *testing.B) {
	for _, c := range []struct {
		journal bool
		batch   int
		ids     bool
	}{{true, 512, false}, {false, 512, false}, {true, 64, false}, {true, 4096, false}, {true, 512, true}} {
		name := fmt.Sprintf("journal=%t", c.journal)
		if c.batch != 512 {
			// Batches of 64 are what the intake takes at a moderate rate
			// (the stream keeping up): write-back still coalesces. 4,096
			// is intake.catch_up_batch, the transaction over a backlog.
			name += fmt.Sprintf("/batch=%d", c.batch)
		}
		if c.ids {
			// Every event with a producer's id (Nats-Msg-Id), random as
			// UUIDs are: the engine records each one.
			name += "/ids"
		}
		b.Run(name, func(b *testing.B) {
			e := newBenchEngine(b, c.journal)
			ctx := context.Background()
			reasons := []string{"routine", "fire", "routine", "customs", "routine", "fire", "weather", "routine", "routine", "fire"}
			seq := uint64(0)
			batch := make([]*Prepared, 0, c.batch)
			b.ReportAllocs()
			defer cpumeter.Start().Report(b)
			for b.Loop() {
				seq++
				id := ""
				if c.ids {
					id = fmt.Sprintf("%016x", seq*0x9e3779b97f4a7c15)
				}
				batch = append(batch, preparedID(b, e, seq, id, "shipments.eta_updated", benchEvent(int(seq*7919%4000), reasons[seq%10])))
				if len(batch) == cap(batch) {
					if err := e.HandleBatch(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			if err := e.HandleBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkEvalRule evaluates one realistic rule (notify.to, then if) with
// the engine's shared VM and environment, entities cached.
func BenchmarkEvalRule(b *testing.B) {
	e := newBenchEngine(b, false)
	ctx := context.Background()
	p := prepared(b, e, 1, "shipments.eta_updated", benchEvent(1, "weather"))
	if err := e.HandleBatch(ctx, []*Prepared{p}); err != nil {
		b.Fatal(err)
	}
	r := e.Rules().ByName["late"]
	ent, err := e.load(ctx, "order", "o-0000001")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer cpumeter.Start().Report(b)
	for b.Loop() {
		ok, _, err := e.evalRule(ctx, r, ent, p.Ev)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkStateLoadStore reads entities that are not cached from SQLite
// and writes them back changed, in batches of 512 (one transaction).
func BenchmarkStateLoadStore(b *testing.B) {
	e := newBenchEngine(b, false)
	ctx := context.Background()
	const n = 20000
	if err := e.withTx(ctx, func() error {
		for i := 0; i < n; i++ {
			en, err := e.load(ctx, "order", fmt.Sprintf("o-%07d", i))
			if err != nil {
				return err
			}
			en.state = map[string]any{"order_id": fmt.Sprintf("o-%07d", i), "status": "paid", "total": 12900, "promised_at": "2026-12-02T18:00:00Z", "customer_id": "c-1"}
			en.created, en.updated, en.dirty = e.now(), e.now(), true
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	i := 0
	b.ReportAllocs()
	defer cpumeter.Start().Report(b)
	for b.Loop() {
		if i%512 == 0 {
			if e.cur != nil {
				if err := e.commit(ctx, e.cur); err != nil {
					b.Fatal(err)
				}
			}
			e.cache.reset() // every load misses
			if _, err := e.begin(ctx, true); err != nil {
				b.Fatal(err)
			}
		}
		en, err := e.load(ctx, "order", fmt.Sprintf("o-%07d", i*7919%n))
		if err != nil || en.state == nil {
			b.Fatal(err)
		}
		en.state["status"] = "in_transit"
		en.dirty = true
		i++
	}
	if e.cur != nil {
		if err := e.commit(ctx, e.cur); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutboxWrite is one fired rule through the delivery policy into
// the outbox (dedup, consent, inhibition, template, outbox row, decision),
// 512 per transaction, every one a new notification.
func BenchmarkOutboxWrite(b *testing.B) {
	e := newBenchEngine(b, false)
	ctx := context.Background()
	p := prepared(b, e, 1, "shipments.eta_updated", benchEvent(1, "fire"))
	if err := e.HandleBatch(ctx, []*Prepared{p}); err != nil {
		b.Fatal(err)
	}
	r := e.Rules().ByName["always"]
	i := 0
	b.ReportAllocs()
	defer cpumeter.Start().Report(b)
	for b.Loop() {
		if i%512 == 0 {
			if e.cur != nil {
				if err := e.commit(ctx, e.cur); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := e.begin(ctx, true); err != nil {
				b.Fatal(err)
			}
		}
		ent, err := e.load(ctx, "order", fmt.Sprintf("o-%07d", i))
		if err != nil {
			b.Fatal(err)
		}
		ent.state = p.Ev.Data
		ok, cust, err := e.evalRule(ctx, r, ent, p.Ev)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if err := e.fire(ctx, fireArgs{rule: r, ent: ent, ev: p.Ev, cust: cust}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if e.cur != nil {
		if err := e.commit(ctx, e.cur); err != nil {
			b.Fatal(err)
		}
	}
	var n int
	if err := e.st.W.QueryRow(`SELECT count(*) FROM outbox`).Scan(&n); err != nil || n < i {
		b.Fatalf("outbox has %d rows, want %d (%v)", n, i, err)
	}
}
