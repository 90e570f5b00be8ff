package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Bulk runs one statement over many rows, many rows per statement: a
// VALUES list of up to 64 rows instead of a statement per row. Per row,
// database/sql and cgo cost more than SQLite spends storing it.
type Bulk struct {
	stmt string // the statement, with %s where the VALUES rows go
	cols int
	sqls map[int]string
}

// NewBulk returns a Bulk for stmt, whose "%s" takes the rows of cols
// values each: "INSERT INTO t (a, b) VALUES %s", or "WITH v(id, at) AS
// (VALUES %s) UPDATE t SET at = v.at FROM v WHERE t.id = v.id".
func NewBulk(stmt string, cols int) *Bulk {
	return &Bulk{stmt: stmt, cols: cols, sqls: map[int]string{}}
}

// Insert is the Bulk that inserts into table ("t (a, b)").
func Insert(table string, cols int) *Bulk { return NewBulk("INSERT INTO "+table+" VALUES %s", cols) }

// InsertDecisions is the Bulk that appends decision rows, written by the
// engine and the dispatcher: at, rule, etype, ekey, customer, verdict,
// reason, notification, event, mode.
func InsertDecisions() *Bulk {
	return Insert("decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event, mode)", 10)
}

// Cols is how many values make one row.
func (bk *Bulk) Cols() int { return bk.cols }

// Execer is a transaction or a database.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// chunks are the statement sizes used: a few fixed shapes, so the driver's
// statement cache keeps them all prepared.
var chunks = [...]int{64, 16, 4, 1}

// Exec runs the statement over args, the rows' values one row after
// another (len(args) a multiple of Cols).
func (bk *Bulk) Exec(ctx context.Context, ex Execer, args []any) error {
	n, i := len(args)/bk.cols, 0
	for _, chunk := range chunks {
		for n-i >= chunk {
			if _, err := ex.ExecContext(ctx, bk.sql(chunk), args[i*bk.cols:(i+chunk)*bk.cols]...); err != nil {
				return fmt.Errorf("store: %.40s…: %w", bk.stmt, err)
			}
			i += chunk
		}
	}
	return nil
}

func (bk *Bulk) sql(rows int) string {
	if q, ok := bk.sqls[rows]; ok {
		return q
	}
	one := "(" + Placeholders(bk.cols) + ")"
	q := fmt.Sprintf(bk.stmt, strings.TrimSuffix(strings.Repeat(one+", ", rows), ", "))
	bk.sqls[rows] = q
	return q
}
