package engine

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"time"

	"github.com/proactived/proactived/engine/store"
)

// keyFilter is a Bloom filter over the (rule, key) pairs of a table only
// the engine writes: the dedup marks by (rule, key), the outbox by (rule,
// entity key). It answers "never written" for certain, so the engine skips
// the look-up of a pair it has never seen — most of them: a dedup key or
// an entity's first notification of a rule is new far more often than
// not, and those look-ups were a tenth of the engine's time per event.
// "Maybe written" is answered by SQLite as before.
//
// It holds every pair stored when the engine started (loaded in New) and
// every pair the engine writes after, rolled back or not (an extra pair
// only costs a look-up). Rows deleted by hand stay in it, likewise. When
// the newest layer holds as many pairs as it was sized for, a layer twice
// its size is added, so the false-positive rate stays bounded however
// many pairs are written.
type keyFilter struct {
	seed   maphash.Seed
	layers []bloom
}

// bloom is one layer: m bits (a power of two), kProbes probes per pair.
type bloom struct {
	bits     []uint64
	mask     uint64
	n, limit int
}

const (
	bitsPerKey = 16 // with 8 probes: about 0.05 % false positives when full
	kProbes    = 8
	minFilter  = 1 << 16
	// maxFilterLoad bounds the pairs loaded at start; a bigger table is not
	// filtered (every look-up goes to SQLite, as without the filter)
	// rather than stall the start for longer.
	maxFilterLoad = 4_000_000
)

func newBloom(keys int) bloom {
	m := uint64(1) << bits.Len64(uint64(max(keys, minFilter)*bitsPerKey-1))
	return bloom{bits: make([]uint64, m/64), mask: m - 1, limit: int(m / bitsPerKey)}
}

func (f *keyFilter) hash(rule, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(rule)
	h.WriteByte(0)
	h.WriteString(key)
	return h.Sum64()
}

// add records a pair as written.
func (f *keyFilter) add(rule, key string) {
	if f == nil {
		return
	}
	last := &f.layers[len(f.layers)-1]
	if last.n >= last.limit {
		f.layers = append(f.layers, newBloom(2*last.limit))
		last = &f.layers[len(f.layers)-1]
	}
	h := f.hash(rule, key)
	h1, h2 := h, h>>32|1
	for i := uint64(0); i < kProbes; i++ {
		b := (h1 + i*h2) & last.mask
		last.bits[b/64] |= 1 << (b % 64)
	}
	last.n++
}

// mayHave says the pair may have been written; false is certain. A nil
// filter (the table was too big to load) may have everything.
func (f *keyFilter) mayHave(rule, key string) bool {
	if f == nil {
		return true
	}
	h := f.hash(rule, key)
	h1, h2 := h, h>>32|1
	for li := range f.layers {
		l := &f.layers[li]
		hit := true
		for i := uint64(0); i < kProbes; i++ {
			b := (h1 + i*h2) & l.mask
			if l.bits[b/64]&(1<<(b%64)) == 0 {
				hit = false
				break
			}
		}
		if hit {
			return true
		}
	}
	return false
}

// loadKeyFilter builds a filter from the pairs query returns (two text
// columns), or nil if the table has more than maxFilterLoad rows.
func loadKeyFilter(ctx context.Context, st *store.Store, count, query string) (*keyFilter, int, error) {
	var n int
	if err := st.W.QueryRowContext(ctx, count).Scan(&n); err != nil {
		return nil, 0, err
	}
	if n > maxFilterLoad {
		return nil, n, nil
	}
	f := &keyFilter{seed: maphash.MakeSeed(), layers: []bloom{newBloom(2 * n)}}
	rows, err := st.W.QueryContext(ctx, query)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var rule, key string
	for rows.Next() {
		if err := rows.Scan(&rule, &key); err != nil {
			return nil, 0, err
		}
		f.add(rule, key)
	}
	return f, n, rows.Err()
}

// loadFilters builds the dedup and outbox filters from the store.
func (e *Engine) loadFilters(ctx context.Context) error {
	began := time.Now()
	var nd, no int
	var err error
	if e.dedupKeys, nd, err = loadKeyFilter(ctx, e.st, `SELECT count(*) FROM dedup`, `SELECT rule, key FROM dedup`); err != nil {
		return fmt.Errorf("engine: load dedup keys: %w", err)
	}
	// The outbox_entity index (rule, ekey, created_at) covers the query.
	if e.outboxKeys, no, err = loadKeyFilter(ctx, e.st, `SELECT count(*) FROM outbox`, `SELECT rule, ekey FROM outbox`); err != nil {
		return fmt.Errorf("engine: load outbox keys: %w", err)
	}
	// The idem_key and seen_ids primary key indexes cover these.
	if e.idemKeys, _, err = loadKeyFilter(ctx, e.st, `SELECT count(*) FROM outbox`, `SELECT idem_key, '' FROM outbox`); err != nil {
		return fmt.Errorf("engine: load idempotency keys: %w", err)
	}
	var ns int
	if e.seenKeys, ns, err = loadKeyFilter(ctx, e.st, `SELECT count(*) FROM seen_ids`, `SELECT id, '' FROM seen_ids`); err != nil {
		return fmt.Errorf("engine: load seen event ids: %w", err)
	}
	if e.dedupKeys == nil || e.outboxKeys == nil || e.seenKeys == nil {
		e.log.Info("a table is too big to filter look-ups in memory; they go to SQLite", "dedup_rows", nd, "outbox_rows", no, "seen_ids_rows", ns, "max", maxFilterLoad)
	}
	if d := time.Since(began); d > time.Second {
		e.log.Info("loaded the key filters", "dedup_rows", nd, "outbox_rows", no, "seen_ids_rows", ns, "took", d.Round(time.Millisecond))
	}
	return nil
}
