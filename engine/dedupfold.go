package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/proactived/proactived/engine/store"
)

// Dedup marks are appended to dedup_log with each batch and folded into
// the dedup table, sorted by key, about once a second.
//
// A mark is a random key. Written into its B-tree with the batch that
// set it, it dirtied a page of that tree in every commit — ten or more a
// second under load — and the mark's upsert was a fifth of a new
// notification's cost (BENCHMARKS.md, ninth round). An append to the log
// has no key to place, and the fold writes a second's marks in key order,
// each page of the tree once. The log is committed with its batch, before
// the ack, like every other effect; what it holds that the dedup table
// does not yet hold, the engine reads from memory (pendingMarks), and a
// start folds what a stop left.

const (
	// foldEvery is the least time between two folds.
	foldEvery = time.Second
	// foldMax folds at once past this many marks waiting in memory.
	foldMax = 50_000
)

// The fold: the log's marks in key order, the newest of one key last so
// that it wins, then the log emptied. One statement each, inside SQLite.
const (
	foldMarks = `INSERT INTO dedup (rule, key, until, notification)
		SELECT rule, key, until, notification FROM dedup_log WHERE true ORDER BY rule, key, id
		ON CONFLICT (rule, key) DO UPDATE SET until = excluded.until, notification = excluded.notification`
	emptyLog = `DELETE FROM dedup_log`
)

// markUndo restores a pending mark when its batch rolls back.
type markUndo struct {
	key  [2]string
	prev dedupVal
	had  bool
}

// logMark records a mark: in memory until it is folded, and in the
// batch's log rows.
func (e *Engine) logMark(b *batch, rule, key string, until int64, notif string) {
	k := [2]string{rule, key}
	prev, had := e.pendingMarks[k]
	b.markUndo = append(b.markUndo, markUndo{key: k, prev: prev, had: had})
	e.pendingMarks[k] = dedupVal{notif: notif, until: until}
	b.marks.add(rule, key, until, notif)
}

// foldDue says the batch about to commit should fold the log.
func (e *Engine) foldDue(b *batch) bool {
	if len(e.pendingMarks) == 0 {
		return false
	}
	return b.flushAll || len(e.pendingMarks) >= foldMax || !e.now().Before(e.lastFold.Add(foldEvery))
}

// marksRolledBack undoes the batch's marks in memory, newest first.
func (e *Engine) marksRolledBack(b *batch) {
	for i := len(b.markUndo) - 1; i >= 0; i-- {
		u := b.markUndo[i]
		if u.had {
			e.pendingMarks[u.key] = u.prev
		} else {
			delete(e.pendingMarks, u.key)
		}
	}
	b.markUndo = nil
}

// marksCommitted forgets the marks in memory once a fold committed: the
// dedup table holds them.
func (e *Engine) marksCommitted(b *batch) {
	b.markUndo = nil
	if b.folded {
		clear(e.pendingMarks)
		e.lastFold = e.now()
	}
}

// foldAtStart folds what the log holds from before this start, so the
// dedup table (and the key filter loaded from it) is whole.
func (e *Engine) foldAtStart(ctx context.Context) error {
	tx, err := e.st.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("engine: fold dedup marks: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if err := foldLog(ctx, tx); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("engine: fold dedup marks: %w", err)
	}
	e.lastFold = e.now()
	return nil
}

// insertMarks is the Bulk that appends dedup_log rows.
func insertMarks() *store.Bulk {
	return store.Insert("dedup_log (rule, key, until, notification)", 4)
}

// writeMarks queues the batch's log rows and, when due, the fold after
// them; nothing in the batch reads the log, and the dedup table is read
// only before the commit starts.
func (e *Engine) writeMarks(ctx context.Context, b *batch) error {
	b.folded = e.foldDue(b)
	if b.marks.rows() == 0 && !b.folded {
		return nil
	}
	if b.pipe != nil {
		b.unsynced |= tOther
		if b.marks.rows() > 0 {
			b.pipe.add(stmt{bulk: b.marks.ins, args: b.marks.take()})
		}
		if b.folded {
			b.pipe.add(stmt{q: foldMarks})
			b.pipe.add(stmt{q: emptyLog})
		}
		return nil
	}
	if err := b.marks.flush(ctx, b.tx); err != nil {
		return err
	}
	if b.folded {
		return foldLog(ctx, b.tx)
	}
	return nil
}

// foldLog folds the dedup log into the dedup table and empties it.
func foldLog(ctx context.Context, ex store.Execer) error {
	for _, q := range []string{foldMarks, emptyLog} {
		if _, err := ex.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("store: fold dedup marks: %w", err)
		}
	}
	return nil
}
