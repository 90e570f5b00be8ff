package backtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/proactived/proactived/engine/store"
)

// TestSeed copies a snapshot's entities, and only those, into the scratch
// store, and leaves the snapshot file as it was.
func TestSeed(t *testing.T) {
	ctx := context.Background()
	snapPath := filepath.Join(t.TempDir(), "snap.db")
	snap, err := store.Open(ctx, snapPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO entities (type, key, state, created_at, updated_at) VALUES ('customer', 'c-1', '{"email":"a@example.com"}', 1, 2)`,
		`INSERT INTO entities (type, key, state, created_at, updated_at) VALUES ('order', 'o-1', '{"total":5}', 3, 4)`,
		`INSERT INTO dedup (rule, key, until, notification) VALUES ('r', 'o-1', 9, 'n-1')`,
	} {
		if _, err := snap.W.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "scratch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := seed(ctx, st, snapPath)
	if err != nil || n != 2 {
		t.Fatalf("seed = %d, %v; want 2 entities", n, err)
	}
	var state string
	var created, updated int64
	if err := st.W.QueryRowContext(ctx, `SELECT state, created_at, updated_at FROM entities WHERE type = 'customer' AND key = 'c-1'`).Scan(&state, &created, &updated); err != nil {
		t.Fatal(err)
	}
	if state != `{"email":"a@example.com"}` || created != 1 || updated != 2 {
		t.Errorf("seeded customer %s %d %d", state, created, updated)
	}
	var marks int
	if err := st.W.QueryRowContext(ctx, `SELECT count(*) FROM dedup`).Scan(&marks); err != nil || marks != 0 {
		t.Errorf("dedup marks seeded: %d, %v", marks, err)
	}
	if _, err := seed(ctx, st, filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Error("a missing snapshot should be an error")
	}
}
