package engine

import (
	"context"
	"fmt"
	"hash/maphash"
	"testing"
	"time"
)

// TestKeyFilterNeverMissesAPairItHolds: every pair added is reported as
// maybe written, also after the filter grew new layers far beyond its
// first size, and pairs never added are mostly reported as new.
func TestKeyFilterNeverMissesAPairItHolds(t *testing.T) {
	f := &keyFilter{seed: maphash.MakeSeed(), layers: []bloom{newBloom(0)}}
	const n = 400_000 // ~6 layers: the first holds 65,536
	for i := 0; i < n; i++ {
		f.add(fmt.Sprint("rule-", i%1000), fmt.Sprint("key-", i))
	}
	if len(f.layers) < 3 {
		t.Fatalf("%d layers after %d pairs; the test means to cross layers", len(f.layers), n)
	}
	for i := 0; i < n; i++ {
		if !f.mayHave(fmt.Sprint("rule-", i%1000), fmt.Sprint("key-", i)) {
			t.Fatalf("pair %d added but reported as never written", i)
		}
	}
	// The same strings split differently are other pairs.
	if f.mayHave("rule-1key-", "1") && f.mayHave("rule-", "1key-1") && f.mayHave("", "rule-1key-1") {
		t.Error("pairs are not told apart by where rule ends")
	}
	fp := 0
	const probes = 200_000
	for i := 0; i < probes; i++ {
		if f.mayHave(fmt.Sprint("rule-", i%1000), fmt.Sprint("other-", i)) {
			fp++
		}
	}
	// Each layer is at most ~0.05 % when full; summed over the layers the
	// rate stays well under 1 %.
	if rate := float64(fp) / probes; rate > 0.01 {
		t.Errorf("false positives %.3f %% over %d layers", 100*rate, len(f.layers))
	}
	var none *keyFilter
	if !none.mayHave("r", "k") {
		t.Error("a filter not loaded must send every look-up to SQLite")
	}
	none.add("r", "k") // no panic
}

// BenchmarkKeyFilter: one "never written?" question to a filter of a
// million pairs, and one pair added.
func BenchmarkKeyFilter(b *testing.B) {
	f := &keyFilter{seed: maphash.MakeSeed(), layers: []bloom{newBloom(2_000_000)}}
	for i := 0; i < 1_000_000; i++ {
		f.add(fmt.Sprint("rule-", i%1000), fmt.Sprint("o-", i))
	}
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprint("o-", 2_000_000+i)
	}
	b.Run("mayHave", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			f.mayHave("rule-7", keys[i%len(keys)])
		}
	})
	b.Run("add", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			f.add("rule-7", keys[i%len(keys)])
		}
	})
}

// TestKeyFiltersRebuildFromTheirTables: once a filter has had as many
// pairs added as it was built from, Tick rebuilds it from its table in the
// background. Rows deleted meanwhile (retention) leave the filter; no pair
// whose row exists is ever missing — not those written while the rebuild
// read its snapshot, nor dedup marks still in the log — so a repeat is
// still a repeat.
func TestKeyFiltersRebuildFromTheirTables(t *testing.T) {
	ctx := context.Background()
	e := newBenchEngine(t, false)
	e.filterRebuildMin = 1 << 30 // not yet
	seq := uint64(0)
	batch := func(from, to int) {
		t.Helper()
		var ps []*Prepared
		for i := from; i < to; i++ {
			seq++
			ps = append(ps, prepared(t, e, seq, "shipments.eta_updated", benchEvent(i, "fire")))
		}
		if err := e.HandleBatch(ctx, ps); err != nil {
			t.Fatal(err)
		}
	}
	order := func(i int) string { return fmt.Sprintf("o-%07d", i) }
	batch(0, 300) // rule "always": a notification and a dedup mark each
	// Retention deletes the first 200 orders' rows.
	for _, q := range []string{`DELETE FROM outbox WHERE ekey < ?`, `DELETE FROM dedup WHERE key < ?`, `DELETE FROM dedup_log WHERE key < ?`} {
		if _, err := e.st.W.ExecContext(ctx, q, order(200)); err != nil {
			t.Fatal(err)
		}
	}
	// Grow the outbox filter far past its first layer, so the rebuild has
	// something to give back.
	for i := range 200_000 {
		e.outboxKeys.add("gone", fmt.Sprint(i))
	}
	grown := e.outboxKeys.bytes()
	e.filterRebuildMin = 100
	if _, err := e.Tick(ctx); err != nil { // starts the rebuilds
		t.Fatal(err)
	}
	if e.outboxKeys.delta == nil || e.dedupKeys.delta == nil || e.idemKeys.delta == nil {
		t.Fatal("no rebuild started after 300 pairs with a threshold of 100")
	}
	batch(300, 350) // written while the rebuild reads its snapshot
	deadline := time.Now().Add(10 * time.Second)
	for e.outboxKeys.delta != nil || e.dedupKeys.delta != nil || e.idemKeys.delta != nil {
		if time.Now().After(deadline) {
			t.Fatal("rebuilds did not finish")
		}
		time.Sleep(5 * time.Millisecond)
		e.mu.Lock()
		e.rebuildFilters(ctx)
		e.mu.Unlock()
	}
	// Every row there is passes every filter.
	for _, c := range []struct {
		f     *keyFilter
		query string
	}{
		{e.outboxKeys, `SELECT rule, ekey FROM outbox`},
		{e.idemKeys, `SELECT idem_key, '' FROM outbox`},
		{e.dedupKeys, `SELECT rule, key FROM dedup UNION ALL SELECT rule, key FROM dedup_log`},
	} {
		rows, err := e.st.R.QueryContext(ctx, c.query)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var a, b string
			if err := rows.Scan(&a, &b); err != nil {
				t.Fatal(err)
			}
			n++
			if !c.f.mayHave(a, b) {
				t.Errorf("%s: (%s, %s) is stored but the rebuilt filter says never written", c.query, a, b)
			}
		}
		rows.Close()
		if n != 150 {
			t.Errorf("%s: %d rows, want the 150 of orders 200–349", c.query, n)
		}
	}
	gone := 0
	for i := range 200 {
		if e.outboxKeys.mayHave("always", order(i)) {
			gone++
		}
	}
	if gone > 5 {
		t.Errorf("%d of 200 deleted pairs still in the rebuilt outbox filter", gone)
	}
	if after := e.outboxKeys.bytes(); after >= grown/2 {
		t.Errorf("outbox filter %d bytes after the rebuild, %d before", after, grown)
	}
	// Behaviour: an order written during the rebuild, and one before it,
	// are still repeats; a new one notifies.
	var before int
	if err := e.st.W.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	batch(340, 341)
	batch(250, 251)
	batch(400, 401)
	var after int
	if err := e.st.W.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Errorf("%d new notifications for two repeats and one new order, want 1", after-before)
	}
}
