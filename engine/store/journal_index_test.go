package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// entityRows is what a scan of rows (oldest first) finds of one entity,
// newest first.
func entityRows(all []JournalRow, etype, ekey string) []JournalRow {
	var out []JournalRow
	for _, r := range slices.Backward(all) {
		if r.Etype == etype && r.Ekey == ekey {
			out = append(out, r)
		}
	}
	return out
}

// checkJournal asserts that every entity's journal rows (journalRows: o-0
// … o-6) are found through the look-up exactly as a scan of every chunk
// finds them, newest first, also when a limit leaves some out; and that
// the look-up holds what the chunks it covers hold.
func checkJournal(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := context.Background()
	all, err := JournalAll(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		k := fmt.Sprint("o-", i)
		want := entityRows(all, "order", k)
		got, more, err := JournalEvents(ctx, db, "order", k, len(want))
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || more || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: the look-up finds %d journal rows (more %v), a scan %d", k, len(got), more, len(want))
		}
		lim := len(want) / 2
		got, more, err = JournalEvents(ctx, db, "order", k, lim)
		if err != nil || !more || !reflect.DeepEqual(got, want[:lim]) {
			t.Fatalf("%s with limit %d: %d rows, more %v (%v)", k, lim, len(got), more, err)
		}
	}
	if _, _, err := VerifyJournalLookup(ctx, db); err != nil {
		t.Fatal(err)
	}
}

func journalIndexEntries(t *testing.T, st *Store) int {
	t.Helper()
	var n int
	if err := st.Journal.db.QueryRow(`SELECT count(*) FROM journal_chunk_entity`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func newestChunk(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(`SELECT coalesce(max(id), 0) FROM journal_chunks`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJournalLookupCoversIndexedAndNewChunks: an entity's journal rows are
// found, newest first, whether the once-a-second look-up has taken their
// chunks yet or not, none twice; the look-up is not written with every
// write.
func TestJournalLookupCoversIndexedAndNewChunks(t *testing.T) {
	ctx := context.Background()
	st, _ := openAhead(t)
	st.Journal.Append(journalRows(1, 300), 300)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	// 300 rows of 7 entities in one chunk: 7 entries.
	if u, n := st.Journal.IndexUpto(), journalIndexEntries(t, st); u != newestChunk(t, st.R) || n != 7 {
		t.Fatalf("look-up covers up to chunk %d with %d entries, want %d and 7", u, n, newestChunk(t, st.R))
	}
	checkJournal(t, st.R)
	// The next writes come before the look-up's next update (made an
	// hour away here): their chunks are not in the look-up, and readers
	// find their rows all the same, after the indexed ones.
	st.Journal.mu.Lock()
	st.Journal.ixEvery = time.Hour
	st.Journal.mu.Unlock()
	indexed := st.Journal.IndexUpto()
	for from := 301; from <= 1300; from += 250 {
		st.Journal.Append(journalRows(from, 250), uint64(from+249))
		if err := st.Journal.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if u := st.Journal.IndexUpto(); u != indexed || newestChunk(t, st.R) < indexed+4 {
		t.Fatalf("the look-up took the new chunks at once (up to %d of %d); the chunks above it are not tested", u, newestChunk(t, st.R))
	}
	checkJournal(t, st.R)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if u := st.Journal.IndexUpto(); u != newestChunk(t, st.R) {
		t.Fatalf("look-up at %d, newest chunk %d", u, newestChunk(t, st.R))
	}
	checkJournal(t, st.R)
	// A read-only opener (proactived explain) reads them the same way.
	ro := OpenReader(st.Path, 1)
	defer ro.Close()
	checkJournal(t, ro)
}

// TestJournalRowsOfOneEventShareTheChunk: an event merged into several
// entities is a row for each, found from each entity.
func TestJournalRowsOfOneEventShareTheChunk(t *testing.T) {
	ctx := context.Background()
	st, _ := openAhead(t)
	data := []byte(`{"order":"o-1","customer":"c-1"}`)
	st.Journal.Append([]JournalRow{
		{Seq: 1, At: 5, Etype: "order", Ekey: "o-1", Subject: "s", MsgID: "m", Data: data},
		{Seq: 1, At: 5, Etype: "customer", Ekey: "c-1", Subject: "s", MsgID: "m", Data: data},
	}, 1)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range [][2]string{{"order", "o-1"}, {"customer", "c-1"}} {
		got, more, err := JournalEvents(ctx, st.R, e[0], e[1], 10)
		want := []JournalRow{{Seq: 1, At: 5, Etype: e[0], Ekey: e[1], Subject: "s", MsgID: "m", Data: data}}
		if err != nil || more || !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: %+v, more %v (%v)", e, got, more, err)
		}
	}
}

// TestJournalTrimRewritesTheChunkItCuts: a journal ahead of the main
// file's position (a restored main file) forgets the events above it at
// start: whole chunks go, the chunk with events on both sides is rewritten
// with the rest; the look-up keeps no entry of a chunk gone or of an
// entity the rewritten chunk lost, and the chunks written next get new
// ids.
func TestJournalTrimRewritesTheChunkItCuts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st := openAt(t, path)
	setMeta(t, st, "last_seq", 300)
	straddling := append(journalRows(101, 100), journalRows(201, 50)...)
	for i := 100; i < len(straddling); i++ {
		straddling[i].Ekey = "o-late" // only above 200
	}
	for _, w := range []struct {
		rows    []JournalRow
		through uint64
	}{{journalRows(1, 100), 100}, {straddling, 250}, {journalRows(251, 50), 300}} {
		st.Journal.Append(w.rows, w.through)
		if err := st.Journal.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	before := newestChunk(t, st.R)
	if before != 3 {
		t.Fatalf("%d chunks, want 3 (one per write)", before)
	}
	setMeta(t, st, "last_seq", 200) // the main file is behind the journal
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openAt(t, path)
	defer st.Close()
	if d := st.Journal.Durable(); d != 200 {
		t.Fatalf("durable %d, want 200", d)
	}
	all, err := JournalAll(ctx, st.R)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 200 || all[199].Seq != 200 {
		t.Fatalf("%d rows after the trim, want 1–200", len(all))
	}
	var chunks, n, maxSeq int64
	if err := st.R.QueryRow(`SELECT count(*), sum(n), max(max_seq) FROM journal_chunks`).Scan(&chunks, &n, &maxSeq); err != nil || chunks != 2 || n != 200 || maxSeq != 200 {
		t.Fatalf("%d chunks of %d rows up to seq %d (%v), want 2 of 200 up to 200", chunks, n, maxSeq, err)
	}
	if got, _, err := JournalEvents(ctx, st.R, "order", "o-late", 10); err != nil || len(got) != 0 {
		t.Fatalf("o-late after the trim: %d rows (%v)", len(got), err)
	}
	var late int
	if err := st.R.QueryRow(`SELECT count(*) FROM journal_chunk_entity WHERE ekey = 'o-late' OR chunk = 3`).Scan(&late); err != nil || late != 0 {
		t.Fatalf("%d look-up entries of what the trim removed (%v)", late, err)
	}
	checkJournal(t, st.R)
	// The events are merged again: new chunks, never the id of the one
	// deleted.
	rows := journalRows(201, 100)
	for i := range rows {
		rows[i].Ekey = fmt.Sprint("o-", (i+3)%7)
	}
	st.Journal.Append(rows, 300)
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	var first int64
	if err := st.R.QueryRow(`SELECT min(id) FROM journal_chunks WHERE min_seq > 200`).Scan(&first); err != nil || first <= before {
		t.Fatalf("the rows merged again are in chunk %d (%v), an id up to %d was handed out before", first, err, before)
	}
	checkJournal(t, st.R)
}

// TestJournalLookupBuiltForChunksOfAnEarlierRun: chunks the look-up did
// not cover when the daemon stopped are indexed at the next start by
// decoding them, in steps, while no event arrives.
func TestJournalLookupBuiltForChunksOfAnEarlierRun(t *testing.T) {
	ctx := context.Background()
	st, path := openAhead(t)
	st.Journal.mu.Lock()
	st.Journal.ixEvery = time.Hour
	st.Journal.mu.Unlock()
	st.Journal.Append(journalRows(1, 10), 10)
	if err := st.Journal.SyncIndex(ctx); err != nil { // the first update: the look-up starts
		t.Fatal(err)
	}
	indexed := st.Journal.IndexUpto()
	n := 2*journalIndexChunk + 500
	for from := 11; from <= n; from += 8_000 {
		st.Journal.Append(journalRows(from, min(8_000, n-from+1)), uint64(min(from+7_999, n)))
		if err := st.Journal.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if u := st.Journal.IndexUpto(); u != indexed {
		t.Fatalf("the look-up moved to %d", u)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openAt(t, path)
	defer st.Close()
	newest := newestChunk(t, st.R)
	deadline := time.Now().Add(20 * time.Second)
	for st.Journal.IndexUpto() < newest {
		if time.Now().After(deadline) {
			t.Fatalf("the look-up covers up to chunk %d of %d after 20 s", st.Journal.IndexUpto(), newest)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkJournal(t, st.R)
	// New chunks go on from there.
	st.Journal.Append(journalRows(n+1, 100), uint64(n+100))
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if u := st.Journal.IndexUpto(); u <= newest {
		t.Fatalf("look-up at %d after a write past %d", u, newest)
	}
	checkJournal(t, st.R)
}

// BenchmarkJournalEvents: explain's read of an entity's newest 500
// events (DefaultLimit) when each is in a chunk of its own, among full
// chunks of other entities' events: the worst case of chunks for a reader.
// Per read.
func BenchmarkJournalEvents(b *testing.B) {
	ctx := context.Background()
	st, _ := openAhead(b)
	seq := 0
	for range 501 {
		rows := journalRows(seq+1, journalChunkRows)
		for i := range rows {
			rows[i].Ekey = fmt.Sprint("o-", (seq+i)*7919%4000)
			rows[i].Data = []byte(`{"order_id":"o-1","eta":"2026-11-23T12:00:00Z","carrier":"dhl","status":"in_transit"}`)
		}
		rows[journalChunkRows/2].Ekey = "hot"
		seq += len(rows)
		st.Journal.Append(rows, uint64(seq))
		if err := st.Journal.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Journal.SyncIndex(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		got, more, err := JournalEvents(ctx, st.R, "order", "hot", 500)
		if err != nil || len(got) != 500 || !more {
			b.Fatalf("%d rows, more %v (%v)", len(got), more, err)
		}
	}
}
