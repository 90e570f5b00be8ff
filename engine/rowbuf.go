package engine

import (
	"context"
	"fmt"
	"strings"
)

// rowBuffer collects the rows of an append-only table — decisions and the
// journal, which nothing reads inside the transaction — and commit writes
// them many per INSERT statement: one statement per row cost more in
// database/sql and cgo overhead than SQLite spent storing the row.
type rowBuffer struct {
	table string // "journal (seq, at, …)"
	cols  int
	args  []any // rows, flattened
}

func (rb *rowBuffer) add(vals ...any) { rb.args = append(rb.args, vals...) }

func (rb *rowBuffer) rows() int { return len(rb.args) / rb.cols }

// insertChunks are the statement sizes used: a few fixed shapes, so the
// driver's statement cache keeps them all prepared.
var insertChunks = [...]int{64, 16, 4, 1}

// flushRows writes the buffered rows in b's transaction and empties the
// buffer.
func (e *Engine) flushRows(ctx context.Context, b *batch, rb *rowBuffer) error {
	n, i := rb.rows(), 0
	for _, chunk := range insertChunks {
		for n-i >= chunk {
			q := e.insertSQL(rb.table, rb.cols, chunk)
			if _, err := b.tx.ExecContext(ctx, q, rb.args[i*rb.cols:(i+chunk)*rb.cols]...); err != nil {
				return fmt.Errorf("store: insert into %s: %w", rb.table, err)
			}
			i += chunk
		}
	}
	clear(rb.args)
	rb.args = rb.args[:0]
	return nil
}

type insertKey struct {
	table string
	rows  int
}

// insertSQL returns (and remembers) the INSERT of rows rows into table.
func (e *Engine) insertSQL(table string, cols, rows int) string {
	k := insertKey{table, rows}
	if q, ok := e.inserts[k]; ok {
		return q
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	q := "INSERT INTO " + table + " VALUES " + strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
	if e.inserts == nil {
		e.inserts = map[insertKey]string{}
	}
	e.inserts[k] = q
	return q
}
