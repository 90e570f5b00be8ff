package store

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"testing"
)

// legacyRow is row i of the old-format journal the upgrade tests make.
func legacyRow(i int) JournalRow {
	return JournalRow{Seq: uint64(i), At: int64(i) * 1000, Etype: "order", Ekey: fmt.Sprint("o-", i%7),
		Subject: "orders.updated", MsgID: fmt.Sprint("seq-", i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

// makeLegacyJournal makes the journal file beside path one of the version
// before chunks: rows 1…n in its row table, the first half of them in its
// look-up, and its position at n.
func makeLegacyJournal(t *testing.T, path string, n int) {
	t.Helper()
	j, err := sql.Open("sqlite3", "file:"+JournalPath(path))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, q := range []string{
		`DROP TABLE journal_chunks`,
		`DROP TABLE journal_chunk_entity`,
		`DELETE FROM journal_index`,
		`CREATE TABLE journal (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL,
			etype TEXT NOT NULL, ekey TEXT NOT NULL, subject TEXT NOT NULL, msg_id TEXT NOT NULL, data BLOB)`,
		`CREATE TABLE journal_by_entity (etype TEXT NOT NULL, ekey TEXT NOT NULL, id INTEGER NOT NULL,
			PRIMARY KEY (etype, ekey, id)) WITHOUT ROWID`,
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO journal (seq, at, etype, ekey, subject, msg_id, data)
			SELECT i, i * 1000, 'order', 'o-' || (i %% 7), 'orders.updated', 'seq-' || i, CAST('{"n":' || i || '}' AS BLOB) FROM n`, n),
		fmt.Sprintf(`INSERT INTO journal_by_entity SELECT etype, ekey, id FROM journal WHERE id <= %d`, n/2),
		fmt.Sprintf(`INSERT INTO journal_index (k, v) VALUES ('upto', %d)`, n/2),
		fmt.Sprintf(`INSERT OR REPLACE INTO meta (k, v) VALUES ('journal_seq', '%d')`, n),
	} {
		if _, err := j.Exec(q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
}

// checkLegacyJournal asserts that db reads the n rows of makeLegacyJournal,
// whatever part of them is converted.
func checkLegacyJournal(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	ctx := context.Background()
	all, err := JournalAll(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d rows, want %d", len(all), n)
	}
	for i, r := range all {
		if !reflect.DeepEqual(r, legacyRow(i+1)) {
			t.Fatalf("row %d: %+v", i+1, r)
		}
	}
	for _, k := range []string{"o-0", "o-3"} {
		got, more, err := JournalEvents(ctx, db, "order", k, 50)
		if err != nil || !more || len(got) != 50 {
			t.Fatalf("%s: %d rows, more %v (%v)", k, len(got), more, err)
		}
		want := entityRows(all, "order", k)[:50]
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: read %v…, want %v…", k, got[0], want[0])
		}
	}
}

// TestJournalUpgradeFromRows: a journal file of the version before chunks
// is read as it is (explain before the daemon starts), converted to chunks
// at start in transactions of journalConvertPage rows — one of them done
// before a crash here — and reads the same in every state; the old tables
// and position go, and the look-up covers the chunks.
func TestJournalUpgradeFromRows(t *testing.T) {
	ctx := context.Background()
	st, path := openAhead(t)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	n := 2*journalConvertPage + 1000
	makeLegacyJournal(t, path, n)
	ro := OpenReader(path, 1)
	defer ro.Close()
	checkLegacyJournal(t, ro, n)

	// A start that converted one page and was killed.
	w, err := openWriter(JournalPath(path), journalBusy, 1024, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range journalSchema {
		if _, err := w.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	c := journalConverter{lw: newLookupWriter()}
	if done, err := c.page(ctx, w); done || err != nil {
		t.Fatalf("first page: done %v, %v", done, err)
	}
	w.Close()
	var left int
	if err := ro.QueryRow(`SELECT count(*) FROM journal`).Scan(&left); err != nil || left != n-journalConvertPage {
		t.Fatalf("%d rows left after a page (%v)", left, err)
	}
	checkLegacyJournal(t, ro, n)

	st = openAt(t, path)
	defer st.Close()
	if d := st.Journal.Durable(); d != uint64(n) {
		t.Fatalf("durable %d, want %d", d, n)
	}
	var old int
	if err := st.Journal.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name IN ('journal', 'journal_by_entity', 'journal_entity')`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("%d old tables left (%v)", old, err)
	}
	if err := st.Journal.db.QueryRow(`SELECT count(*) FROM journal_index WHERE k = 'upto'`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("the old position is left (%v)", err)
	}
	checkLegacyJournal(t, st.R, n)
	upto, newest, err := VerifyJournalLookup(ctx, st.R)
	if err != nil || upto != newest {
		t.Fatalf("look-up at %d of %d chunks: %v", upto, newest, err)
	}
	// The writer goes on after the converted chunks.
	st.Journal.Append([]JournalRow{legacyRow(n + 1)}, uint64(n+1))
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	checkLegacyJournal(t, st.R, n+1)
}
