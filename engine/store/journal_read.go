package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// Readers of the journal: db is a read pool with the journal file attached
// (OpenReader: st.R, explain.OpenReadOnly) or the journal file itself.

// journalTables says which of the journal's tables db has: the chunks, and
// the row table of the version before them, with or without its look-up
// (a file not converted yet, or in the middle of its conversion).
type journalTables struct {
	chunks, rows, rowLookup bool
}

func readJournalTables(ctx context.Context, db *sql.DB) (journalTables, error) {
	var t journalTables
	rs, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_list WHERE name IN ('journal_chunks', 'journal', 'journal_by_entity') AND schema != 'temp'`)
	if err != nil {
		return t, err
	}
	defer rs.Close()
	for rs.Next() {
		var name string
		if err := rs.Scan(&name); err != nil {
			return t, err
		}
		switch name {
		case "journal_chunks":
			t.chunks = true
		case "journal":
			t.rows = true
		case "journal_by_entity":
			t.rowLookup = true
		}
	}
	if err := rs.Err(); err != nil {
		return t, err
	}
	if !t.chunks && !t.rows {
		return t, fmt.Errorf("no journal table (no journal file beside the database?)")
	}
	return t, nil
}

// allChunks selects every chunk, oldest first.
const allChunks = `SELECT id, data FROM journal_chunks ORDER BY id`

// entityChunks selects an entity's candidate chunks, newest first: those
// its look-up names plus every chunk above the look-up's position. An
// entry may name a chunk deleted since (a purge): it then selects nothing.
const entityChunks = `SELECT id, data FROM journal_chunks WHERE id IN (
	SELECT chunk FROM journal_chunk_entity WHERE etype = ?1 AND ekey = ?2
	UNION ALL
	SELECT id FROM journal_chunks WHERE id > coalesce((SELECT v FROM journal_index WHERE k = '` + journalIndexKey + `'), 0))
	ORDER BY id DESC`

// JournalEvents returns the newest limit journal rows of the entity
// etype/ekey, newest first, and whether it has older ones. It decodes the
// entity's candidate chunks, newest first, and keeps its rows, until it
// has limit+1. Rows of a file not converted to chunks yet (its conversion
// runs when the daemon starts) are read as rows: they are newer than its
// chunks.
func JournalEvents(ctx context.Context, db *sql.DB, etype, ekey string, limit int) ([]JournalRow, bool, error) {
	limit = max(limit, 0)
	t, err := readJournalTables(ctx, db)
	if err != nil {
		return nil, false, fmt.Errorf("journal: %w", err)
	}
	var out []JournalRow
	if t.rows {
		if out, err = legacyEvents(ctx, db, t, etype, ekey, limit+1); err != nil {
			return nil, false, fmt.Errorf("journal: %w", err)
		}
	}
	if t.chunks && len(out) <= limit {
		if out, err = chunkEvents(ctx, db, etype, ekey, limit+1, out); err != nil {
			return nil, false, fmt.Errorf("journal: %w", err)
		}
	}
	more := len(out) > limit
	if more {
		clear(out[limit:])
		out = out[:limit]
	}
	return out, more, nil
}

// chunkEvents appends the entity's rows from its candidate chunks to out,
// newest first, until out has want rows (or more: a chunk's rows are
// taken whole).
func chunkEvents(ctx context.Context, db *sql.DB, etype, ekey string, want int, out []JournalRow) ([]JournalRow, error) {
	var d chunkDecoder
	err := eachChunk(ctx, db, entityChunks, []any{etype, ekey}, func(id int64, data []byte) (bool, error) {
		if err := d.reset(id, data); err != nil {
			return false, err
		}
		from := len(out)
		if err := d.each(func() {
			if d.is(etype, ekey) {
				out = append(out, d.keepAs(etype, ekey))
			}
		}); err != nil {
			return false, err
		}
		slices.Reverse(out[from:]) // a chunk's rows are oldest first
		return len(out) < want, nil
	})
	return out, err
}

// legacyEvents reads the entity's newest want rows of the row table,
// newest first, through its look-up where the file has one.
func legacyEvents(ctx context.Context, db *sql.DB, t journalTables, etype, ekey string, want int) ([]JournalRow, error) {
	q := `SELECT seq, at, subject, msg_id, data FROM journal WHERE etype = ? AND ekey = ?`
	args := []any{etype, ekey}
	if t.rowLookup {
		in, largs := lookupIn("journal", "journal_index", Lookup{`SELECT id FROM journal_by_entity WHERE etype = ? AND ekey = ?`, []any{etype, ekey}})
		q += ` AND ` + in
		args = append(args, largs...)
	}
	rs, err := db.QueryContext(ctx, q+` ORDER BY id DESC LIMIT ?`, append(args, want)...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []JournalRow
	for rs.Next() {
		r := JournalRow{Etype: etype, Ekey: ekey}
		var seq int64
		if err := rs.Scan(&seq, &r.At, &r.Subject, &r.MsgID, &r.Data); err != nil {
			return nil, err
		}
		r.Seq = uint64(max(seq, 0))
		out = append(out, r)
	}
	return out, rs.Err()
}

// JournalAll returns every journal row, oldest first (tests and checks:
// it holds the whole journal in memory).
func JournalAll(ctx context.Context, db *sql.DB) ([]JournalRow, error) {
	t, err := readJournalTables(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []JournalRow
	if t.chunks {
		if err := eachChunk(ctx, db, allChunks, nil, func(id int64, data []byte) (bool, error) {
			out, err = decodeAll(id, data, out)
			return true, err
		}); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	if t.rows {
		rs, err := db.QueryContext(ctx, `SELECT seq, at, etype, ekey, subject, msg_id, data FROM journal ORDER BY id`)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		defer rs.Close()
		for rs.Next() {
			var r JournalRow
			var seq int64
			if err := rs.Scan(&seq, &r.At, &r.Etype, &r.Ekey, &r.Subject, &r.MsgID, &r.Data); err != nil {
				return nil, fmt.Errorf("journal: %w", err)
			}
			r.Seq = uint64(max(seq, 0))
			out = append(out, r)
		}
		if err := rs.Err(); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	return out, nil
}

// VerifyJournalLookup checks the journal's look-up by entity against the
// chunks: every entity of a chunk at or below the look-up's position has
// its entry, and every entry names a chunk that holds rows of its entity.
// It decodes every chunk (tests and checks). It returns the position and
// the newest chunk.
func VerifyJournalLookup(ctx context.Context, db *sql.DB) (upto, newest int64, err error) {
	if err := db.QueryRowContext(ctx, `SELECT coalesce((SELECT v FROM journal_index WHERE k = ?), 0), coalesce((SELECT max(id) FROM journal_chunks), 0)`,
		journalIndexKey).Scan(&upto, &newest); err != nil {
		return 0, 0, fmt.Errorf("journal look-up: %w", err)
	}
	held := map[chunkPair]bool{}
	var d chunkDecoder
	if err := eachChunk(ctx, db, allChunks, nil, func(id int64, data []byte) (bool, error) {
		if err := d.reset(id, data); err != nil {
			return false, err
		}
		return true, d.each(func() { held[chunkPair{string(d.field(d.row.etype)), string(d.field(d.row.ekey)), id}] = true })
	}); err != nil {
		return 0, 0, fmt.Errorf("journal look-up: %w", err)
	}
	es, err := db.QueryContext(ctx, `SELECT etype, ekey, chunk FROM journal_chunk_entity`)
	if err != nil {
		return 0, 0, fmt.Errorf("journal look-up: %w", err)
	}
	defer es.Close()
	var stray []chunkPair
	for es.Next() {
		var p chunkPair
		if err := es.Scan(&p.etype, &p.ekey, &p.chunk); err != nil {
			return 0, 0, fmt.Errorf("journal look-up: %w", err)
		}
		if _, ok := held[p]; !ok {
			stray = append(stray, p)
			continue
		}
		held[p] = false // has its entry
	}
	if err := es.Err(); err != nil {
		return 0, 0, fmt.Errorf("journal look-up: %w", err)
	}
	var missing []chunkPair
	for p, unseen := range held {
		if unseen && p.chunk <= upto {
			missing = append(missing, p)
		}
	}
	if len(stray) > 0 || len(missing) > 0 {
		return upto, newest, fmt.Errorf("journal look-up at chunk %d: %d entries name a chunk without their entity (e.g. %v), %d entities of chunks it covers have none (e.g. %v)",
			upto, len(stray), firstPair(stray), len(missing), firstPair(missing))
	}
	return upto, newest, nil
}

func firstPair(ps []chunkPair) any {
	if len(ps) == 0 {
		return nil
	}
	return ps[0]
}
