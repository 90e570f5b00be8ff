package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// pruneAll steps p until no table has more, and returns the rows deleted
// by table and the steps taken.
func pruneAll(t *testing.T, p *Pruner, now time.Time, keep time.Duration) (map[string]int64, int) {
	t.Helper()
	total := map[string]int64{}
	for steps := 1; ; steps++ {
		got, more, err := p.Step(context.Background(), now, keep)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range got {
			total[k] += v
		}
		if !more {
			return total, steps
		}
		if steps > 1000 {
			t.Fatal("pruning does not end")
		}
	}
}

func count(t *testing.T, st *Store, q string, args ...any) int {
	t.Helper()
	var n int
	if err := st.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPruneDeletesOnlyOldFinishedHistory fills every pruned table with
// rows on both sides of the cutoff, over several pages, and checks that
// what is older than the retention (or an expired dedup mark, or an index
// entry of a deleted decision) goes, and that the rest stays: new rows, a
// notification still waiting however old, and each table's newest row.
func TestPruneDeletesOnlyOldFinishedHistory(t *testing.T) {
	ctx := context.Background()
	st := openAt(t, filepath.Join(t.TempDir(), "p.db"))
	defer st.Close()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	keep := 30 * 24 * time.Hour
	old, fresh := Millis(now.Add(-keep-time.Hour)), Millis(now.Add(-time.Hour))
	const nOld, nNew = 5000, 700 // more than two pages of old rows
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := st.W.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	// Contacts and journal rows carry the event's own time: the new ones
	// are stamped years back (forwarded late) and still stay, since they
	// arrived after the mark that ages the old ones.
	ancient := Millis(now.Add(-5 * 365 * 24 * time.Hour))
	fill := func(from, to int) {
		exec(`BEGIN`)
		for i := from; i < to; i++ {
			at, evAt, tag := old, old, "old"
			if i >= nOld {
				at, evAt, tag = fresh, ancient, "new"
			}
			key := fmt.Sprintf("o-%s-%d", tag, i)
			status := "sent"
			if i%1000 == 7 {
				status = "retry" // still waiting: kept whatever its age
			}
			exec(`INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', ?, 'c', 'sent', '', ?, '')`, at, key, "n-"+key)
			exec(`INSERT INTO outbox (id, idem_key, rule, etype, ekey, customer, priority, status, candidates, next_at, doc, created_at, updated_at)
			VALUES (?, ?, 'r', 'order', ?, 'c', 1, ?, x'', 0, x'', ?, ?)`, "n-"+key, "k-"+key, key, status, at, at)
			exec(`INSERT INTO attempts (notification, at, channel, attempt, ok, retry, error, millis) VALUES (?, ?, 'webhook', 1, 1, 0, '', 3)`, "n-"+key, at)
			exec(`INSERT INTO contacts (at, customer, etype, ekey, topic, channel, status, contact_id) VALUES (?, 'c', 'order', ?, 'wismo', 'phone', 'open', ?)`, evAt, key, "s-"+key)
			exec(`INSERT INTO seen_ids (id, at) VALUES (?, ?)`, "e-"+key, at)
			until := Millis(now.Add(-time.Minute)) // expired
			if i%2 == 0 {
				until = Millis(now.Add(time.Hour))
			}
			exec(`INSERT INTO dedup (rule, key, until, notification) VALUES ('r', ?, ?, ?)`, key, until, "n-"+key)
		}
		exec(`COMMIT`)
		// The journal: one event per entity, in many chunks, as many
		// writes make.
		var rows []JournalRow
		for i := from; i < to; i++ {
			evAt, tag := old, "old"
			if i >= nOld {
				evAt, tag = ancient, "new"
			}
			rows = append(rows, JournalRow{Seq: uint64(i + 1), At: evAt, Etype: "order", Ekey: fmt.Sprintf("o-%s-%d", tag, i), Subject: "orders.placed", Data: []byte(`{}`)})
			if len(rows) == 100 || i == to-1 {
				st.Journal.Append(rows, uint64(i+1))
				if err := st.Journal.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				rows = nil
			}
		}
	}
	p := st.NewPruner()
	fill(0, nOld)
	if err := p.Mark(ctx, now.Add(-keep-time.Minute), keep); err != nil {
		t.Fatal(err)
	}
	fill(nOld, nOld+nNew)
	if err := p.Mark(ctx, now.Add(-time.Minute), keep); err != nil {
		t.Fatal(err)
	}
	if err := st.Journal.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Index.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, `SELECT count(*) FROM decision_entity`); n != nOld+nNew {
		t.Fatalf("decision index has %d entries before pruning, want %d", n, nOld+nNew)
	}

	got, steps := pruneAll(t, p, now, keep)
	if steps < 3 {
		t.Errorf("pruned in %d steps: want pages of at most %d rows", steps, PrunePage)
	}
	waitingOld := nOld / 1000
	for table, want := range map[string]int64{
		"decisions": nOld, "outbox": nOld - int64(waitingOld), "attempts": nOld, "contacts": nOld, "seen_ids": nOld,
		"dedup": (nOld + nNew) / 2, "decision_entity": nOld, "decision_customer": nOld, "decision_rule": nOld,
	} {
		if got[table] != want {
			t.Errorf("%s: %d rows deleted, want %d (all: %v)", table, got[table], want, got)
		}
	}
	for q, want := range map[string]int{
		`SELECT count(*) FROM decisions WHERE at = ?`:                          0,
		`SELECT count(*) FROM attempts WHERE at = ?`:                           0,
		`SELECT count(*) FROM seen_ids WHERE at = ?`:                           0,
		`SELECT count(*) FROM outbox WHERE updated_at = ?`:                     waitingOld,
		`SELECT count(*) FROM outbox WHERE updated_at = ? AND status = 'sent'`: 0,
		`SELECT count(*) FROM contacts WHERE at = ?`:                           0,
		`SELECT count(*) FROM journal_chunks WHERE max_at = ?`:                 0,
	} {
		if n := count(t, st, q, old); n != want {
			t.Errorf("%s [old]: %d rows left, want %d", q, n, want)
		}
	}
	for tbl, col := range map[string]string{"decisions": "at", "outbox": "updated_at", "attempts": "at", "seen_ids": "at"} {
		if n := count(t, st, `SELECT count(*) FROM `+tbl+` WHERE `+col+` = ?`, fresh); n != nNew {
			t.Errorf("%s: %d new rows left, want %d", tbl, n, nNew)
		}
	}
	if n := count(t, st, `SELECT count(*) FROM contacts WHERE at = ?`, ancient); n != nNew {
		t.Errorf("contacts: %d rows that arrived after the mark left, want %d", n, nNew)
	}
	if n := count(t, st, `SELECT coalesce(sum(n), 0) FROM journal_chunks WHERE max_at = ?`, ancient); n != nNew {
		t.Errorf("journal: %d events that arrived after the mark left, want %d", n, nNew)
	}
	if n := count(t, st, `SELECT count(*) FROM dedup WHERE until < ?`, Millis(now)); n != 0 {
		t.Errorf("%d expired dedup marks left", n)
	}
	if n := count(t, st, `SELECT count(*) FROM dedup`); n != (nOld+nNew)/2 {
		t.Errorf("%d live dedup marks left, want %d", n, (nOld+nNew)/2)
	}
	for _, tbl := range []string{"decision_entity", "decision_customer", "decision_rule"} {
		if n := count(t, st, `SELECT count(*) FROM `+tbl); n != nNew {
			t.Errorf("%s: %d entries left, want %d", tbl, n, nNew)
		}
	}
	if n := count(t, st, `SELECT count(*) FROM journal_chunk_entity WHERE chunk NOT IN (SELECT id FROM journal_chunks)`); n != 0 {
		t.Errorf("%d journal look-up entries name a deleted chunk", n)
	}
	// What explain reads still works: an old entity has no events left, a
	// new one keeps its own.
	if ev, _, err := JournalEvents(ctx, st.R, "order", "o-old-3", 10); err != nil || len(ev) != 0 {
		t.Errorf("old entity's journal: %d events, err %v", len(ev), err)
	}
	if ev, _, err := JournalEvents(ctx, st.R, "order", fmt.Sprintf("o-new-%d", nOld+3), 10); err != nil || len(ev) != 1 {
		t.Errorf("new entity's journal: %d events, err %v", len(ev), err)
	}
	// A second round finds nothing more.
	again, steps := pruneAll(t, st.NewPruner(), now, keep)
	if len(again) != 0 {
		t.Errorf("second round deleted %v in %d steps", again, steps)
	}
}

// TestPruneKeepsNewestRowAndIds: when every decision is older than the
// retention, the newest stays, so the next decision's id continues the
// sequence instead of starting again at one (the decision index's
// position is an id).
func TestPruneKeepsNewestRowAndIds(t *testing.T) {
	ctx := context.Background()
	st := openAt(t, filepath.Join(t.TempDir(), "p.db"))
	defer st.Close()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := range 10 {
		if _, err := st.W.ExecContext(ctx, `INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', ?, 'c', 'sent', '', '', '')`,
			Millis(now.Add(-100*24*time.Hour)), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := pruneAll(t, st.NewPruner(), now, 24*time.Hour)
	if got["decisions"] != 9 {
		t.Errorf("deleted %d decisions, want 9", got["decisions"])
	}
	res, err := st.W.ExecContext(ctx, `INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', 'n', 'c', 'sent', '', '', '')`, Millis(now))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := res.LastInsertId(); id != 11 {
		t.Errorf("next decision id %d, want 11", id)
	}
}

// TestPruneWithoutRetentionOnlyExpiresDedup: keep 0 is "keep history
// forever"; only expired dedup marks go.
func TestPruneWithoutRetentionOnlyExpiresDedup(t *testing.T) {
	ctx := context.Background()
	st := openAt(t, filepath.Join(t.TempDir(), "p.db"))
	defer st.Close()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ancient := Millis(now.Add(-3 * 365 * 24 * time.Hour))
	for _, q := range []string{
		`INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', 'o', 'c', 'sent', '', '', '')`,
		`INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', 'p', 'c', 'sent', '', '', '')`,
		`INSERT INTO seen_ids (id, at) VALUES ('e', ?)`,
		`INSERT INTO dedup (rule, key, until, notification) VALUES ('r', 'o', ?, 'n')`,
	} {
		if _, err := st.W.ExecContext(ctx, q, ancient); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := pruneAll(t, st.NewPruner(), now, 0)
	if len(got) != 1 || got["dedup"] != 1 {
		t.Errorf("deleted %v, want only the expired dedup mark", got)
	}
	if n := count(t, st, `SELECT count(*) FROM decisions`); n != 2 {
		t.Errorf("%d decisions left, want 2", n)
	}
}

// BenchmarkPruneStep: one Step over a page of old decisions, notifications
// and attempts (and the index entries of the decisions), as a first round
// over an old file does; per Step. A Step holds the main file's writer for
// each table's page in turn, so this bounds what intake waits for one.
func BenchmarkPruneStep(b *testing.B) {
	ctx := context.Background()
	st := openAt(b, filepath.Join(b.TempDir(), "p.db"))
	defer st.Close()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	old := Millis(now.Add(-100 * 24 * time.Hour))
	doc := make([]byte, 900)
	p := st.NewPruner()
	seq := 0
	for b.Loop() {
		b.StopTimer()
		tx, err := st.W.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for range PrunePage {
			seq++
			key := fmt.Sprintf("o-%d", seq)
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', ?, 'c', 'sent', 'queued for email', ?, 'orders.placed')`, []any{old, key, "n-" + key}},
				{`INSERT INTO outbox (id, idem_key, rule, etype, ekey, customer, priority, status, candidates, next_at, doc, created_at, updated_at)
					VALUES (?, ?, 'r', 'order', ?, 'c', 1, 'sent', x'', 0, ?, ?, ?)`, []any{"n-" + key, "k-" + key, key, doc, old, old}},
				{`INSERT INTO attempts (notification, at, channel, attempt, ok, retry, error, millis) VALUES (?, ?, 'webhook', 1, 1, 0, '', 3)`, []any{"n-" + key, old}},
			} {
				if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		if err := st.Index.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for more := true; more; {
			if _, more, err = p.Step(ctx, now, 24*time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*PrunePage)/1000, "µs/notification")
}

// TestPruneForgetsEventIDsAfterTheirWindow: producers' event ids have a
// window of their own (intake.id_window), at most the retention; history
// within the retention stays.
func TestPruneForgetsEventIDsAfterTheirWindow(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, c := range []struct {
		name         string
		keep, idKeep time.Duration
		left         []string // ids left, of e-2d, e-8d, e-40d
	}{
		{"window shorter than the retention", 30 * day, 7 * day, []string{"e-2d"}},
		{"history kept forever, ids a week", 0, 7 * day, []string{"e-2d"}},
		{"window longer than the retention", 7 * day, 30 * day, []string{"e-2d"}},
		{"window 0: as long as the retention", 30 * day, 0, []string{"e-2d", "e-8d"}},
		{"both forever", 0, 0, []string{"e-2d", "e-40d", "e-8d"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := openAt(t, filepath.Join(t.TempDir(), "p.db"))
			defer st.Close()
			for _, d := range []int{40, 8, 2} {
				at := Millis(now.Add(-time.Duration(d) * day))
				if _, err := st.W.ExecContext(ctx, `INSERT INTO seen_ids (id, at) VALUES (?, ?)`, fmt.Sprintf("e-%dd", d), at); err != nil {
					t.Fatal(err)
				}
				// Two decisions as old, oldest first (the newest row of a
				// table stays whatever its age).
				for range 2 {
					if _, err := st.W.ExecContext(ctx, `INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (?, 'r', 'order', 'o', 'c', 'sent', '', '', '')`, at); err != nil {
						t.Fatal(err)
					}
				}
			}
			p := st.NewPruner()
			p.IDKeep = c.idKeep
			pruneAll(t, p, now, c.keep)
			rows, err := st.R.Query(`SELECT id FROM seen_ids ORDER BY id`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var left []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				left = append(left, id)
			}
			if fmt.Sprint(left) != fmt.Sprint(c.left) {
				t.Errorf("ids left %v, want %v", left, c.left)
			}
			// Decisions follow the retention alone.
			want := 6
			switch c.keep {
			case 30 * day:
				want = 4
			case 7 * day:
				want = 2
			}
			if n := count(t, st, `SELECT count(*) FROM decisions`); n != want {
				t.Errorf("%d decisions left, want %d", n, want)
			}
		})
	}
}
