package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// History retention. Decisions, finished notifications, delivery attempts,
// support contacts, remembered event ids and the journal grow with every
// event; without a bound the files of a busy shop grow forever and every
// scan over them (a full outbox count, a backup) with them. A Pruner
// deletes what is older than the retention period, a bounded page of each
// table per Step, so no statement holds a writer long: the main file's
// writer is the engine's, and a page waits only for the batch in progress.
//
// Age is time since arrival, on the engine's clock. Decisions,
// notifications, attempts and event ids carry that time. Support contacts
// and journal rows carry the event's own time, which a producer may set
// years back (a helpdesk's contacts forwarded after the fact): for them
// Mark records, each round, the newest id a table has, and a row goes once
// a mark at or before the cutoff covers its id. A file from before marks
// keeps its contacts and journal until the first mark is old enough.
//
// What is never deleted, whatever its age: a notification still waiting
// (pending, deferred, retry, sending), and the newest row of a table whose
// ids SQLite hands out as max+1 (a decision, an attempt, a contact), so an
// id is never handed out twice (the decision index's position names one).
// Expired dedup marks go whatever the retention: nothing reads them.

// PrunePage is the most rows a Step examines in one table.
const PrunePage = 2000

// WaitingStatuses are the outbox statuses of a notification not finished
// (an SQL list): retention keeps such a row whatever its age, and the
// outbox depth metric counts them at every sample.
const WaitingStatuses = `('pending', 'deferred', 'retry', 'sending')`

// Pruner deletes history older than a retention period. It is used by one
// goroutine at a time.
type Pruner struct {
	// IDKeep is how long producers' event ids are remembered (seen_ids),
	// at most the retention; 0: as long as the retention.
	IDKeep time.Duration
	s      *Store
	page   int
	// cursors: where each table's walk goes on (a rowid or a key, as
	// SQL arguments); nil = from the start.
	cursors map[string][]any
}

// NewPruner returns a pruner of s.
func (s *Store) NewPruner() *Pruner {
	return &Pruner{s: s, page: PrunePage, cursors: map[string][]any{}}
}

// walk is one table's pruning: either in the order of an integer id whose
// order follows time (ord is then the time column checked for the end of
// the old part), or over its whole key in pages (ord empty).
type walk struct {
	name string  // for the counts and errors; also the cursor's key
	db   *sql.DB // the file's writer
	tbl  string
	key  []string // the id column, or the primary key's columns
	ord  string   // the time column that follows the id; "" = key walk
	// until: a page whose last row's ord is at least this ends the round.
	until int64
	cond  string // what a row to delete satisfies, with args for its ?s
	args  []any
	// after: the walk waits for every walk before it to end its round.
	after bool
}

// marked are the tables whose age is told by arrival marks, and the
// writer of the file each is in.
func (p *Pruner) marked() []struct {
	tbl string
	db  *sql.DB
} {
	return []struct {
		tbl string
		db  *sql.DB
	}{{"contacts", p.s.W}, {"journal_chunks", p.s.Journal.db}}
}

// Mark records the newest id of each table aged by arrival, at now, and
// forgets the marks a later mark at or before now-keep makes useless. The
// daemon calls it at the start of each round.
func (p *Pruner) Mark(ctx context.Context, now time.Time, keep time.Duration) error {
	if keep <= 0 {
		return nil
	}
	for _, m := range p.marked() {
		var id int64
		if err := m.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM `+m.tbl).Scan(&id); err != nil {
			return fmt.Errorf("mark %s: %w", m.tbl, err)
		}
		if _, err := p.s.W.ExecContext(ctx, `INSERT OR REPLACE INTO prune_marks (tbl, at, id) VALUES (?, ?, ?)`, m.tbl, Millis(now), id); err != nil {
			return fmt.Errorf("mark %s: %w", m.tbl, err)
		}
		if _, err := p.s.W.ExecContext(ctx, `DELETE FROM prune_marks WHERE tbl = ?1 AND at < (SELECT max(at) FROM prune_marks WHERE tbl = ?1 AND at <= ?2)`,
			m.tbl, Millis(now.Add(-keep))); err != nil {
			return fmt.Errorf("mark %s: %w", m.tbl, err)
		}
	}
	return nil
}

// arrived is the newest id of tbl that arrived at or before cutoff: the
// id of the newest mark not after it (0: none).
func (p *Pruner) arrived(ctx context.Context, tbl string, cutoff int64) (int64, error) {
	var id int64
	err := p.s.W.QueryRowContext(ctx, `SELECT coalesce((SELECT id FROM prune_marks WHERE tbl = ? AND at <= ? ORDER BY at DESC LIMIT 1), 0)`, tbl, cutoff).Scan(&id)
	return id, err
}

// Step deletes one page of old rows from each table: rows older than
// now-keep (keep 0: no retention, only expired dedup marks), and index
// entries whose row is gone. more reports whether some table has more to
// examine (call again); deleted counts the rows deleted by table.
func (p *Pruner) Step(ctx context.Context, now time.Time, keep time.Duration) (deleted map[string]int64, more bool, err error) {
	deleted = map[string]int64{}
	walks := []walk{{
		name: "dedup", db: p.s.W, tbl: "dedup", key: []string{"rule", "key"},
		cond: `until < ?`, args: []any{Millis(now)},
	}}
	// Producers' event ids have a window of their own (IDKeep), at most
	// the retention.
	idKeep := p.IDKeep
	if idKeep <= 0 || keep > 0 && keep < idKeep {
		idKeep = keep
	}
	if idKeep > 0 {
		walks = append(walks, walk{name: "seen_ids", db: p.s.W, tbl: "seen_ids", key: []string{"id"},
			cond: `at < ?`, args: []any{Millis(now.Add(-idKeep))}})
	}
	if keep > 0 {
		cutoff := Millis(now.Add(-keep))
		// Tables aged by arrival: walked in id order up to the marked id
		// (the walk's time column is the id itself).
		contacts, err := p.arrived(ctx, "contacts", cutoff)
		if err != nil {
			return deleted, false, fmt.Errorf("prune contacts: %w", err)
		}
		chunks, err := p.arrived(ctx, "journal_chunks", cutoff)
		if err != nil {
			return deleted, false, fmt.Errorf("prune journal: %w", err)
		}
		walks = append(walks,
			walk{name: "decisions", db: p.s.W, tbl: "decisions", key: []string{"id"}, ord: "at", until: cutoff,
				cond: `at < ? AND id < (SELECT max(id) FROM decisions)`, args: []any{cutoff}},
			walk{name: "outbox", db: p.s.W, tbl: "outbox", key: []string{"rowid"}, ord: "created_at", until: cutoff,
				cond: `updated_at < ? AND status NOT IN ` + WaitingStatuses, args: []any{cutoff}},
			walk{name: "attempts", db: p.s.W, tbl: "attempts", key: []string{"id"}, ord: "at", until: cutoff,
				cond: `at < ? AND id < (SELECT max(id) FROM attempts)`, args: []any{cutoff}},
			walk{name: "contacts", db: p.s.W, tbl: "contacts", key: []string{"id"}, ord: "id", until: contacts + 1,
				cond: `id <= ? AND id < (SELECT max(id) FROM contacts)`, args: []any{contacts}},
			walk{name: "journal", db: p.s.Journal.db, tbl: "journal_chunks", key: []string{"id"}, ord: "id", until: chunks + 1,
				cond: `id <= ?`, args: []any{chunks}},
			// Look-up entries whose row is gone. Readers skip them anyway
			// (dindex.go, journal.go); this only bounds the files.
			walk{name: "journal_lookup", db: p.s.Journal.db, tbl: "journal_chunk_entity", key: []string{"etype", "ekey", "chunk"}, after: true,
				cond: `NOT EXISTS (SELECT 1 FROM journal_chunks c WHERE c.id = chunk)`},
		)
		for _, t := range [][]string{{"decision_entity", "etype", "ekey", "id"}, {"decision_customer", "customer", "id"}, {"decision_rule", "rule", "id"}} {
			walks = append(walks, walk{name: t[0], db: p.s.Index.db, tbl: t[0], key: t[1:], after: true,
				// The indexer writes entries only for decisions it read, so
				// an entry without its decision is one pruning deleted.
				cond: `NOT EXISTS (SELECT 1 FROM src.decisions d WHERE d.id = ` + t[0] + `.id)`})
		}
	}
	for _, w := range walks {
		if w.after && more {
			// A look-up's walk checks rows the walks before it are still
			// deleting: it starts its round once theirs ended.
			continue
		}
		n, m, err := p.step(ctx, w)
		if err != nil {
			return deleted, more, fmt.Errorf("prune %s: %w", w.name, err)
		}
		if n > 0 {
			deleted[w.name] = n
		}
		more = more || m
	}
	return deleted, more, nil
}

// step examines one page of w's table from its cursor and deletes the
// rows in it that w.cond selects. The walk's round ends (the cursor goes
// back to the start) at the table's end, or, for a walk in time order,
// at a page that reaches rows as new as the cutoff.
func (p *Pruner) step(ctx context.Context, w walk) (deleted int64, more bool, err error) {
	keys := strings.Join(w.key, ", ")
	cur := p.cursors[w.name]
	after, args := "", []any{}
	if cur != nil {
		after = ` WHERE (` + keys + `) > (` + Placeholders(len(cur)) + `)`
		args = append(args, cur...)
	}
	cols := keys
	if w.ord != "" {
		cols += ", " + w.ord
	}
	// The page's last row: its key bounds the delete (a range of the
	// primary key, read in key order, never a scan of the table).
	row := w.db.QueryRowContext(ctx, `SELECT `+cols+` FROM `+w.tbl+after+` ORDER BY `+keys+` LIMIT 1 OFFSET ?`, append(args, p.page-1)...)
	last := make([]any, len(w.key))
	dest := make([]any, 0, len(w.key)+1)
	for i := range last {
		dest = append(dest, &last[i])
	}
	var ord int64
	if w.ord != "" {
		dest = append(dest, &ord)
	}
	end := false
	switch err := row.Scan(dest...); {
	case errors.Is(err, sql.ErrNoRows):
		end = true // a short page: the rest of the table
	case err != nil:
		return 0, false, err
	}
	q := `DELETE FROM ` + w.tbl + ` WHERE (` + w.cond + `)`
	dargs := slices.Clone(w.args)
	if cur != nil {
		q += ` AND (` + keys + `) > (` + Placeholders(len(cur)) + `)`
		dargs = append(dargs, cur...)
	}
	if !end {
		q += ` AND (` + keys + `) <= (` + Placeholders(len(last)) + `)`
		dargs = append(dargs, last...)
	}
	res, err := w.db.ExecContext(ctx, q, dargs...)
	if err != nil {
		return 0, false, err
	}
	deleted, err = res.RowsAffected()
	if err != nil {
		return 0, false, err
	}
	if end || (w.ord != "" && ord >= w.until) {
		delete(p.cursors, w.name)
		return deleted, false, nil
	}
	p.cursors[w.name] = last
	return deleted, true, nil
}

// Placeholders is n comma-separated anonymous parameters, for an IN list
// or a row value.
func Placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
