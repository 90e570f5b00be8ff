package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func journalRows(from, n int) []JournalRow {
	rows := make([]JournalRow, n)
	for i := range rows {
		seq := uint64(from + i)
		rows[i] = JournalRow{Seq: seq, At: int64(seq) * 1000, Etype: "order", Ekey: fmt.Sprint("o-", seq%7), Subject: "orders.updated", MsgID: fmt.Sprint("seq-", seq), Data: []byte(`{"n":1}`)}
	}
	return rows
}

// openAhead opens a store in a temporary directory with its consumer
// position far ahead, so the journal keeps every position a test writes.
func openAhead(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	setMeta(t, st, "last_seq", 1<<40)
	return st, path
}

func setMeta(t testing.TB, st *Store, k string, v uint64) {
	t.Helper()
	if _, err := st.W.Exec(`INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)`, k, fmt.Sprint(v)); err != nil {
		t.Fatal(err)
	}
}

// journalCount counts the journal rows readers see, per sequence.
func journalCount(t *testing.T, db *sql.DB) (rows int, distinct int) {
	t.Helper()
	all, err := JournalAll(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[uint64]bool{}
	for _, r := range all {
		seqs[r.Seq] = true
	}
	return len(all), len(seqs)
}

// TestJournalFileWritesRowsAndPosition: rows handed to the journal land in
// its own file, readers of the main database see them as `journal`, the
// position survives a restart, and a journal ahead of the main file's
// consumer position (the main file restored from an older backup) forgets
// the events the intake will process again.
func TestJournalFileWritesRowsAndPosition(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st := openAt(t, path)
	if got := st.Journal.Path(); got != filepath.Join(filepath.Dir(path), "p.journal.db") {
		t.Fatalf("journal file %s", got)
	}
	setMeta(t, st, "last_seq", 300)
	st.Journal.Append(journalRows(1, 100), 100)
	st.Journal.Append(journalRows(101, 200), 300)
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d := st.Journal.Durable(); d != 300 {
		t.Fatalf("durable %d, want 300", d)
	}
	if n, d := journalCount(t, st.R); n != 300 || d != 300 {
		t.Fatalf("readers see %d rows (%d sequences), want 300", n, d)
	}
	var tables int
	if err := st.W.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name LIKE 'journal%'`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("main file has a journal table (%d, %v)", tables, err)
	}
	// Written in chunks: few rows of journal_chunks for 300 events.
	var chunks int
	if err := st.R.QueryRow(`SELECT count(*) FROM journal_chunks`).Scan(&chunks); err != nil || chunks == 0 || chunks > 300/10 {
		t.Fatalf("300 rows in %d chunks (%v)", chunks, err)
	}
	// A read-only opener (proactived explain) sees it too.
	ro := OpenReader(path, 1)
	if n, _ := journalCount(t, ro); n != 300 {
		t.Fatalf("read-only opener sees %d rows", n)
	}
	ro.Close()
	// Rows handed just before Close are written by it.
	st.Journal.Append(journalRows(301, 5), 305)
	setMeta(t, st, "last_seq", 305)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// A clean close leaves each file whole, without a WAL beside it.
	for _, f := range []string{path + "-wal", JournalPath(path) + "-wal", IndexPath(path) + "-wal"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still there after Close (%v)", f, err)
		}
	}

	st = openAt(t, path)
	if d := st.Journal.Durable(); d != 305 {
		t.Fatalf("durable after restart %d, want 305", d)
	}
	if n, _ := journalCount(t, st.R); n != 305 {
		t.Fatalf("%d rows after restart, want 305", n)
	}
	setMeta(t, st, "last_seq", 250) // as if the main file were older
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openAt(t, path)
	defer st.Close()
	if d := st.Journal.Durable(); d != 250 {
		t.Fatalf("durable with the main file at 250: %d", d)
	}
	if n, d := journalCount(t, st.R); n != 250 || d != 250 {
		t.Fatalf("%d rows (%d sequences) with the main file at 250, want 250", n, d)
	}
}

// TestJournalMovesOutOfTheMainFile: a main file written before the journal
// had its own file keeps its journal: the rows and the position move to
// the journal file once, also when a crash interrupted the move after the
// copy.
func TestJournalMovesOutOfTheMainFile(t *testing.T) {
	ctx := context.Background()
	for _, interrupted := range []bool{false, true} {
		t.Run(fmt.Sprint("interrupted=", interrupted), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.db")
			st := openAt(t, path)
			// The old layout: the journal table in the main file.
			for _, s := range []string{
				`CREATE TABLE journal (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL,
					etype TEXT NOT NULL, ekey TEXT NOT NULL, subject TEXT NOT NULL, msg_id TEXT NOT NULL, data BLOB)`,
				`CREATE INDEX journal_entity ON journal (etype, ekey, id)`,
				`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
					INSERT INTO journal (seq, at, etype, ekey, subject, msg_id, data) SELECT i, i, 'order', 'o-' || (i % 3), 's', '', '{}' FROM n`,
				`INSERT OR REPLACE INTO meta (k, v) VALUES ('last_seq', '50'), ('journal_seq', '40')`,
			} {
				if _, err := st.W.Exec(s); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(JournalPath(path)); err != nil {
				t.Fatal(err)
			}
			if interrupted {
				// The copy committed in the journal file; the old table
				// was not dropped yet.
				j, err := sql.Open("sqlite3", "file:"+JournalPath(path))
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range append(append([]string{}, journalSchema...), legacyJournalTable(""),
					`ATTACH DATABASE '`+path+`' AS old`,
					`INSERT INTO main.journal (seq, at, etype, ekey, subject, msg_id, data) SELECT seq, at, etype, ekey, subject, msg_id, data FROM old.journal`,
					`INSERT INTO main.meta (k, v) VALUES ('journal_seq', '40'), ('moved', '1')`) {
					if _, err := j.Exec(s); err != nil {
						t.Fatal(err)
					}
				}
				j.Close()
			}
			st = openAt(t, path)
			defer st.Close()
			if d := st.Journal.Durable(); d != 40 {
				t.Fatalf("journal position %d, want 40 (moved with the rows)", d)
			}
			if n, d := journalCount(t, st.R); n != 40 || d != 40 {
				t.Fatalf("%d journal rows (%d sequences), want 40 once each", n, d)
			}
			var tables int
			if err := st.W.QueryRow(`SELECT count(*) FROM main.sqlite_master WHERE name = 'journal'`).Scan(&tables); err != nil || tables != 0 {
				t.Fatalf("old journal table still in the main file (%d, %v)", tables, err)
			}
			// … and converted to chunks in the journal file.
			if err := st.Journal.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name IN ('journal', 'journal_by_entity')`).Scan(&tables); err != nil || tables != 0 {
				t.Fatalf("row tables still in the journal file (%d, %v)", tables, err)
			}
			got, _, err := JournalEvents(ctx, st.R, "order", "o-1", 100)
			if err != nil || len(got) != 14 || got[0].Seq != 40 || got[13].Seq != 1 {
				t.Fatalf("o-1's moved rows: %d (%v)", len(got), err)
			}
		})
	}
}

// TestJournalWriteFailureIsRetried: while the journal file cannot be
// written the rows wait in memory, readiness says why, Append blocks once
// a full backlog waits (the intake slows instead of memory growing), and
// everything is written once when the file is writable again.
func TestJournalWriteFailureIsRetried(t *testing.T) {
	ctx := context.Background()
	st, path := openAhead(t)
	if err := st.Journal.SetBusyTimeout(ctx, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lock, err := sql.Open("sqlite3", "file:"+JournalPath(path))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	conn, err := lock.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	st.Journal.Append(journalRows(1, 10), 10)
	for st.Ping(ctx) == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if err := st.Journal.Err(); err == nil {
		t.Fatal("Ping failed but the journal reports no error")
	}
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		st.Journal.Append(journalRows(11, journalMaxPending), uint64(10+journalMaxPending))
		st.Journal.Append(journalRows(11+journalMaxPending, 10), uint64(20+journalMaxPending))
	}()
	select {
	case <-blocked:
		t.Fatal("Append did not wait with a full backlog unwritten")
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	<-blocked
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("readiness after the journal recovered: %v", err)
	}
	want := 20 + journalMaxPending
	if n, d := journalCount(t, st.R); n != want || d != want {
		t.Fatalf("%d rows (%d sequences), want %d once each", n, d, want)
	}
	if d := st.Journal.Durable(); d != uint64(want) {
		t.Fatalf("durable %d, want %d", d, want)
	}
}

// journalSQL is the nth (from 0) SQL docs/security.md gives for the
// journal file, as it is written there: 0, the erasure of an entity's
// events.
func journalSQL(t *testing.T, nth int) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), `sqlite3 data/proactived.journal.db "`)
	if len(blocks) < nth+2 {
		t.Fatalf("docs/security.md: %d SQL blocks for the journal file, want %d", len(blocks)-1, nth+1)
	}
	sqlText, _, ok := strings.Cut(blocks[nth+1], `"`)
	if !ok {
		t.Fatal("docs/security.md: an unterminated SQL block for the journal file")
	}
	var stmts []string
	for _, q := range strings.Split(sqlText, ";") {
		if q = strings.TrimSpace(q); q != "" {
			stmts = append(stmts, q)
		}
	}
	if len(stmts) == 0 || !strings.Contains(stmts[0], "journal_chunks") {
		t.Fatalf("docs/security.md: journal SQL %q", stmts)
	}
	return stmts
}

// TestJournalPurgeBesideTheWriter: retention (Pruner) deletes the chunks
// that arrived before the mark at the cutoff, and their look-up entries,
// while the writer goes on. A reader that meets a look-up entry whose
// chunk is gone (deleted and not yet followed by its entries) takes it
// for none.
func TestJournalPurgeBesideTheWriter(t *testing.T) {
	ctx := context.Background()
	st, path := openAhead(t)
	now := time.Now()
	// Three writes, three chunks: two before the mark, one after it.
	st.Journal.Append(journalRows(1, 50), 50)
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st.Journal.Append(journalRows(51, 10), 60)
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	p := st.NewPruner()
	if err := p.Mark(ctx, now.Add(-48*time.Hour), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	st.Journal.Append(journalRows(61, 50), 110)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	ops, err := sql.Open("sqlite3", "file:"+JournalPath(path)+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	// The first chunk alone first, by hand: the look-up still names it.
	if _, err := ops.Exec(`DELETE FROM journal_chunks WHERE max_seq <= 50`); err != nil {
		t.Fatal(err)
	}
	if got, _, err := JournalEvents(ctx, st.R, "order", "o-1", 100); err != nil || len(got) != 8 || got[0].Seq < 51 {
		t.Fatalf("o-1 after the purge: %d rows (%v), want its 8 from seq 51 on", len(got), err)
	}
	var stale int
	if err := ops.QueryRow(`SELECT count(*) FROM journal_chunk_entity WHERE chunk NOT IN (SELECT id FROM journal_chunks)`).Scan(&stale); err != nil || stale == 0 {
		t.Fatalf("%d look-up entries name the deleted chunk (%v): the test deletes nothing", stale, err)
	}
	// Retention, beside the writer: the second chunk and the stale entries
	// go; the third, which arrived after the mark, stays.
	for more := true; more; {
		if _, more, err = p.Step(ctx, now, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := ops.QueryRow(`SELECT count(*) FROM journal_chunk_entity WHERE chunk NOT IN (SELECT id FROM journal_chunks)`).Scan(&stale); err != nil || stale != 0 {
		t.Fatalf("%d look-up entries name purged chunks (%v)", stale, err)
	}
	st.Journal.Append(journalRows(111, 10), 120)
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := JournalAll(ctx, st.R)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 60 || all[0].Seq != 61 || all[59].Seq != 120 {
		t.Fatalf("after the purge: %d rows, want the 60 from seq 61", len(all))
	}
}

// TestJournalEraseOfAnEntity: the erasure docs/security.md gives for one
// entity's events (a GDPR request) removes every one of them, indexed or
// not yet, with the chunks that hold them, and leaves the others' chunks.
func TestJournalEraseOfAnEntity(t *testing.T) {
	ctx := context.Background()
	st, path := openAhead(t)
	customer := func(seq uint64) JournalRow {
		return JournalRow{Seq: seq, At: 1, Etype: "customer", Ekey: "c-1", Subject: "customers.updated", MsgID: "m", Data: []byte(`{"email":"a@x"}`)}
	}
	// Three chunks: one with c-1, one without, one with c-1 that the
	// look-up does not cover yet.
	st.Journal.Append(append(journalRows(1, 10), customer(11)), 11)
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st.Journal.Append(journalRows(12, 10), 21)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	st.Journal.mu.Lock()
	st.Journal.ixEvery = time.Hour
	st.Journal.mu.Unlock()
	st.Journal.Append([]JournalRow{customer(22)}, 22)
	if err := st.Journal.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _, err := JournalEvents(ctx, st.R, "customer", "c-1", 10); err != nil || len(got) != 2 {
		t.Fatalf("c-1 before the erasure: %d rows (%v)", len(got), err)
	}
	ops, err := sql.Open("sqlite3", "file:"+JournalPath(path)+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	for _, q := range journalSQL(t, 0) {
		if _, err := ops.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	all, err := JournalAll(ctx, st.R)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 10 || all[0].Seq != 12 || len(entityRows(all, "customer", "c-1")) != 0 {
		t.Fatalf("after the erasure: %d rows %+v, want the 10 of the chunk without c-1", len(all), all)
	}
	if _, _, err := VerifyJournalLookup(ctx, st.R); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkJournalWrite: rows through the journal's writer into its file,
// handed in batches of 512 as the engine does after each commit; per row.
// The look-up by entity is written as it comes due (once a second); what
// it has not taken when the rows are written is not counted.
func BenchmarkJournalWrite(b *testing.B) { benchJournalWrite(b, false) }

// BenchmarkJournalWriteIndexed is BenchmarkJournalWrite with the look-up
// by entity brought up to every row before the clock stops: the whole
// cost of a row.
func BenchmarkJournalWriteIndexed(b *testing.B) { benchJournalWrite(b, true) }

func benchJournalWrite(b *testing.B, indexed bool) {
	path := filepath.Join(b.TempDir(), "p.db")
	st, err := Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.W.Exec(`INSERT OR REPLACE INTO meta (k, v) VALUES ('last_seq', ?)`, fmt.Sprint(uint64(1)<<40)); err != nil {
		b.Fatal(err)
	}
	const batch = 512
	rows := journalRows(1, batch)
	for i := range rows {
		rows[i].Ekey = fmt.Sprint("o-", i*7919%4000) // 4,000 orders, spread like the bench's
		rows[i].Data = []byte(`{"order_id":"o-1","eta":"2026-11-23T12:00:00Z","carrier":"dhl","status":"in_transit"}`)
	}
	b.ResetTimer()
	seq := uint64(0)
	for n := 0; n < b.N; n += batch {
		seq += batch
		st.Journal.Append(rows[:min(batch, b.N-n)], seq)
	}
	if err := st.Journal.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	if indexed {
		if err := st.Journal.SyncIndex(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
