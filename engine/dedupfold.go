package engine

import (
	"context"
	"fmt"
	"math"
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
	// foldChunk is the most marks one batch folds, or foldPerEvent times
	// its events if more. A second's marks at once held up the batch that
	// folded them for 12–20 ms at 10,000–15,000 events/s, and every event
	// behind it (BENCHMARKS.md, tenth round); a longer log is folded over
	// the next batches, oldest first. A big batch over a backlog folds
	// more at once: split into small folds the marks of a backlog's
	// second touched the table's pages several times over.
	foldChunk    = 2048
	foldPerEvent = 4
)

// The fold: the log's marks up to an id in key order, the newest of one
// key last so that it wins, then those marks deleted from the log. One
// statement each, inside SQLite.
const (
	foldMarks = `INSERT INTO dedup (rule, key, until, notification)
		SELECT rule, key, until, notification FROM dedup_log WHERE id <= ? ORDER BY rule, key, id
		ON CONFLICT (rule, key) DO UPDATE SET until = excluded.until, notification = excluded.notification`
	emptyLog = `DELETE FROM dedup_log WHERE id <= ?`
)

// foldAll is the log id bound of a fold of the whole log.
const foldAll = math.MaxInt64

// markUndo restores a pending mark when its batch rolls back.
type markUndo struct {
	key  [2]string
	prev dedupVal
	had  bool
}

// loggedMark is a mark in the log not folded yet: e.markLog holds them
// in log order, so a fold up to an id knows which marks in memory it
// covers.
type loggedMark struct {
	key [2]string
	id  int64
}

// logMark records a mark: in memory until it is folded, and in the
// batch's log rows, under a log id of the engine's (ids start again after
// the fold at start empties the log).
func (e *Engine) logMark(b *batch, rule, key string, until int64, notif string) {
	k := [2]string{rule, key}
	prev, had := e.pendingMarks[k]
	b.markUndo = append(b.markUndo, markUndo{key: k, prev: prev, had: had})
	e.markID++
	e.pendingMarks[k] = dedupVal{notif: notif, until: until, logID: e.markID}
	e.markLog = append(e.markLog, loggedMark{key: k, id: e.markID})
	b.marks.add(e.markID, rule, key, until, notif)
}

// logFold is when a log (the dedup marks', the producers' event ids')
// is folded into its table next.
type logFold struct {
	// last is when the last fold ended; folding says one goes on over
	// several batches.
	last    time.Time
	folding bool
}

// bound is the log id up to which batch b folds a log of n entries, the
// i-th with log id idAt(i) and the newest lastID, of which pending are
// held in memory; 0 when it does not fold. A fold is due a second after
// the last one ended, past most entries in memory, when everything is
// written (flushAll), and while a fold goes on over several batches (a
// log longer than one chunk).
func (f *logFold) bound(now time.Time, b *batch, n, pending, most int, idAt func(int) int64, lastID int64) int64 {
	if n == 0 {
		return 0
	}
	if b.flushAll {
		return lastID
	}
	if !f.folding && pending < most && now.Before(f.last.Add(foldEvery)) {
		return 0
	}
	if chunk := max(foldChunk, foldPerEvent*b.events); n > chunk {
		return idAt(chunk - 1)
	}
	return lastID
}

// done takes a committed fold into account: rest entries are still in
// the log.
func (f *logFold) done(now time.Time, rest int) {
	f.folding = rest > 0
	if !f.folding {
		f.last = now
	}
}

// foldTo is the log id up to which the batch about to commit folds the
// dedup log; 0 when it does not.
func (e *Engine) foldTo(b *batch) int64 {
	return e.markFold.bound(e.now(), b, len(e.markLog), len(e.pendingMarks), foldMax, func(i int) int64 { return e.markLog[i].id }, e.markID)
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
	clear(e.markLog[b.markLog0:])
	e.markLog = e.markLog[:b.markLog0]
	e.markID = b.markID0
	b.markUndo = nil
}

// marksCommitted forgets the marks in memory that a committed fold put in
// the dedup table (unless the key was marked again since, in the log
// after them).
func (e *Engine) marksCommitted(b *batch) {
	b.markUndo = nil
	if b.foldedTo == 0 {
		return
	}
	n := 0
	for n < len(e.markLog) && e.markLog[n].id <= b.foldedTo {
		m := e.markLog[n]
		if v, ok := e.pendingMarks[m.key]; ok && v.logID == m.id {
			delete(e.pendingMarks, m.key)
		}
		n++
	}
	e.markLog = compact(e.markLog, n)
	e.markFold.done(e.now(), len(e.markLog))
}

// foldAtStart folds what the logs (dedup marks, event ids) hold from
// before this start, so their tables (and the key filters loaded from
// them) are whole.
func (e *Engine) foldAtStart(ctx context.Context) error {
	tx, err := e.st.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("engine: fold the logs: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	for _, fold := range [][2]string{foldMarkStmts, foldSeenStmts} {
		if err := runFold(ctx, tx, fold, foldAll); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("engine: fold the logs: %w", err)
	}
	e.markFold.last = e.now()
	e.seenFold.last = e.now()
	return nil
}

// insertMarks is the Bulk that appends dedup_log rows.
func insertMarks() *store.Bulk {
	return store.Insert("dedup_log (id, rule, key, until, notification)", 5)
}

// writeMarks queues the batch's log rows and, when due, the fold after
// them; nothing in the batch reads the log, and the dedup table is read
// only before the commit starts.
func (e *Engine) writeMarks(ctx context.Context, b *batch) error {
	b.foldedTo = e.foldTo(b)
	return b.writeLog(ctx, &b.marks, b.foldedTo, foldMarkStmts)
}

// foldMarkStmts fold the dedup log into the dedup table.
var foldMarkStmts = [2]string{foldMarks, emptyLog}

// writeLog queues a batch's log rows and, when upTo is set, the fold of
// the log up to that id after them (in place without a pipe).
func (b *batch) writeLog(ctx context.Context, rows *rowBuffer, upTo int64, fold [2]string) error {
	if rows.rows() == 0 && upTo == 0 {
		return nil
	}
	if b.pipe != nil {
		b.unsynced |= tOther
		if rows.rows() > 0 {
			b.pipe.add(stmt{bulk: rows.ins, args: rows.take()})
		}
		if upTo != 0 {
			for _, q := range fold {
				b.pipe.add(stmt{q: q, args: []any{upTo}})
			}
		}
		return nil
	}
	if err := rows.flush(ctx, b.tx); err != nil {
		return err
	}
	if upTo != 0 {
		return runFold(ctx, b.tx, fold, upTo)
	}
	return nil
}

// runFold runs a fold's two statements (into the table, out of the log)
// up to log id upTo.
func runFold(ctx context.Context, ex store.Execer, fold [2]string, upTo int64) error {
	for _, q := range fold {
		if _, err := ex.ExecContext(ctx, q, upTo); err != nil {
			return fmt.Errorf("store: fold a log: %w", err)
		}
	}
	return nil
}
