package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointerCopiesWAL: commits leave the writer without a checkpoint
// (wal_autocheckpoint is off on it) and the background checkpointer copies
// them into the database file by itself.
func TestCheckpointerCopiesWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st := openAt(t, path)
	defer st.Close()
	var auto int
	if err := st.W.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("writer wal_autocheckpoint = %d (%v), want 0", auto, err)
	}
	before := fileSize(t, path)
	// ~8 MiB in one transaction: more than SQLite's 1,000-page automatic
	// checkpoint threshold.
	tx, err := st.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	blob := strings.Repeat("x", 8000)
	for i := 0; i < 1000; i++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', ?, 'c', 'sent', ?, '', 'e')`, i, i, blob); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fileSize(t, path) < before+7<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("database file is %d bytes 10s after the commit: the WAL was not checkpointed", fileSize(t, path))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var n int
	if err := st.R.QueryRowContext(ctx, `SELECT count(*) FROM decisions`).Scan(&n); err != nil || n != 1000 {
		t.Fatalf("readers see %d rows (%v)", n, err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := st.ckpt.stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
