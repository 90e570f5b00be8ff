package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// openAt opens the store at path, failing the test if it cannot.
func openAt(t testing.TB, path string) *Store {
	t.Helper()
	st, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func pageSize(t *testing.T, db *sql.DB, schema string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`PRAGMA ` + schema + `.page_size`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNewFilesUsePageSize: every file a new store creates (main, journal,
// decision index) has PageSize pages and is in WAL mode.
func TestNewFilesUsePageSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	st := openAt(t, path)
	defer st.Close()
	for _, f := range []struct {
		name string
		db   *sql.DB
	}{{"main", st.W}, {"journal", st.Journal.db}, {"index", st.Index.db}} {
		if got := pageSize(t, f.db, "main"); got != PageSize {
			t.Errorf("%s file: page_size %d, want %d", f.name, got, PageSize)
		}
		var mode string
		if err := f.db.QueryRow(`PRAGMA main.journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("%s file: journal_mode %q (%v), want wal", f.name, mode, err)
		}
	}
}

// TestOldPageSizeKept: a store created with SQLite's 4 KiB default (by an
// earlier version) opens, keeps its page size and its rows, and takes
// writes.
func TestOldPageSizeKept(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old, err := openSingle(path, writerDSN(indexBusy, 1024, 4, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	if got := pageSize(t, old, "main"); got != 4096 {
		t.Fatalf("a file made without create: page_size %d, want SQLite's default 4096", got)
	}
	if err := migrate(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`INSERT INTO meta (k, v) VALUES ('probe', 7)`); err != nil {
		t.Fatal(err)
	}
	old.Close()

	st := openAt(t, path)
	defer st.Close()
	if got := pageSize(t, st.W, "main"); got != 4096 {
		t.Errorf("reopened: page_size %d, want the file's 4096", got)
	}
	var v int
	if err := st.W.QueryRow(`SELECT v FROM meta WHERE k = 'probe'`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("row of the old file: %d (%v), want 7", v, err)
	}
	if _, err := st.W.Exec(`INSERT INTO meta (k, v) VALUES ('probe2', 8)`); err != nil {
		t.Fatalf("write to the old file: %v", err)
	}
}
