package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkDecisionRows is the cost of one decision row in the real schema,
// 256 rows per transaction over 4,000 entities (as in `proactived bench`),
// with the table's three secondary indexes and without them. One op is one
// transaction; ns/row is the figure to read. It measures
// what a row costs SQLite beyond the engine: each index entry with a
// random key (entity, customer) dirties its own B-tree page.
func BenchmarkDecisionRows(b *testing.B) {
	for _, indexes := range []bool{true, false} {
		b.Run(fmt.Sprintf("indexes=%t", indexes), func(b *testing.B) {
			ctx := context.Background()
			st, err := Open(ctx, filepath.Join(b.TempDir(), "p.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if !indexes {
				for _, ix := range []string{"decisions_entity", "decisions_customer", "decisions_rule"} {
					if _, err := st.W.ExecContext(ctx, "DROP INDEX "+ix); err != nil {
						b.Fatal(err)
					}
				}
			}
			const perStmt, perTx = 64, 256
			one := "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
			q := "INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event, mode) VALUES " +
				strings.TrimSuffix(strings.Repeat(one+", ", perStmt), ", ")
			args := make([]any, 0, perStmt*10)
			row := 0
			insert := func() {
				tx, err := st.W.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				for range perTx / perStmt {
					args = args[:0]
					for range perStmt {
						k := row * 7919 % 4000
						args = append(args, int64(1_700_000_000_000+row), fmt.Sprint("rule-", k%5), "order", fmt.Sprintf("o-%07d", k),
							fmt.Sprintf("c-%06d", k/4), "deduped", "same dedup key as notification 01KAB3XYZ", "01KAB3XYZ0000", "ev-123456", "live")
						row++
					}
					if _, err := tx.ExecContext(ctx, q, args...); err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			n := 0
			for b.Loop() {
				insert()
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*perTx), "ns/row")
		})
	}
}
