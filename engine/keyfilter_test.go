package engine

import (
	"fmt"
	"hash/maphash"
	"testing"
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
