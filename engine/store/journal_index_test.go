package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// journalIDs returns the ids of an entity's journal rows as explain reads
// them (the look-up and the rows it does not cover yet) and as a scan of
// the whole table finds them.
func journalIDs(t *testing.T, db *sql.DB, ekey string) (viaIndex, scan []int64) {
	t.Helper()
	in, args := JournalOf("order", ekey)
	viaIndex = queryIDs(t, db, `SELECT id FROM journal WHERE `+in+` AND etype = ? AND ekey = ? ORDER BY id DESC`, append(args, "order", ekey)...)
	scan = queryIDs(t, db, `SELECT id FROM journal NOT INDEXED WHERE etype = ? AND ekey = ? ORDER BY id DESC`, "order", ekey)
	return viaIndex, scan
}

// checkJournal asserts that every entity's journal rows (journalRows: o-0
// … o-6) are found through the look-up exactly as a scan finds them.
func checkJournal(t *testing.T, db *sql.DB) {
	t.Helper()
	for i := range 7 {
		k := fmt.Sprint("o-", i)
		got, want := journalIDs(t, db, k)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Fatalf("%s: the look-up finds %d journal rows, a scan %d", k, len(got), len(want))
		}
	}
}

func journalIndexEntries(t *testing.T, st *Store) int {
	t.Helper()
	var n int
	if err := st.Journal.db.QueryRow(`SELECT count(*) FROM journal_by_entity`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJournalLookupCoversIndexedAndNewRows: an entity's journal rows are
// found whether the once-a-second look-up has taken them yet or not, none
// twice; the look-up is not written with every write.
func TestJournalLookupCoversIndexedAndNewRows(t *testing.T) {
	ctx := context.Background()
	st, _ := openAhead(t)
	st.Journal.Append(journalRows(1, 300), 300)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if u, n := st.Journal.IndexUpto(), journalIndexEntries(t, st); u != 300 || n != 300 {
		t.Fatalf("look-up covers up to %d with %d entries, want 300 and 300", u, n)
	}
	checkJournal(t, st.R)
	// The next write comes before the look-up's next update (made an
	// hour away here): its rows are not in the look-up, and readers find
	// them all the same.
	st.Journal.mu.Lock()
	st.Journal.ixEvery = time.Hour
	st.Journal.mu.Unlock()
	st.Journal.Append(journalRows(301, 200), 500)
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if u := st.Journal.IndexUpto(); u != 300 {
		t.Fatalf("the look-up took the new rows at once (up to %d); the rows above it are not tested", u)
	}
	checkJournal(t, st.R)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if n := journalIndexEntries(t, st); n != 500 {
		t.Fatalf("%d look-up entries, want 500", n)
	}
	checkJournal(t, st.R)
}

// TestJournalLookupAfterItsNewestRowsGo: a journal ahead of the main
// file's position drops its newest rows at start (a restored main file);
// SQLite gives their ids to the rows written next, and the look-up must
// neither miss those nor keep entries of the dropped ones.
func TestJournalLookupAfterItsNewestRowsGo(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	setMeta(t, st, "last_seq", 300)
	st.Journal.Append(journalRows(1, 300), 300)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	setMeta(t, st, "last_seq", 200) // the main file is behind the journal
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if u := st.Journal.IndexUpto(); u != 200 {
		t.Fatalf("look-up position %d after the journal dropped rows 201-300, want 200", u)
	}
	rows := journalRows(201, 100)
	for i := range rows {
		rows[i].Ekey = fmt.Sprint("o-", (i+3)%7) // other entities than the dropped rows of these ids
	}
	st.Journal.Append(rows, 300)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if n := journalIndexEntries(t, st); n != 300 {
		t.Fatalf("%d look-up entries, want 300", n)
	}
	checkJournal(t, st.R)
}

// TestJournalLookupBuiltForAnUpgradedFile: a journal file of the version
// before the look-up (an ordinary entity index written with every row) is
// indexed at start, in chunks, while no event arrives.
func TestJournalLookupBuiltForAnUpgradedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	setMeta(t, st, "last_seq", 1<<40)
	n := journalIndexChunk + 500
	for from := 1; from <= n; from += 10_000 {
		st.Journal.Append(journalRows(from, min(10_000, n-from+1)), uint64(min(from+9_999, n)))
	}
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Make it the old version's file.
	j, err := sql.Open("sqlite3", "file:"+JournalPath(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE journal_by_entity`, `DROP TABLE journal_index`, `CREATE INDEX journal_entity ON journal (etype, ekey, id)`} {
		if _, err := j.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	st, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(20 * time.Second)
	for st.Journal.IndexUpto() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("the look-up of the upgraded file covers up to %d of %d rows after 20 s", st.Journal.IndexUpto(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if u, e := st.Journal.IndexUpto(), journalIndexEntries(t, st); u != int64(n) || e != n {
		t.Fatalf("look-up covers up to %d with %d entries, want %d", u, e, n)
	}
	var old int
	if err := st.Journal.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'journal_entity'`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("the old per-row index is still there (%d, %v)", old, err)
	}
	checkJournal(t, st.R)
}
