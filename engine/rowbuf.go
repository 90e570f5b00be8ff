package engine

import (
	"context"

	"github.com/proactived/proactived/engine/store"
)

// rowBuffer collects the rows of an append-only table — decisions and the
// journal, which nothing reads inside the transaction — and commit writes
// them many per INSERT statement (store.Bulk).
type rowBuffer struct {
	ins  *store.Bulk
	args []any // rows, flattened
}

func (rb *rowBuffer) add(vals ...any) { rb.args = append(rb.args, vals...) }

func (rb *rowBuffer) rows() int { return len(rb.args) / rb.ins.Cols() }

// take hands the buffered rows over (to the batch's pipe) and empties
// the buffer.
func (rb *rowBuffer) take() []any {
	args := rb.args
	rb.args = nil
	return args
}

// flush writes the buffered rows in tx and empties the buffer.
func (rb *rowBuffer) flush(ctx context.Context, tx store.Execer) error {
	if err := rb.ins.Exec(ctx, tx, rb.args); err != nil {
		return err
	}
	clear(rb.args)
	rb.args = rb.args[:0]
	return nil
}
