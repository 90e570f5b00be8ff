package engine

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"time"
)

// Key filters are rebuilt from their tables while the daemon runs.
//
// A filter only grows: it holds every pair written since the start, also
// of rows retention deleted since (store/prune.go). A daemon that runs
// longer than its retention would hold, at ~2 bytes a pair per filter,
// every notification ever sent. So once a filter has had as many pairs
// added as it was built from (and at least filterRebuildMin), it is built
// again from its table, on a reader's snapshot, off the engine's
// goroutine; the pairs the engine adds meanwhile go to the rebuild's
// delta as well, and the next Tick swaps in the new filter with the delta.
//
// No pair is lost: the snapshot is taken inside Tick, which holds the
// engine's lock, when no transaction of the engine is open (a batch
// commits before it returns), so every pair added before is committed and
// in the snapshot, and every pair added after is in the delta. The dedup
// marks still in the log are read with the table's.

// filterRebuildMin is the least pairs added to a filter before it is
// rebuilt (~2 MB of filter).
const filterRebuildMin = 1 << 20

// rebuiltFilter is a rebuild's outcome.
type rebuiltFilter struct {
	spec filterSpec
	f    *keyFilter // nil with err nil: the table is too big to filter
	n    int
	took time.Duration
	err  error
}

// rebuildFilters swaps in the rebuilt filters that are ready and starts the
// rebuilds that are due. Called from Tick, with e.mu held.
func (e *Engine) rebuildFilters(ctx context.Context) {
	for done := false; !done; {
		select {
		case r := <-e.rebuilt:
			e.adoptFilter(r)
		default:
			done = true
		}
	}
	if e.cur != nil {
		return // the snapshot must not begin inside a transaction
	}
	for _, s := range e.filterSpecs() {
		f := *s.dst
		if f == nil || f.delta != nil || f.added < max(e.filterRebuildMin, f.built) {
			continue
		}
		if err := e.startRebuild(ctx, s, f); err != nil {
			e.log.Warn("rebuilding a key filter failed; keeping the one in use", "filter", s.name, "err", err)
		}
	}
}

// startRebuild begins the snapshot of s's table and reads it on a
// goroutine of its own.
func (e *Engine) startRebuild(ctx context.Context, s filterSpec, f *keyFilter) error {
	tx, err := e.st.R.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	// The first read begins the snapshot (SQLite's WAL), here, under the
	// engine's lock.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+s.table+` LIMIT 1)`).Scan(&n); err != nil {
		_ = tx.Rollback()
		return err
	}
	seed := maphash.MakeSeed()
	f.delta = &keyFilter{seed: seed, layers: []bloom{newBloom(0)}}
	begun := time.Now()
	go func() {
		defer tx.Rollback() //nolint:errcheck // read-only
		r := rebuiltFilter{spec: s}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM (`+s.query+`)`).Scan(&r.n); err != nil {
			r.err = err
		} else {
			r.f, r.err = loadKeyFilter(ctx, tx, r.n, s.query, seed)
		}
		r.took = time.Since(begun)
		// Never blocks: the channel holds one outcome per filter. An
		// outcome is always sent, failed or not, so the delta is dropped.
		e.rebuilt <- r
	}()
	return nil
}

// adoptFilter swaps in a rebuilt filter with the pairs added meanwhile.
func (e *Engine) adoptFilter(r rebuiltFilter) {
	old := *r.spec.dst
	if old == nil || old.delta == nil {
		return // cannot happen: only this goroutine changes them
	}
	delta := old.delta
	old.delta = nil
	switch {
	case r.err != nil:
		e.log.Warn("rebuilding a key filter failed; keeping the one in use", "filter", r.spec.name, "err", fmt.Errorf("read %s: %w", r.spec.table, r.err))
		old.built, old.added = old.built+old.added, 0 // not again before it doubles
	case r.f == nil:
		// The table outgrew the filter: its look-ups go to SQLite, as at
		// a start with a table this big.
		*r.spec.dst = nil
		e.log.Info("a table is too big to filter look-ups in memory; they go to SQLite", "table", r.spec.table, "rows", r.n, "max", maxFilterLoad)
	default:
		r.f.layers = append(r.f.layers, delta.layers...)
		r.f.built, r.f.added = r.f.built+delta.added, 0
		*r.spec.dst = r.f
		e.log.Info("rebuilt a key filter from its table", "filter", r.spec.name, "pairs", r.f.built,
			"bytes_before", old.bytes(), "bytes_after", r.f.bytes(), "took", r.took.Round(time.Millisecond))
	}
}

// bytes is the memory the filter's bits take.
func (f *keyFilter) bytes() int {
	n := 0
	for _, l := range f.layers {
		n += 8 * len(l.bits)
	}
	return n
}
