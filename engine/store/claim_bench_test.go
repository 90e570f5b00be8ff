package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkClaimBacklog is the dispatcher's claim query (256 due rows in
// priority order) over a backlog of 50,000 pending notifications, as the
// outbox holds after a channel outage: sorting every due row versus
// reading outbox_claim in order.
func BenchmarkClaimBacklog(b *testing.B) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(b.TempDir(), "p.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	tx, err := st.W.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 50000; i++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (id, idem_key, rule, etype, ekey, customer, priority, status, candidates, next_at, doc, created_at, updated_at)
			VALUES (?, ?, 'r', 'order', ?, 'c', ?, 'pending', '[]', ?, '{}', 0, 0)`, fmt.Sprint("n", i), fmt.Sprint("k", i), fmt.Sprint("o", i), i%3, 1000+i); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	const q = `SELECT id, rule, etype, ekey, customer, candidates, hop, attempts, doc FROM outbox %s
		WHERE status IN ('pending', 'retry', 'sending') AND next_at <= ? ORDER BY priority DESC, next_at LIMIT 256`
	for _, c := range []struct{ name, hint string }{{"sorted", ""}, {"indexed", "INDEXED BY outbox_claim"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				rows, err := st.W.QueryContext(ctx, fmt.Sprintf(q, c.hint), 1<<40)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				rows.Close()
				if n != 256 {
					b.Fatalf("claimed %d rows", n)
				}
			}
		})
	}
}
