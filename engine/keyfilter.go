package engine

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"math/bits"
	"time"
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
	// built is the pairs the filter was built from (loaded or rebuilt),
	// added the pairs added since.
	built, added int
	// delta, while a rebuild reads its table, gets every pair added too
	// (under the rebuild's seed): the rebuilt filter is the table's pairs
	// at the rebuild's snapshot plus delta's.
	delta *keyFilter
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
	if f.delta != nil {
		f.delta.add(rule, key)
	}
	f.added++
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
// columns) of a table of n rows, or nil if n is more than maxFilterLoad.
func loadKeyFilter(ctx context.Context, q querier, n int, query string, seed maphash.Seed) (*keyFilter, error) {
	if n > maxFilterLoad {
		return nil, nil
	}
	f := &keyFilter{seed: seed, layers: []bloom{newBloom(2 * n)}}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rule, key string
	for rows.Next() {
		if err := rows.Scan(&rule, &key); err != nil {
			return nil, err
		}
		f.add(rule, key)
	}
	f.built, f.added = f.added, 0
	return f, rows.Err()
}

// querier runs a query: the writer at start, a reader's snapshot in a
// rebuild.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// filterSpec is one key filter and where its pairs come from.
type filterSpec struct {
	name         string
	dst          **keyFilter
	table, query string
}

// filterSpecs are the engine's key filters.
func (e *Engine) filterSpecs() []filterSpec {
	return []filterSpec{
		// The marks still in the log count: between a rebuild's snapshot
		// and its end, the fold moves them into dedup.
		{"dedup", &e.dedupKeys, "dedup", `SELECT rule, key FROM dedup UNION ALL SELECT rule, key FROM dedup_log`},
		// The outbox_entity index (rule, ekey, created_at) covers this.
		{"outbox", &e.outboxKeys, "outbox", `SELECT rule, ekey FROM outbox`},
		// The idem_key and seen_ids primary key indexes cover these; the
		// ids still in the log count, as the dedup marks do.
		{"idem", &e.idemKeys, "outbox", `SELECT idem_key, '' FROM outbox`},
		{"seen", &e.seenKeys, "seen_ids", `SELECT id, '' FROM seen_ids UNION ALL SELECT eid, '' FROM seen_log`},
	}
}

// loadFilters builds the key filters from the store, counting each table
// once.
func (e *Engine) loadFilters(ctx context.Context) error {
	began := time.Now()
	rows := map[string]int{}
	for _, t := range []string{"dedup", "outbox", "seen_ids"} {
		var n int
		if err := e.st.W.QueryRowContext(ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
			return fmt.Errorf("engine: count %s: %w", t, err)
		}
		rows[t] = n
	}
	for _, l := range e.filterSpecs() {
		f, err := loadKeyFilter(ctx, e.st.W, rows[l.table], l.query, maphash.MakeSeed())
		if err != nil {
			return fmt.Errorf("engine: load the keys of %s (%s): %w", l.table, l.query, err)
		}
		*l.dst = f
	}
	if e.dedupKeys == nil || e.outboxKeys == nil || e.seenKeys == nil {
		e.log.Info("a table is too big to filter look-ups in memory; they go to SQLite", "dedup_rows", rows["dedup"], "outbox_rows", rows["outbox"], "seen_ids_rows", rows["seen_ids"], "max", maxFilterLoad)
	}
	if d := time.Since(began); d > time.Second {
		e.log.Info("loaded the key filters", "dedup_rows", rows["dedup"], "outbox_rows", rows["outbox"], "seen_ids_rows", rows["seen_ids"], "took", d.Round(time.Millisecond))
	}
	return nil
}
