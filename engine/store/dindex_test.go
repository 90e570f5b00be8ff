package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// addDecisions appends n decisions through the main writer, as the engine
// and the dispatcher do: entity order o-(i%7), customer c-(i%5) (none for
// every tenth), rule r(i%3), time at0+i.
func addDecisions(t *testing.T, db *sql.DB, from, n int, at0 int64, prefix string) {
	t.Helper()
	ins := InsertDecisions()
	args := make([]any, 0, n*ins.Cols())
	for i := from; i < from+n; i++ {
		cu := fmt.Sprintf("%sc-%d", prefix, i%5)
		if i%10 == 0 {
			cu = ""
		}
		args = append(args, at0+int64(i), fmt.Sprintf("r%d", i%3), "order", fmt.Sprintf("%so-%d", prefix, i%7), cu,
			"sent", "queued", fmt.Sprintf("n-%d", i), fmt.Sprintf("seq-%d", i), "live")
	}
	if err := ins.Exec(context.Background(), db, args); err != nil {
		t.Fatal(err)
	}
}

// lookupIDs runs the query explain runs for a lookup (the index's
// candidates and the tail, checked by the row's own columns) and, beside
// it, the same selection as a scan of the whole table.
func lookupIDs(t *testing.T, db *sql.DB, l Lookup, cond string, cargs ...any) (viaIndex, scan []int64) {
	t.Helper()
	in, args := DecisionsIn(l)
	viaIndex = queryIDs(t, db, `SELECT id FROM decisions WHERE `+in+` AND `+cond+` ORDER BY id DESC`, append(args, cargs...)...)
	scan = queryIDs(t, db, `SELECT id FROM decisions NOT INDEXED WHERE `+cond+` ORDER BY id DESC`, cargs...)
	return viaIndex, scan
}

// checkLookups asserts that every lookup through the index finds exactly
// the decisions a scan finds, none twice.
func checkLookups(t *testing.T, db *sql.DB, prefix string) {
	t.Helper()
	type c struct {
		l    Lookup
		cond string
		args []any
	}
	var cases []c
	for i := range 7 {
		k := fmt.Sprintf("%so-%d", prefix, i)
		cases = append(cases, c{ByEntity("order", k), "etype = ? AND ekey = ?", []any{"order", k}})
	}
	for i := range 5 {
		k := fmt.Sprintf("%sc-%d", prefix, i)
		cases = append(cases, c{ByCustomer(k), "customer = ?", []any{k}})
	}
	for i := range 3 {
		k := fmt.Sprintf("r%d", i)
		cases = append(cases, c{ByRule(k), "rule = ?", []any{k}})
	}
	for _, tc := range cases {
		got, want := lookupIDs(t, db, tc.l, tc.cond, tc.args...)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Fatalf("%s %v: the index finds %d decisions, a scan %d (%v… vs %v…)", tc.cond, tc.args, len(got), len(want), head(got), head(want))
		}
	}
}

func head(ids []int64) []int64 { return ids[:min(len(ids), 5)] }

// queryIDs runs q and returns the ids it selects, in its order.
func queryIDs(t *testing.T, db *sql.DB, q string, args ...any) []int64 {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func indexEntries(t *testing.T, x *DecisionIndex) int {
	t.Helper()
	var n int
	if err := x.db.QueryRow(`SELECT (SELECT count(*) FROM decision_entity) + (SELECT count(*) FROM decision_customer) + (SELECT count(*) FROM decision_rule)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDecisionIndexFindsIndexedAndTail: decisions are found by entity,
// customer and rule whether the indexer has taken them yet or not, each
// once; the index lives in its own file, keeps its position across a
// restart and indexes what was added while it was closed.
func TestDecisionIndexFindsIndexedAndTail(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st := openAt(t, path)
	if got := st.Index.Path(); got != filepath.Join(filepath.Dir(path), "p.index.db") {
		t.Fatalf("index file %s", got)
	}
	addDecisions(t, st.W, 1, 300, 1_000, "")
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if u := st.Index.Upto(); u != 300 {
		t.Fatalf("index covers up to %d, want 300", u)
	}
	// 300 by entity, 270 with a customer, 300 by rule.
	if n := indexEntries(t, st.Index); n != 870 {
		t.Fatalf("%d index entries, want 870", n)
	}
	checkLookups(t, st.R, "")
	// The next decisions are in the tail until the indexer's next write
	// (an hour away here; a second in the daemon): readers find them all
	// the same, and nothing twice.
	st.Index.mu.Lock()
	st.Index.every = time.Hour
	st.Index.mu.Unlock()
	addDecisions(t, st.W, 301, 200, 1_000, "")
	if u := st.Index.Upto(); u != 300 {
		t.Fatalf("the indexer took the new decisions at once (up to %d); the tail is not tested", u)
	}
	checkLookups(t, st.R, "")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Decisions written while the index was closed (here straight into
	// the main file) are indexed at the next start.
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	addDecisions(t, w, 501, 100, 1_000, "")
	// The index file's position is still good for this main file: it is
	// kept, not rebuilt.
	x, err := sql.Open("sqlite3", "file:"+IndexPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := reconcileIndex(ctx, w, x); err != nil || u != 300 {
		t.Fatalf("the index reopens at %d (%v), want its position 300", u, err)
	}
	x.Close()
	w.Close()
	st = openAt(t, path)
	defer st.Close()
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if u := st.Index.Upto(); u != 600 {
		t.Fatalf("index covers up to %d after the restart, want 600", u)
	}
	checkLookups(t, st.R, "")
	var idx int
	if err := st.W.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'decisions'`).Scan(&idx); err != nil || idx != 0 {
		t.Fatalf("the main file has %d indexes on decisions (%v), want none", idx, err)
	}
}

// TestDecisionIndexOfAnotherMainFileIsRebuilt: a main file restored from
// an older backup reuses decision ids the index has seen; the index notices
// that the decision its position names is not the one it indexed, starts
// over, and never answers with another entity's decisions.
func TestDecisionIndexOfAnotherMainFileIsRebuilt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "p.db")
	st := openAt(t, path)
	addDecisions(t, st.W, 1, 100, 1_000, "")
	// The backup as docs/operations.md takes it, while the daemon runs.
	backup := filepath.Join(dir, "backup.db")
	if _, err := st.R.Exec(`VACUUM INTO ?`, backup); err != nil {
		t.Fatal(err)
	}
	addDecisions(t, st.W, 101, 100, 1_000, "")
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Restore the backup (the main file and its WAL moved aside), and let
	// decisions about other entities take the ids 101-200 again before the
	// daemon starts (another process wrote them, or the backup was taken
	// later than its name says).
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.Rename(backup, path); err != nil {
		t.Fatal(err)
	}
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	addDecisions(t, w, 101, 100, 5_000, "x")
	w.Close()
	st = openAt(t, path)
	defer st.Close()
	// Kept, the index would still hold the entries of the first 200
	// decisions (600) and miss the new ones.
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := indexEntries(t, st.Index); n != 200+180+200 {
		t.Fatalf("%d index entries after the rebuild, want 580", n)
	}
	checkLookups(t, st.R, "")
	checkLookups(t, st.R, "x")
}

// TestReaderWithoutIndexFile: a main file whose index file is gone (or
// was never copied with a backup) is still read in full: every decision
// is the tail of an empty index.
func TestReaderWithoutIndexFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st := openAt(t, path)
	addDecisions(t, st.W, 1, 100, 1_000, "")
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(IndexPath(path)); err != nil {
		t.Fatal(err)
	}
	r := OpenReader(path, 1)
	defer r.Close()
	checkLookups(t, r, "")
	if _, err := os.Stat(IndexPath(path)); !os.IsNotExist(err) {
		t.Fatalf("a reader created the index file (%v)", err)
	}
}

// TestDecisionIndexFailureShowsInReadiness: while the index file cannot be
// written (another connection holds its write lock) the store's readiness
// check says so, the decisions are still found (tail), and once the lock
// goes the indexer catches up by itself and readiness returns.
func TestDecisionIndexFailureShowsInReadiness(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st := openAt(t, path)
	defer st.Close()
	if err := st.Index.SetBusyTimeout(ctx, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lock, err := sql.Open("sqlite3", "file:"+IndexPath(path)+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	tx, err := lock.Begin()
	if err != nil {
		t.Fatal(err)
	}
	addDecisions(t, st.W, 1, 50, 1_000, "")
	deadline := time.Now().Add(10 * time.Second)
	for st.Ping(ctx) == nil {
		if time.Now().After(deadline) {
			t.Fatal("readiness stayed good while the index could not be written")
		}
		st.Index.poke()
		time.Sleep(20 * time.Millisecond)
	}
	if err := st.Ping(ctx); !strings.Contains(fmt.Sprint(err), "decision index") {
		t.Fatalf("readiness error %v does not name the decision index", err)
	}
	checkLookups(t, st.R, "")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := st.Index.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("readiness after the lock went: %v", err)
	}
	checkLookups(t, st.R, "")
}

// TestDecisionIndexAfterTheNewestAreDeleted: an operator deletes the
// newest decisions while the daemon runs (an erasure); SQLite gives their
// ids to the next decisions, and the indexer, finding its position's
// decision gone, starts over instead of leaving the new ones unindexed.
func TestDecisionIndexAfterTheNewestAreDeleted(t *testing.T) {
	ctx := context.Background()
	st, _ := openAhead(t)
	addDecisions(t, st.W, 1, 200, 1_000, "")
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.W.Exec(`DELETE FROM decisions WHERE id > 150`); err != nil {
		t.Fatal(err)
	}
	addDecisions(t, st.W, 151, 100, 9_000, "y")
	var reused int
	if err := st.W.QueryRow(`SELECT count(*) FROM decisions WHERE id BETWEEN 151 AND 200 AND ekey LIKE 'yo-%'`).Scan(&reused); err != nil || reused != 50 {
		t.Fatalf("%d new decisions took the deleted ids (%v); the test needs SQLite to reuse them", reused, err)
	}
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if u := st.Index.Upto(); u != 250 {
		t.Fatalf("index covers up to %d, want 250", u)
	}
	checkLookups(t, st.R, "y")
	var stale int
	if err := st.Index.db.QueryRow(`SELECT count(*) FROM decision_entity WHERE ekey LIKE 'o-%' AND id > 150`).Scan(&stale); err != nil || stale != 0 {
		t.Fatalf("%d index entries still name deleted decisions (%v)", stale, err)
	}
}
