package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/store"
)

// Write-back of entity state and the journal.
//
// Both are derived from the stream alone: an entity is the shallow merge of
// the events that touched it, a journal row is one of those events. So they
// need not reach SQLite inside the batch that acks their events. The stream
// is the log: an entity change stays in memory for up to
// intake.state_flush (one write then covers every event that touched the
// entity meanwhile, instead of one write per batch); journal rows go, once
// their batch committed, to the journal file's own writer on its own
// goroutine (store/journal.go). Each records how far it is written
// (state_seq in meta, journal_seq in the journal file's meta). After a
// crash the intake re-reads the retained events above those positions and
// Rebuild merges them again; re-merging an event the stored state already
// holds is harmless, because the last event to set a field wins either
// way.
//
// Decisions, the outbox, dedup marks and timers are not derived from the
// stream alone (they depend on the clock and on what was sent), so they are
// still committed before the ack.

// dirtyRef is an entity in the write-back queue, as it was when queued.
type dirtyRef struct {
	en  *entity
	seq uint64
	at  time.Time
}

// valid says the entity still waits for the write that queued it.
func (d dirtyRef) valid() bool { return d.en.dirty && d.en.dirtySeq == d.seq }

// markDirty records a change to an entity by the event at seq (0: from
// outside the stream).
func (e *Engine) markDirty(en *entity, seq uint64) {
	if en.dirty && (en.dirtySeq != 0 || seq == 0) {
		return // already waiting for a write that will carry this change
	}
	en.dirty = true
	en.dirtySeq = seq
	if seq != 0 {
		e.dirtyQ = append(e.dirtyQ, dirtyRef{en: en, seq: seq, at: e.now()})
	}
}

// writeBack is what one commit writes of the queues; applied after the
// transaction commits, forgotten if it rolls back.
type writeBack struct {
	entities []*entity
	dirtyN   int // dirtyQ entries consumed
	stateSeq uint64
}

// flushState writes, in b's transaction, every entity changed from outside
// the stream and whatever of the queue is older than intake.state_flush
// (everything when all is set, up to quietFlush more in a quiet batch),
// and moves state_seq.
func (e *Engine) flushState(ctx context.Context, b *batch, all bool) error {
	wb := &b.wb
	for _, en := range b.touched {
		en.inBatch = false
		if en.dirty && en.dirtySeq == 0 {
			if err := e.saveEntity(ctx, b, en); err != nil {
				return err
			}
			wb.entities = append(wb.entities, en)
		}
	}
	cutoff := e.now().Add(-e.flushEvery)
	early := 0 // not due yet, written because the stream is quiet
	if b.quiet {
		early = quietFlush
	}
	due := func(at time.Time, backlog int) bool {
		if all || e.flushEvery <= 0 || !at.After(cutoff) || backlog > e.maxDirty {
			return true
		}
		early--
		return early >= 0
	}
	for wb.dirtyN < len(e.dirtyQ) {
		d := e.dirtyQ[wb.dirtyN]
		if d.valid() {
			if !due(d.at, len(e.dirtyQ)-wb.dirtyN) {
				break
			}
			if err := e.saveEntity(ctx, b, d.en); err != nil {
				return err
			}
			wb.entities = append(wb.entities, d.en)
			d.en.dirtySeq = 0 // written; set again if an event changes it before the commit
		}
		wb.dirtyN++
	}
	wb.stateSeq = b.lastSeq
	if d, ok := e.oldestDirty(wb.dirtyN); ok {
		wb.stateSeq = d.seq - 1
	}
	if e.rebuildPending {
		// Rebuild has not re-merged the events above the stored position
		// yet: it stays where it is.
		wb.stateSeq = e.stateSeq
	}
	return e.saveMeta(ctx, b)
}

// oldestDirty is the first entry from dirtyQ[from:] still waiting.
func (e *Engine) oldestDirty(from int) (dirtyRef, bool) {
	for _, d := range e.dirtyQ[from:] {
		if d.valid() {
			return d, true
		}
	}
	return dirtyRef{}, false
}

// flushDue says a queued entity change waited intake.state_flush.
func (e *Engine) flushDue(now time.Time) bool {
	cutoff := now.Add(-e.flushEvery)
	d, ok := e.oldestDirty(0)
	return ok && !d.at.After(cutoff)
}

// dirtyShare bounds the write-back queue to a quarter of the entity
// cache: beyond it the oldest entries are written at once, so memory stays
// bounded under any load, and the cache (which keeps unwritten entities
// when it drops a generation) never fills with them.
const dirtyShare = 4

// saveMeta writes the consumer position and the entity write-back
// position (the journal file keeps its own).
func (e *Engine) saveMeta(ctx context.Context, b *batch) error {
	wb := &b.wb
	if b.lastSeq == e.lastSeq && wb.stateSeq == e.stateSeq {
		return nil
	}
	err := b.write(ctx, tOther, `INSERT INTO meta (k, v) VALUES ('last_seq', ?), ('state_seq', ?)
		ON CONFLICT (k) DO UPDATE SET v = excluded.v`,
		strconv.FormatUint(b.lastSeq, 10), strconv.FormatUint(wb.stateSeq, 10))
	if err != nil {
		return fmt.Errorf("save consumer position: %w", err)
	}
	return nil
}

// committed applies a committed write-back to the queues.
func (e *Engine) committed(b *batch) {
	wb := &b.wb
	for _, en := range wb.entities {
		if en.dirtySeq == 0 { // not changed again since it was written
			en.dirty = false
		}
	}
	e.dirtyQ = compact(e.dirtyQ, wb.dirtyN)
	e.lastSeq, e.stateSeq = b.lastSeq, wb.stateSeq
	e.handJournal()
}

// handJournal hands the journal rows of committed batches to the journal
// file's writer (store/journal.go), with the stream position they complete.
// Only committed events: a row written for a batch that then rolled back
// would be written again when its event comes back. Not during a rebuild,
// whose rows complete the journal only when all are merged. With the
// journal off the position still moves, so turning it on later does not
// make the next start re-read the stream from where it was turned off.
func (e *Engine) handJournal() {
	if e.rebuildPending || (len(e.journalQ) == 0 && e.journalSeq == e.lastSeq) {
		return
	}
	e.st.Journal.Append(e.journalQ, e.lastSeq)
	clear(e.journalQ)
	e.journalQ = e.journalQ[:0]
	e.journalSeq = e.lastSeq
}

// compact drops the first n entries, reusing the array once the live part
// is small.
func compact[T any](q []T, n int) []T {
	if n == 0 {
		return q
	}
	if n == len(q) {
		clear(q)
		return q[:0]
	}
	rest := q[n:]
	if len(rest) < cap(q)/4 {
		moved := copy(q, rest)
		clear(q[moved:])
		return q[:moved]
	}
	return rest
}

// rolledBack forgets what the failed batch changed in memory. Entity state
// changed by earlier, committed batches may be unwritten too, so the cache
// is dropped and the events above the stored positions are merged again
// (Rebuild) before the next batch.
func (e *Engine) rolledBack() {
	e.cache.reset()
	e.dedupMemo.reset()
	e.contactMemo.reset()
	clear(e.dirtyQ)
	e.dirtyQ = e.dirtyQ[:0]
	e.journalQ = nil
	e.rebuiltSeq = 0 // what a rebuild merged was in the cache
	if min(e.stateSeq, e.journalSeq) < e.lastSeq {
		e.rebuildPending = true
	}
}

// Flush writes every entity change and journal row still in memory (at
// shutdown, before a fan-out scans stored state, when the API reads).
func (e *Engine) Flush(ctx context.Context) error {
	e.mu.Lock()
	err := e.flushAll(stmtCtx(ctx))
	e.mu.Unlock()
	if err != nil {
		return err
	}
	// The journal rows of committed batches are with the journal's writer:
	// wait for it, but not for long if its file cannot be written (readiness
	// says so, and whatever reads after this sees the rows written so far;
	// a stop leaves the rest to the rebuild at the next start).
	sctx, cancel := context.WithTimeout(ctx, journalSyncWait)
	defer cancel()
	if err := e.st.Journal.Sync(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// journalSyncWait bounds how long Flush waits for the journal's writer.
const journalSyncWait = 2 * time.Second

func (e *Engine) flushAll(ctx context.Context) error {
	if len(e.dirtyQ) == 0 && len(e.journalQ) == 0 {
		return nil
	}
	return e.withTxAll(ctx, func() error { return nil })
}

// readMeta loads the consumer and write-back positions.
func (e *Engine) readMeta(ctx context.Context) error {
	var err error
	if e.lastSeq, _, err = store.ReadSeq(ctx, e.st.W, "last_seq"); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	var ok bool
	// A store written before write-back has everything written.
	if e.stateSeq, ok, err = store.ReadSeq(ctx, e.st.W, "state_seq"); err != nil {
		return fmt.Errorf("engine: %w", err)
	} else if !ok {
		e.stateSeq = e.lastSeq
	}
	e.journalSeq = e.st.Journal.Durable()
	e.rebuildPending = min(e.stateSeq, e.journalSeq) < e.lastSeq
	return nil
}

// RebuildRange is the stream range (from, to] whose events must be merged
// again into entity state and the journal before intake resumes; from ==
// to when there is none. The intake reads it at start and after a failed
// commit.
func (e *Engine) RebuildRange() (from, to uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.rebuildPending {
		return e.lastSeq, e.lastSeq
	}
	return min(e.stateSeq, e.journalSeq), e.lastSeq
}

// Rebuild merges one retained event again: into entity state if its
// sequence is above state_seq, into the journal if above journal_seq. It
// evaluates no rule and records nothing else: the decisions of these
// events are already committed.
func (e *Engine) Rebuild(ctx context.Context, raw event.Raw) error {
	ctx = stmtCtx(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.rebuildPending || raw.Seq > e.lastSeq || raw.Seq <= max(min(e.stateSeq, e.journalSeq), e.rebuiltSeq) {
		return nil
	}
	ev, rej := event.DecodeWith(raw, e.cfg.Intake.MaxEventBytes, e.keys)
	if rej != nil {
		return nil // it was dead-lettered
	}
	if ev.ExplicitID {
		// A repeat of an id seen at another sequence was skipped.
		seq, ok, err := e.seenSeq(ctx, ev.ID)
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		if ok && seq != 0 && seq != ev.Seq {
			return nil
		}
	}
	p, rej := e.prepare(ev)
	if rej != nil {
		return nil
	}
	// Every entity is loaded before anything changes: an event either
	// merges whole or not at all, so a rebuild cut off here (the store
	// failing) and resumed does not queue a journal row twice.
	ens := make([]*entity, len(p.keys))
	for i, k := range p.keys {
		if k.merge && ev.Seq > e.stateSeq {
			en, err := e.load(ctx, k.ent.Name, k.key)
			if err != nil {
				return fmt.Errorf("rebuild: %w", err)
			}
			ens[i] = en
		}
	}
	for i, k := range p.keys {
		if !k.merge {
			continue
		}
		if ens[i] != nil {
			e.merge(ens[i], ev, ev.Time)
		}
		if ev.Seq > e.journalSeq {
			if err := e.queueJournal(ev, k.ent.Name, k.key); err != nil {
				return err
			}
		}
	}
	e.rebuiltSeq = ev.Seq
	return nil
}

// RebuildDone ends a rebuild: positions move again from the next commit.
func (e *Engine) RebuildDone(ctx context.Context) error {
	ctx = stmtCtx(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rebuildPending = false
	e.rebuiltSeq = 0
	return e.flushAll(ctx)
}

// merge applies an event's fields to an entity's state.
func (e *Engine) merge(en *entity, ev *event.Event, now time.Time) {
	if en.state == nil {
		en.state = make(map[string]any, len(ev.Data))
	}
	for f, v := range ev.Data {
		en.state[f] = v
	}
	en.updated = now
	if en.created.IsZero() {
		en.created = now
	}
	e.markDirty(en, ev.Seq)
}

// queueJournal queues the journal row of an event merged into an entity;
// the commit hands it to the journal's writer.
func (e *Engine) queueJournal(ev *event.Event, etype, ekey string) error {
	if !e.journalOn() {
		return nil
	}
	data := ev.RawData
	if data == nil {
		var err error
		if data, err = event.AppendJSON(nil, ev.Data); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	e.journalQ = append(e.journalQ, store.JournalRow{Seq: ev.Seq, At: store.Millis(ev.Time), Etype: etype, Ekey: ekey, Subject: ev.Subject, MsgID: ev.ID, Data: data})
	return nil
}
