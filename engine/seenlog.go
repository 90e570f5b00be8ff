package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/store"
)

// Producers' event ids (Nats-Msg-Id, CloudEvents id) are appended to
// seen_log with each batch and folded into seen_ids, sorted by id, about
// once a second — as the dedup marks are (dedupfold.go).
//
// An id is a random key, most often a UUID. Inserted into seen_ids with
// its batch, every event dirtied a page of that B-tree in every commit,
// and the tree grows with every event the retention keeps: with ids on
// every event, the drain ran at 43,000 events/s on a fresh store and
// 24,000 after a million events, against 59,000 and 52,000 without
// (BENCHMARKS.md, seventeenth round). An append has no key to place; the
// fold writes a second's ids in key order, each page of the tree once.
// The log is committed with its batch, before the ack; the ids it holds
// that seen_ids does not yet, the engine reads from memory (pendingSeen),
// and a start folds what a stop left.

const (
	foldSeenIDs = `INSERT INTO seen_ids (id, at, seq)
		SELECT eid, at, seq FROM seen_log WHERE id <= ? ORDER BY eid
		ON CONFLICT (id) DO NOTHING`
	emptySeenLog = `DELETE FROM seen_log WHERE id <= ?`
)

// seenFoldMax folds the id log at once past this many ids in memory.
// Every event may bring one, so a second's ids at full speed are many
// more than a second's dedup marks: with foldMax (50,000) here, the
// daemon's peak RSS over a million entities with ids was 258–277 MB,
// with 16,384 249–259 MB (BENCHMARKS.md, seventeenth round).
const seenFoldMax = 16_384

// foldSeenStmts fold the id log into seen_ids.
var foldSeenStmts = [2]string{foldSeenIDs, emptySeenLog}

// loggedSeen is an id in the log not folded yet, with its log id.
type loggedSeen struct {
	id    string
	logID int64
}

// seen records a producer's event id and says whether it was recorded
// before. Ids are recorded once: the first sequence an id came with is
// the one kept.
func (e *Engine) seen(ctx context.Context, b *batch, id string, seq uint64, now time.Time) (bool, error) {
	if _, ok := e.pendingSeen[id]; ok {
		return true, nil
	}
	if e.seenKeys.mayHave(id, "") {
		// Folds write seen_ids, and an id stays in pendingSeen until its
		// fold committed: the batch's transaction, with or without the
		// pipe's fold run yet, answers for every id not in memory, so the
		// read need not wait for the pipe.
		var one int
		err := b.tx.QueryRowContext(ctx, `SELECT 1 FROM seen_ids WHERE id = ?`, id).Scan(&one)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("store: %w", err)
			b.fail(err)
			return false, err
		}
	}
	// A copy: the id may share the memory of the message's headers.
	id = strings.Clone(id)
	e.seenKeys.add(id, "")
	e.seenID++
	e.pendingSeen[id] = seq
	e.seenLog = append(e.seenLog, loggedSeen{id: id, logID: e.seenID})
	b.seen.add(e.seenID, id, store.Millis(now), int64(seq))
	return false, nil
}

// seenSeq is the stream sequence an event id was first seen with; ok is
// false for an id never seen.
func (e *Engine) seenSeq(ctx context.Context, id string) (seq uint64, ok bool, err error) {
	if seq, ok := e.pendingSeen[id]; ok {
		return seq, true, nil
	}
	var s int64
	err = e.st.W.QueryRowContext(ctx, `SELECT seq FROM seen_ids WHERE id = ?`, id).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("store: %w", err)
	}
	return uint64(s), true, nil
}

// writeSeen queues the batch's id log rows and, when due, the fold after
// them.
func (e *Engine) writeSeen(ctx context.Context, b *batch) error {
	b.seenFoldedTo = e.seenFold.bound(e.now(), b, len(e.seenLog), len(e.pendingSeen), seenFoldMax, func(i int) int64 { return e.seenLog[i].logID }, e.seenID)
	return b.writeLog(ctx, &b.seen, b.seenFoldedTo, foldSeenStmts)
}

// seenRolledBack forgets the ids the batch logged.
func (e *Engine) seenRolledBack(b *batch) {
	for _, s := range e.seenLog[b.seenLog0:] {
		delete(e.pendingSeen, s.id)
	}
	clear(e.seenLog[b.seenLog0:])
	e.seenLog = e.seenLog[:b.seenLog0]
	e.seenID = b.seenID0
}

// seenCommitted forgets the ids in memory that a committed fold put in
// seen_ids.
func (e *Engine) seenCommitted(b *batch) {
	if b.seenFoldedTo == 0 {
		return
	}
	n := 0
	for n < len(e.seenLog) && e.seenLog[n].logID <= b.seenFoldedTo {
		delete(e.pendingSeen, e.seenLog[n].id)
		n++
	}
	e.seenLog = compact(e.seenLog, n)
	e.seenFold.done(e.now(), len(e.seenLog))
}
