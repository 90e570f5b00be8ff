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
	tx      *sql.Tx
	err     error
	touched []*entity
	queued  int
	// decisions are written at commit (rowbuf.go).
	decisions rowBuffer
	// lastSeq is the consumer position this batch commits.
	lastSeq uint64
	// flushAll writes every queued entity change.
	flushAll bool
	wb       writeBack
}

func (e *Engine) begin(ctx context.Context) (*batch, error) {
	tx, err := e.st.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	e.cur = &batch{tx: tx, lastSeq: e.lastSeq,
		decisions: rowBuffer{ins: e.decisionRows},
	}
	return e.cur, nil
}

func (e *Engine) rollback(b *batch) {
	_ = b.tx.Rollback()
	e.rolledBack()
	e.cur = nil
}

func (e *Engine) commit(ctx context.Context, b *batch) error {
	if b.err != nil {
		return b.err
	}
	if err := b.decisions.flush(ctx, b.tx); err != nil {
		return err
	}
	if err := e.flushState(ctx, b, b.flushAll); err != nil {
		return err
	}
	if b.err != nil {
		return b.err
	}
	if err := b.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
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
	b, err := e.begin(ctx)
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

func (b *batch) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	res, err := b.tx.ExecContext(ctx, q, args...)
	if err != nil {
		err = fmt.Errorf("store: %w", err)
		b.fail(err)
	}
	return res, err
}

func (b *batch) seen(ctx context.Context, id string, seq uint64, now time.Time) (bool, error) {
	res, err := b.exec(ctx, `INSERT INTO seen_ids (id, at, seq) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`, id, store.Millis(now), int64(seq))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 0, nil
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
	err := b.tx.QueryRowContext(ctx, `SELECT due FROM timers WHERE rule = ? AND etype = ? AND ekey = ? AND kind = ?`, rule, etype, ekey, kind).Scan(&due)
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
	_, err := b.exec(ctx, `INSERT INTO timers (rule, etype, ekey, kind, due, armed_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (rule, etype, ekey, kind) DO UPDATE SET due = excluded.due, armed_at = excluded.armed_at, payload = excluded.payload`,
		rule, etype, ekey, kind, store.Millis(due), store.Millis(armed), payload)
	return err
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
