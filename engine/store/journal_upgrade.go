package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Journal files written before chunks hold the journal as a table of rows,
// `journal`, with a look-up journal_by_entity whose position is 'upto' in
// journal_index (or, before that, an ordinary index journal_entity); a
// main file written before the journal had a file of its own has that
// table too, and moveJournal moves it into the journal file as it was.
// convertJournal turns the rows into chunks at open, oldest first, in
// transactions of journalConvertPage rows, each deleting the rows it
// converted: a crash in the middle leaves the rest for the next start, and
// a reader meanwhile finds every row once, either as a row or in a chunk
// (JournalEvents reads both).

// journalConvertPage is how many rows one transaction of a conversion
// takes: the memory it holds, and the work a crash can undo.
const journalConvertPage = 16384

// legacyJournalTable creates the row table of the version before chunks,
// in schema ("" or "name.").
func legacyJournalTable(schema string) string {
	return `CREATE TABLE IF NOT EXISTS ` + schema + `journal (
		id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL,
		etype TEXT NOT NULL, ekey TEXT NOT NULL, subject TEXT NOT NULL, msg_id TEXT NOT NULL, data BLOB)`
}

// convertJournal converts the rows of the journal file db's row table, if
// it has one, into chunks, then drops the table and its look-up.
func convertJournal(ctx context.Context, db *sql.DB) error {
	var has int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'journal'`).Scan(&has); err != nil {
		return fmt.Errorf("convert journal: %w", err)
	}
	if has == 0 {
		return nil
	}
	c := journalConverter{lw: newLookupWriter()}
	for {
		done, err := c.page(ctx, db)
		if err != nil {
			return fmt.Errorf("convert journal: %w", err)
		}
		if done {
			return nil
		}
	}
}

// journalConverter converts rows a page at a time, reusing its buffers.
type journalConverter struct {
	enc   chunkEncoder
	lw    lookupWriter
	rows  []JournalRow
	pairs []chunkPair
}

// page converts the oldest journalConvertPage rows in one transaction; at
// the end, when none are left, it drops the old tables instead.
func (c *journalConverter) page(ctx context.Context, db *sql.DB) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	last, err := c.read(ctx, tx)
	if err != nil {
		return false, err
	}
	if len(c.rows) == 0 {
		for _, q := range []string{`DROP TABLE journal`, `DROP TABLE IF EXISTS journal_by_entity`, `DELETE FROM journal_index WHERE k = 'upto'`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return false, err
			}
		}
		return true, tx.Commit()
	}
	// The chunks get their look-up entries at once when the look-up covers
	// every chunk before them; else the writer indexes them, decoded, with
	// the chunks it has not indexed.
	var upto, newest int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT v FROM journal_index WHERE k = ?), 0), coalesce((SELECT max(id) FROM journal_chunks), 0)`,
		journalIndexKey).Scan(&upto, &newest); err != nil {
		return false, err
	}
	covered := upto >= newest
	newest, c.pairs, err = insertChunks(ctx, tx, &c.enc, c.rows, c.pairs[:0])
	if err != nil {
		return false, err
	}
	if covered {
		if err := c.lw.put(ctx, tx, c.pairs, newest); err != nil {
			return false, err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM journal WHERE id <= ?`, last); err != nil {
		return false, err
	}
	clear(c.rows)
	return false, tx.Commit()
}

// read reads the oldest journalConvertPage rows into c.rows and returns
// the last one's id.
func (c *journalConverter) read(ctx context.Context, tx *sql.Tx) (int64, error) {
	c.rows = c.rows[:0]
	rs, err := tx.QueryContext(ctx, `SELECT id, seq, at, etype, ekey, subject, msg_id, data FROM journal ORDER BY id LIMIT ?`, journalConvertPage)
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	var last int64
	for rs.Next() {
		var r JournalRow
		var seq int64
		if err := rs.Scan(&last, &seq, &r.At, &r.Etype, &r.Ekey, &r.Subject, &r.MsgID, &r.Data); err != nil {
			return 0, err
		}
		r.Seq = uint64(max(seq, 0))
		c.rows = append(c.rows, r)
	}
	return last, rs.Err()
}
