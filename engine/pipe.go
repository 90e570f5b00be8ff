package engine

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/proactived/proactived/engine/store"
)

// stmtPipe runs the write statements of one event batch on a goroutine of
// its own, in the batch's transaction, while the engine goes on evaluating
// the batch's next events. About half of the engine goroutine's time per
// event was SQLite executing statements whose results it never looks at
// (outbox rows, dedup marks, decisions, entity write-back); here that half
// runs on the other core (BENCHMARKS.md, sixth round).
//
// The batch still commits before its events are acked, exactly as before:
// commit waits for the pipe to run everything, then commits. What changes
// is only which goroutine executes a write and when. Anything that needs a
// statement's answer — a read, or a write whose row count decides what
// happens next — first waits until the pipe has run every statement queued
// before it (sync), so it sees the batch's own writes, and then runs on the
// engine's goroutine. A failed statement fails the batch: the pipe skips
// the rest, and the next sync or the commit returns the error, which rolls
// the whole batch back as a failed statement did before.
type stmtPipe struct {
	ctx  context.Context
	tx   *sql.Tx
	pend []stmt
	ch   chan []stmt
	ack  chan error
	done chan struct{}
	// err is the first failure; only the pipe's goroutine touches it.
	err error
}

// stmt is one queued write: a statement with its arguments, rows for a
// bulk insert, or (sync) a request to report back.
type stmt struct {
	q    string
	args []any
	bulk *store.Bulk
	sync bool
}

// pipeChunk is how many statements are handed over at once: one hand-off
// per ~16 events keeps the pipe's goroutine busy without waking it for
// every statement.
const pipeChunk = 16

func newStmtPipe(ctx context.Context, tx *sql.Tx) *stmtPipe {
	p := &stmtPipe{ctx: ctx, tx: tx, ch: make(chan []stmt, 64), ack: make(chan error), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *stmtPipe) add(s stmt) {
	p.pend = append(p.pend, s)
	if len(p.pend) >= pipeChunk {
		p.send()
	}
}

func (p *stmtPipe) send() {
	if len(p.pend) > 0 {
		p.ch <- p.pend
		p.pend = make([]stmt, 0, pipeChunk)
	}
}

// sync waits until every statement queued so far has run and returns the
// first error of the batch.
func (p *stmtPipe) sync() error {
	p.pend = append(p.pend, stmt{sync: true})
	p.send()
	return <-p.ack
}

// stop ends the pipe's goroutine; statements queued and not synced are
// dropped with the transaction (stop is for rollback, or after a sync).
func (p *stmtPipe) stop() {
	if p.ch == nil {
		return
	}
	close(p.ch)
	<-p.done
	p.ch = nil
}

func (p *stmtPipe) run() {
	defer close(p.done)
	for chunk := range p.ch {
		for _, s := range chunk {
			switch {
			case s.sync:
				p.ack <- p.err
			case p.err != nil:
				// The batch failed: the rest is not run.
			default:
				p.err = p.exec(s)
			}
		}
	}
}

func (p *stmtPipe) exec(s stmt) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: panic in a write: %v", r)
		}
	}()
	if s.bulk != nil {
		return s.bulk.Exec(p.ctx, p.tx, s.args)
	}
	if _, err := p.tx.ExecContext(p.ctx, s.q, s.args...); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
