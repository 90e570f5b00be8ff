package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/event"
)

const sweepRules = `
rules:
  - name: morning
    schedule: "0 9 * * *"
    timezone: Europe/Berlin
    for_each: order
    if: order.status == "in_transit"
    notify: { to: order.customer_id, template: t, priority: critical }
    dedup: { key: order.order_id + "/" + now().Format("2006-01-02") }
  - name: stockout
    on: inventory.stockout
    for_each: order
    where: { skus: event.sku }
    if: event.sku in order.skus && order.status == "paid"
    notify: { to: order.customer_id, template: t, priority: critical }
templates:
  t: { en: { body: "{{ .rule }} {{ .order.order_id }}" } }
`

func TestScheduleSweepAndMissedRunGrace(t *testing.T) {
	h := newHarness(t, sweepRules, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x"})
	h.emit("orders.created", map[string]any{"order_id": "o-1", "customer_id": "c-1", "status": "in_transit"})
	h.emit("orders.created", map[string]any{"order_id": "o-2", "customer_id": "c-1", "status": "delivered"})
	// t0 = 10:00 UTC = 11:00 Berlin on Nov 20. Next run: Nov 21 09:00 Berlin = 08:00 UTC.
	h.advance(23 * time.Hour)
	eq(t, "first sweep", h.sentSummary(), []string{"morning o-1 email +22h0m0s"})
	// Down over the next run (Nov 22 08:00 UTC) and back 30 min later:
	// within the 1h grace, it runs once on start.
	h.st.Close()
	h.clk.Set(t0.Add(46*time.Hour + 30*time.Minute))
	h.open()
	h.settle()
	eq(t, "after restart in grace", h.sentSummary()[1:], []string{"morning o-1 email +46h30m0s"})
	// Down for two days: the missed runs are beyond grace: skipped, recorded.
	h.st.Close()
	h.clk.Set(t0.Add(94*time.Hour + 30*time.Minute)) // Nov 24 08:30 UTC... next slot missed by 30m is in grace
	h.clk.Set(t0.Add(96 * time.Hour))                // Nov 24 10:00 UTC: missed by 2h
	h.open()
	h.settle()
	if n := len(h.sent()); n != 2 {
		t.Fatalf("a run missed beyond grace was sent: %v", h.sentSummary())
	}
	if r := h.reasons("cancelled"); len(r) != 1 {
		t.Fatalf("missed run not recorded: %q", r)
	}
}

func TestFanOutPagesOverManyEntities(t *testing.T) {
	h := newHarness(t, sweepRules, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x"})
	const n = 12_000 // more than two pages
	var batch []*engine.Prepared
	for i := 0; i < n; i++ {
		sku := "SKU-B"
		if i%100 == 0 {
			sku = "SKU-A"
		}
		status := "paid"
		if i%200 == 0 {
			status = "cancelled"
		}
		ev := &event.Event{Subject: "orders.created", ID: fmt.Sprintf("e%d", i), Time: t0, Seq: uint64(i + 1),
			Data: map[string]any{"order_id": fmt.Sprintf("o-%05d", i), "customer_id": "c-1", "status": status, "skus": []any{sku, "SKU-C"}}}
		p, rej := h.eng.Prepare(ev)
		if rej != nil {
			t.Fatal(rej)
		}
		batch = append(batch, p)
	}
	if err := h.eng.HandleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	h.seq = n
	h.emit("inventory.stockout", map[string]any{"sku": "SKU-A"})
	// 120 orders hold SKU-A, 60 of them cancelled.
	if got := len(h.sent()); got != 60 {
		t.Fatalf("fan-out notified %d orders, want 60", got)
	}
	for _, s := range h.sent() {
		var i int
		fmt.Sscanf(s.n.Entity.Key, "o-%d", &i)
		if i%100 != 0 || i%200 == 0 {
			t.Fatalf("wrong order notified: %s", s.n.Entity.Key)
		}
	}
}

func TestFanOutDoesNotBlockIntake(t *testing.T) {
	h := newHarness(t, sweepRules, baseConfig)
	var batch []*engine.Prepared
	for i := 0; i < 12_000; i++ {
		ev := &event.Event{Subject: "orders.created", ID: fmt.Sprintf("e%d", i), Time: t0, Seq: uint64(i + 1),
			Data: map[string]any{"order_id": fmt.Sprintf("o-%05d", i), "customer_id": "c-1", "status": "paid", "skus": []any{"SKU-A"}}}
		p, _ := h.eng.Prepare(ev)
		batch = append(batch, p)
	}
	if err := h.eng.HandleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// The stock-out only queues a job inside the intake transaction.
	p, _ := h.eng.Prepare(&event.Event{Subject: "inventory.stockout", ID: "s", Time: t0, Seq: 12_001, Data: map[string]any{"sku": "SKU-A"}})
	if err := h.eng.HandleBatch(context.Background(), []*engine.Prepared{p}); err != nil {
		t.Fatal(err)
	}
	if n := len(h.verdicts("stockout")); n != 0 {
		t.Fatalf("fan-out ran inside the intake batch: %d decisions", n)
	}
	// Each Tick handles one bounded page and says there is more.
	more, err := h.eng.Tick(context.Background())
	if err != nil || !more {
		t.Fatalf("first page: more=%v err=%v", more, err)
	}
	if n := len(h.verdicts("stockout")); n == 0 || n >= 12_000 {
		t.Fatalf("first page decided %d", n)
	}
}

func TestEntityTTLForgetsStateAndTimers(t *testing.T) {
	h := newHarness(t, absenceRules, baseConfig)
	// Give orders a ttl by reloading entities with one.
	h.customer("c-1", map[string]any{"email": "a@x"})
	h.emit("orders.created", order("o-1", "c-1"))
	st, _ := h.eng.Entity(h.ctx, "order", "o-1")
	if st == nil {
		t.Fatal("entity missing")
	}
	h.writeTTL("30m")
	h.eng.SetRules(h.set)
	h.advance(10 * time.Minute)
	h.emit("orders.created", order("o-2", "c-1")) // touched later: kept
	h.advance(25 * time.Minute)
	if st, _ := h.eng.Entity(h.ctx, "order", "o-1"); st != nil {
		t.Fatalf("o-1 not forgotten: %v", st)
	}
	if st, _ := h.eng.Entity(h.ctx, "order", "o-2"); st == nil {
		t.Fatal("o-2 forgotten too early")
	}
	var timers int
	_ = h.st.W.QueryRow(`SELECT count(*) FROM timers WHERE ekey = 'o-1'`).Scan(&timers)
	if timers != 0 {
		t.Fatalf("%d timers of o-1 left", timers)
	}
}
