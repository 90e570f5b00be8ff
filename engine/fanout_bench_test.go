package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// BenchmarkFanOut measures one stock-out event fanned out over N stored
// orders (default 1,000,000; BENCH_FANOUT_N overrides), 1% of which hold
// the sku. Run: go test -run '^$' -bench FanOut -benchtime 1x ./engine/
func BenchmarkFanOut(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("BENCH_FANOUT_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	dir := b.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	_ = os.MkdirAll(rulesDir, 0o755)
	_ = os.WriteFile(filepath.Join(rulesDir, "r.yaml"), []byte(entitiesYAML+sweepRules), 0o644)
	cfg := config.Default()
	set, err := rules.Load(rulesDir, rules.Options{Channels: cfg.ChannelNames()})
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(dir, "s.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.StopTimer()
	seedStart := time.Now()
	tx, _ := st.W.Begin()
	ins, _ := tx.Prepare(`INSERT INTO entities (type, key, state, created_at, updated_at) VALUES ('order', ?, ?, 1, 1)`)
	for i := 0; i < n; i++ {
		sku := "SKU-COMMON"
		if i%100 == 0 {
			sku = "SKU-RARE"
		}
		state := fmt.Sprintf(`{"order_id":"o-%07d","customer_id":"c-%d","status":"paid","skus":[%q,"SKU-X"],"promised_at":"2026-11-22T18:00:00Z","total":1200,"carrier":"dhl"}`, i, i%50000, sku)
		if _, err := ins.Exec(fmt.Sprintf("o-%07d", i), state); err != nil {
			b.Fatal(err)
		}
		if i%100_000 == 99_999 {
			_ = tx.Commit()
			tx, _ = st.W.Begin()
			ins, _ = tx.Prepare(`INSERT INTO entities (type, key, state, created_at, updated_at) VALUES ('order', ?, ?, 1, 1)`)
		}
	}
	_ = tx.Commit()
	b.Logf("seeded %d orders in %s", n, time.Since(seedStart).Round(time.Millisecond))
	for i := 0; i < b.N; i++ {
		clk := clock.NewVirtual(t0.Add(time.Duration(i) * time.Hour))
		eng, err := engine.New(ctx, engine.Options{Store: st, Clock: clk, Config: cfg, Rules: set})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		p, _ := eng.Prepare(&event.Event{Subject: "inventory.stockout", ID: fmt.Sprint("s", i), Time: clk.Now(), Data: map[string]any{"sku": "SKU-RARE"}})
		if err := eng.HandleBatch(ctx, []*engine.Prepared{p}); err != nil {
			b.Fatal(err)
		}
		pages := 0
		for {
			more, err := eng.Tick(ctx)
			if err != nil {
				b.Fatal(err)
			}
			pages++
			if !more {
				break
			}
		}
		b.StopTimer()
		var decided int
		_ = st.W.QueryRow(`SELECT count(*) FROM decisions WHERE rule = 'stockout'`).Scan(&decided)
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/fanout")
		b.Logf("fan-out over %d orders: %s, %d ticks, %d decisions", n, time.Since(start).Round(time.Millisecond), pages, decided)
	}
}
