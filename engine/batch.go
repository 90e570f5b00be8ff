package engine

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// batch is one write transaction. Statement errors are kept in err and
// returned by commit, so the evaluation code can record decisions without
// threading errors through every helper.
type batch struct {
	tx *sql.Tx
	// pipe, when set, runs the batch's writes on a goroutine of its own
	// (pipe.go); reads and writes whose answer is used sync with it first.
	pipe *stmtPipe
	// unsynced are the tables with writes queued on the pipe since the
	// last sync: a read of any other table need not wait.
	unsynced tables
	err      error
	touched  []*entity
	queued   int
	// decisions are written at commit (rowbuf.go).
	decisions rowBuffer
	// marks are the dedup_log rows of the batch, written at commit; the
	// fold, if this batch does it, after them (dedupfold.go).
	marks    rowBuffer
	markUndo []markUndo
	// foldedTo is the log id up to which the batch folds the dedup log
	// (0: no fold); markLog0 and markID0 are the engine's log length and
	// last id when it began, restored if it rolls back.
	foldedTo int64
	markLog0 int
	markID0  int64
	// seen are the seen_log rows of the batch and seenFoldedTo the log id
	// up to which it folds that log (seenlog.go); seenLog0 and seenID0 as
	// markLog0 and markID0.
	seen         rowBuffer
	seenFoldedTo int64
	seenLog0     int
	seenID0      int64
	// events is how many events the batch holds.
	events int
	// lastSeq is the consumer position this batch commits.
	lastSeq uint64
	// flushAll writes every queued entity change.
	flushAll bool
	// quiet: the stream is quiet (a small batch), so the batch also
	// writes up to quietFlush queued entity changes that are not due yet.
	quiet bool
	wb    writeBack
}

// begin opens the write transaction of a batch; piped runs its writes on
// a goroutine of its own (event batches; timers, schedules and fan-out
// pages run theirs in place).
func (e *Engine) begin(ctx context.Context, piped bool) (*batch, error) {
	tx, err := e.st.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	e.cur = &batch{tx: tx, lastSeq: e.lastSeq,
		decisions: rowBuffer{ins: e.decisionRows},
		marks:     rowBuffer{ins: e.marksIns},
		markLog0:  len(e.markLog), markID0: e.markID,
		seen:     rowBuffer{ins: e.seenIns},
		seenLog0: len(e.seenLog), seenID0: e.seenID,
	}
	if piped {
		e.cur.pipe = newStmtPipe(ctx, tx)
	}
	return e.cur, nil
}

func (e *Engine) rollback(b *batch) {
	if b.pipe != nil {
		b.pipe.stop()
	}
	_ = b.tx.Rollback()
	e.marksRolledBack(b)
	e.seenRolledBack(b)
	e.rolledBack()
	e.cur = nil
}

func (e *Engine) commit(ctx context.Context, b *batch) error {
	if b.err != nil {
		return b.err
	}
	if b.pipe != nil {
		b.unsynced |= tOther
		b.pipe.add(stmt{bulk: b.decisions.ins, args: b.decisions.take()})
	} else if err := b.decisions.flush(ctx, b.tx); err != nil {
		return err
	}
	if err := e.writeMarks(ctx, b); err != nil {
		return err
	}
	if err := e.writeSeen(ctx, b); err != nil {
		return err
	}
	if err := e.flushState(ctx, b, b.flushAll); err != nil {
		return err
	}
	if b.pipe != nil {
		b.sync()
		b.pipe.stop()
	}
	if b.err != nil {
		return b.err
	}
	if err := b.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	e.marksCommitted(b)
	e.seenCommitted(b)
	e.committed(b)
	e.cur = nil
	if b.queued > 0 {
		e.wake()
	}
	return nil
}

// stmtCtx is the context the engine's SQL statements run with: the
// caller's values without its cancellation. With a cancellable context the
// SQLite driver runs every statement on a goroutine of its own so it can
// interrupt it, and the engine waited for a goroutine hand-off per
// statement — about half the wall time of a batch (BENCHMARKS.md). A batch
// is short and is never abandoned half-way: shutdown waits for it.
func stmtCtx(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// withTx runs fn in its own transaction (timers, schedules, fan-out pages).
func (e *Engine) withTx(ctx context.Context, fn func() error) (err error) {
	return e.withTxFlush(ctx, false, fn)
}

// withTxAll is withTx that also writes every queued entity change and
// journal row.
func (e *Engine) withTxAll(ctx context.Context, fn func() error) (err error) {
	return e.withTxFlush(ctx, true, fn)
}

func (e *Engine) withTxFlush(ctx context.Context, all bool, fn func() error) (err error) {
	b, err := e.begin(ctx, false)
	if err != nil {
		return err
	}
	b.flushAll = all
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine panic: %v", r)
		}
		if err != nil {
			e.rollback(b)
		}
	}()
	if err = fn(); err != nil {
		return err
	}
	return e.commit(ctx, b)
}

func (b *batch) fail(err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
}

// tables is a set of the tables a batch writes while it evaluates.
type tables uint8

const (
	tOutbox tables = 1 << iota
	tContacts
	tTimers
	// tOther: entities, meta, decisions — written at commit, never read
	// back by the batch.
	tOther
)

// sync waits for the pipe to run every write queued so far (a no-op
// without a pipe); a failed write fails the batch.
func (b *batch) sync() {
	if b.pipe != nil {
		b.fail(b.pipe.sync())
		b.unsynced = 0
	}
}

// reader is the transaction for a read of the tables t that must see the
// batch's own writes: after the pipe ran those queued for t. Most reads
// wait for nothing: a read of a table with nothing queued runs beside the
// pipe (database/sql serialises the two goroutines' calls on the
// connection, and the statements still queued touch other tables).
func (b *batch) reader(t tables) *sql.Tx {
	if b.unsynced&t != 0 {
		b.sync()
	}
	return b.tx
}

// exec runs a statement whose answer the caller uses, in place (after
// the queued writes).
func (b *batch) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	b.sync()
	if b.err != nil {
		return nil, b.err
	}
	res, err := b.tx.ExecContext(ctx, q, args...)
	if err != nil {
		err = fmt.Errorf("store: %w", err)
		b.fail(err)
	}
	return res, err
}

// write runs a statement whose answer nobody uses: queued on the pipe, or
// in place without one. A failure surfaces at the next sync or the commit
// (and at once without a pipe).
func (b *batch) write(ctx context.Context, t tables, q string, args ...any) error {
	if b.pipe == nil {
		_, err := b.exec(ctx, q, args...)
		return err
	}
	b.unsynced |= t
	b.pipe.add(stmt{q: q, args: args})
	return nil
}

// insertNew runs q, an INSERT … ON CONFLICT DO NOTHING of a row whose
// unique key is key, and says whether it inserted the row. A key f has
// never seen cannot conflict, so that insert is queued without waiting for
// its row count; f learns the key either way.
func (b *batch) insertNew(ctx context.Context, f *keyFilter, key string, t tables, q string, args ...any) (bool, error) {
	maybe := f.mayHave(key, "")
	f.add(key, "")
	if !maybe {
		return true, b.write(ctx, t, q, args...)
	}
	res, err := b.exec(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

const (
	timerAbsence = "absence"
	timerFor     = "for"
	timerPromise = "promise"
)

func (b *batch) deleteTimer(ctx context.Context, rule, etype, ekey, kind string) (int64, error) {
	res, err := b.exec(ctx, `DELETE FROM timers WHERE rule = ? AND etype = ? AND ekey = ? AND kind = ?`, rule, etype, ekey, kind)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// timer returns the due time of an armed timer, zero if none.
func (b *batch) timer(ctx context.Context, rule, etype, ekey, kind string) (time.Time, error) {
	var due int64
	err := b.reader(tTimers).QueryRowContext(ctx, `SELECT due FROM timers WHERE rule = ? AND etype = ? AND ekey = ? AND kind = ?`, rule, etype, ekey, kind).Scan(&due)
	if err == sql.ErrNoRows {
		return time.Time{}, nil
	}
	if err != nil {
		b.fail(fmt.Errorf("store: %w", err))
		return time.Time{}, err
	}
	return store.FromMillis(due), nil
}

func (b *batch) setTimer(ctx context.Context, rule, etype, ekey, kind string, due, armed time.Time, payload []byte) error {
	return b.write(ctx, tTimers, `INSERT INTO timers (rule, etype, ekey, kind, due, armed_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (rule, etype, ekey, kind) DO UPDATE SET due = excluded.due, armed_at = excluded.armed_at, payload = excluded.payload`,
		rule, etype, ekey, kind, store.Millis(due), store.Millis(armed), payload)
}

// decision is one recorded verdict.
type decision struct {
	rule         *rules.Rule
	ruleName     string
	etype, ekey  string
	customer     string
	verdict      string
	reason       string
	notification string
	event        string
}

func (e *Engine) decide(ctx context.Context, d decision) {
	name := d.ruleName
	mode := "live"
	if d.rule != nil {
		name = d.rule.Name
		if d.rule.Mode == "shadow" || e.shadow {
			mode = "shadow"
		}
	}
	e.obs.Decided(name, d.verdict, mode)
	if e.log.Enabled(ctx, -4) {
		e.log.Debug("decision", "rule", name, "entity", d.etype+":"+d.ekey, "customer", d.customer, "verdict", d.verdict, "reason", d.reason)
	}
	if e.cur == nil {
		return
	}
	e.cur.decisions.add(store.Millis(e.now()), name, d.etype, d.ekey, d.customer, d.verdict, d.reason, d.notification, d.event, mode)
}
