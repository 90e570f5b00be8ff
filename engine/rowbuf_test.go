package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/proactived/proactived/engine/store"
)

// TestFlushRowsEveryChunkSize: rows buffered for commit land in the table
// once each, in order, whatever mix of statement sizes writes them.
func TestFlushRowsEveryChunkSize(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := &Engine{st: st, decisionRows: store.InsertDecisions()}
	total := 0
	for _, n := range []int{0, 1, 3, 4, 17, 64, 85, 150} {
		b, err := e.begin(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			b.decisions.add(int64(total+i), "r", "order", fmt.Sprint("o-", total+i), "c", "sent", "why", "", "ev", "live")
		}
		if err := b.decisions.flush(ctx, b.tx); err != nil {
			t.Fatal(err)
		}
		if b.decisions.rows() != 0 {
			t.Fatalf("buffer not emptied: %d rows", b.decisions.rows())
		}
		if err := b.tx.Commit(); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	rows, err := st.R.Query(`SELECT at, ekey FROM decisions ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var at int64
		var key string
		if err := rows.Scan(&at, &key); err != nil {
			t.Fatal(err)
		}
		if at != int64(i) || key != fmt.Sprint("o-", i) {
			t.Fatalf("row %d is (%d, %s)", i, at, key)
		}
		i++
	}
	if i != total {
		t.Fatalf("%d rows stored, want %d", i, total)
	}
}
