package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The event journal lives in a SQLite file of its own, written by a
// goroutine of its own.
//
// The journal is one row per event merged into an entity: the largest
// data by rows and the one nothing reads while events are processed (only
// explain). In the main file its inserts and their index pages were a
// sixth of the engine's time, on the engine's goroutine, and made every
// other table's pages colder. Like entity state it is derived from the
// stream alone, so it needs no place in the transaction that acks the
// events: the engine hands each committed batch's rows to the writer, the
// writer commits them with the stream position they cover (journal_seq,
// in the journal file's own meta), and after a crash the intake re-reads
// the retained events above that position (engine/writeback.go). Two files
// have two write locks, so the journal commits on the other core while the
// engine commits the next batch.
//
// A write stores its rows as chunks (jchunk.go), one row of journal_chunks
// each, not as a row per event: per row, database/sql, cgo and SQLite's
// B-tree cost more than encoding it (BENCHMARKS.md). The look-up by entity,
// journal_chunk_entity, names for each entity the chunks that hold its rows;
// readers (JournalEvents) decode those chunks plus the ones above the
// look-up's position and keep the entity's rows.
//
// Readers see one database: the read pool attaches the journal file, and
// unqualified names find its tables.

// JournalPath is the journal file beside the main database at path:
// data/proactived.db → data/proactived.journal.db.
func JournalPath(path string) string { return besidePath(path, "journal") }

// journalSchema is the journal file's schema.
//
// Chunk ids are AUTOINCREMENT: SQLite never hands out an id again, not
// even the newest one's after it was deleted (reconcileJournal, a purge),
// so the look-up's position always lies below every chunk written later,
// and a look-up entry left behind by a deleted chunk never names another
// chunk. (Such an entry would cost a reader no more than a decode: readers
// keep only the rows of the entity they look for.) min_/max_ are the
// least and greatest seq and at of the chunk's rows, not its first and
// last: the rows are in the order they were handed, and a recreated stream
// or an event's own time need not follow it. data is the last column, so
// a scan of the others never reads its overflow pages.
var journalSchema = []string{
	`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS journal_chunks (id INTEGER PRIMARY KEY AUTOINCREMENT,
		min_seq INTEGER NOT NULL, max_seq INTEGER NOT NULL, min_at INTEGER NOT NULL, max_at INTEGER NOT NULL,
		n INTEGER NOT NULL, data BLOB NOT NULL)`,
	// The look-up by entity: one entry per entity and chunk, written once
	// a second in key order instead of with every write
	// (journalIndexEvery); readers add the chunks above its position
	// (journal_index, journalIndexKey).
	`CREATE TABLE IF NOT EXISTS journal_chunk_entity (etype TEXT NOT NULL, ekey TEXT NOT NULL, chunk INTEGER NOT NULL,
		PRIMARY KEY (etype, ekey, chunk)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS journal_index (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`,
}

// journalIndexKey is the look-up's position in journal_index: the last
// chunk id it covers. Files written before chunks had 'upto', a row id of
// their journal table (journal_upgrade.go).
const journalIndexKey = "chunks"

// journalAttach is the schema name the readers attach the journal file as.
const journalAttach = "jrnl"

// JournalRow is one event merged into one entity.
type JournalRow struct {
	Seq            uint64 // stream sequence; 0 for an event from outside the stream
	At             int64  // event time, Unix milliseconds
	Etype, Ekey    string
	Subject, MsgID string
	Data           []byte // the event's data, JSON
}

const (
	// journalMaxPending bounds the rows waiting for the writer: beyond it
	// Append blocks, so a journal that cannot keep up (or cannot write)
	// slows the intake instead of growing memory.
	journalMaxPending = 16384
	// journalBackoffMin and journalBackoffMax bound the wait between
	// attempts after a failed write (doubling from the one to the other).
	journalBackoffMin = 50 * time.Millisecond
	// journalLinger is the least time between two writes while nobody
	// waits for one: a write then carries the rows of many engine batches
	// in few chunks, and a commit's cost is shared by all of them (the
	// writer's commits were half its time; BENCHMARKS.md, sixth round).
	// Nothing is acked on the journal, so the delay costs only rows to
	// re-merge after a crash.
	journalLinger = 100 * time.Millisecond
	// journalIndexEvery is the least time between two updates of the
	// journal's entity look-up: the random-key B-tree's pages are written
	// once a second rather than with every write (BENCHMARKS.md, seventh
	// round); readers decode the chunks not indexed yet, about this much.
	journalIndexEvery = time.Second
	// journalIndexChunk bounds the rows an update decodes to index chunks
	// the writer has not written itself (written before a restart): a
	// backlog is taken in steps, one per write.
	journalIndexChunk = 16384
	journalBackoffMax = 5 * time.Second
	// journalBusy is how long a journal write waits for a lock held by
	// another connection (a backup, an operator's DELETE) before it counts
	// as failed and is retried.
	journalBusy = 5 * time.Second
)

// chunkPair is a look-up entry: the entity has rows in the chunk.
type chunkPair struct {
	etype, ekey string
	chunk       int64
}

// Journal is the journal file and its writer.
type Journal struct {
	db   *sql.DB
	path string

	// The writer goroutine's own (run, write, index).
	enc chunkEncoder
	// pend is the look-up entries of the chunks this process committed
	// (and, during a write, of its chunks) that the look-up does not
	// cover yet; sorted is scratch.
	pend, sorted []chunkPair
	lw           lookupWriter
	// fileEnd is the newest chunk at the start: the chunks above it are
	// this process's, their entries in pend until indexed; those up to it
	// are indexed by decoding them. lastChunk is the newest committed.
	fileEnd, lastChunk int64

	mu      sync.Mutex
	pending []JournalRow
	// through is the stream position the rows handed so far cover;
	// durable, the one the last write committed.
	through, durable uint64
	// handed counts Append calls; written is the last one written.
	handed, written uint64
	// ixUpto is the last chunk id the entity look-up covers (committed);
	// ixAt is when it was last brought up to date.
	ixUpto int64
	ixAt   time.Time
	// ixEvery is journalIndexEvery (tests lengthen it).
	ixEvery  time.Duration
	err      error
	stopped  bool
	syncing  int           // Sync calls waiting: no lingering
	wake     chan struct{} // cap 1: there is work
	progress chan struct{} // closed (and replaced) after each write or failure

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// openJournal opens (creating if needed) the journal file beside the main
// database, moves a journal table the main file still has into it,
// converts rows of an older version into chunks, and starts the writer. w
// is the main file's writer.
func openJournal(ctx context.Context, w *sql.DB, path string) (*Journal, error) {
	jpath := JournalPath(path)
	// 8 MiB of cache: chunks append at the table's right edge; only the
	// entity look-up takes random keys, once a second.
	db, err := openWriter(jpath, journalBusy, 8192, 16)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", jpath, err)
	}
	for _, stmt := range journalSchema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("journal %s: %.60s: %w", jpath, stmt, err)
		}
	}
	if err := moveJournal(ctx, w, jpath); err != nil {
		db.Close()
		return nil, err
	}
	if err := convertJournal(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("journal %s: %w", jpath, err)
	}
	seq, err := reconcileJournal(ctx, w, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal %s: %w", jpath, err)
	}
	ixUpto, last, err := reconcileJournalIndex(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal %s: %w", jpath, err)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j := &Journal{
		db: db, path: jpath,
		lw:        newLookupWriter(),
		fileEnd:   last,
		lastChunk: last,
		through:   seq,
		durable:   seq,
		ixUpto:    ixUpto,
		ixEvery:   journalIndexEvery,
		wake:      make(chan struct{}, 1),
		progress:  make(chan struct{}),
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	go j.run(cctx)
	j.poke() // index what the look-up does not cover yet
	return j, nil
}

// moveJournal moves the journal table of a main file written before the
// journal had a file of its own, with its position, into the journal file.
// The copy commits in the journal file before the table is dropped from the
// main one, so a crash in between leaves the copy done and the next start
// only drops the old table.
func moveJournal(ctx context.Context, w *sql.DB, jpath string) (err error) {
	var has int
	if err := w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'journal'`).Scan(&has); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if has == 0 {
		return nil
	}
	conn, err := w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("move journal: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS jmove`, "file:"+jpath); err != nil {
		return fmt.Errorf("move journal to %s: %w", jpath, err)
	}
	defer func() {
		if _, derr := conn.ExecContext(context.WithoutCancel(ctx), `DETACH DATABASE jmove`); derr != nil && err == nil {
			err = fmt.Errorf("move journal: %w", derr)
		}
	}()
	var copied int
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM jmove.meta WHERE k = 'moved')`).Scan(&copied); err != nil {
		return fmt.Errorf("move journal: %w", err)
	}
	if copied == 0 {
		// One transaction in the journal file: the rows, the position and
		// the mark that the move is done.
		// The rows go into the journal file's table of the version before
		// chunks, which convertJournal then converts like that version's.
		stmts := []string{
			`BEGIN`,
			legacyJournalTable("jmove."),
			`INSERT INTO jmove.journal (seq, at, etype, ekey, subject, msg_id, data) SELECT seq, at, etype, ekey, subject, msg_id, data FROM main.journal ORDER BY id`,
			`INSERT OR REPLACE INTO jmove.meta (k, v) SELECT 'journal_seq', v FROM main.meta WHERE k = 'journal_seq'`,
			`INSERT OR REPLACE INTO jmove.meta (k, v) VALUES ('moved', '1')`,
			`COMMIT`,
		}
		for _, s := range stmts {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
				return fmt.Errorf("move journal to %s: %w", jpath, err)
			}
		}
	}
	for _, s := range []string{`DROP TABLE main.journal`, `DELETE FROM main.meta WHERE k = 'journal_seq'`} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("move journal: %w", err)
		}
	}
	return nil
}

// reconcileJournal returns the journal's position, made consistent with
// the main file's consumer position: a journal file without one (new, or
// removed by hand) starts where the consumer is, since the events before
// it may be gone from the stream; a journal ahead of the consumer (the
// main file restored from an older backup) forgets the events the intake
// will process again (trimJournal).
func reconcileJournal(ctx context.Context, w, j *sql.DB) (uint64, error) {
	last, _, err := ReadSeq(ctx, w, "last_seq")
	if err != nil {
		return 0, err
	}
	seq, ok, err := ReadSeq(ctx, j, "journal_seq")
	if err != nil {
		return 0, err
	}
	switch {
	case !ok:
		seq = last
	case seq > last:
		if err := trimJournal(ctx, j, last); err != nil {
			return 0, err
		}
		return last, nil
	default:
		return seq, nil
	}
	if _, err := j.ExecContext(ctx, `INSERT OR REPLACE INTO meta (k, v) VALUES ('journal_seq', ?)`, strconv.FormatUint(seq, 10)); err != nil {
		return 0, err
	}
	return seq, nil
}

// trimJournal forgets the rows of the events above last and moves the
// position there, in one transaction: the chunks whose every row is above
// go, a chunk with rows on both sides is rewritten with the rest, and the
// look-up loses the entries of the chunks deleted and of the entities a
// rewritten chunk no longer holds.
func trimJournal(ctx context.Context, j *sql.DB, last uint64) error {
	tx, err := j.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	res, err := tx.ExecContext(ctx, `DELETE FROM journal_chunks WHERE min_seq > ?`, last)
	if err != nil {
		return fmt.Errorf("trim: %w", err)
	}
	deleted, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("trim: %w", err)
	}
	// The chunks that straddle last, read whole before any is rewritten.
	type straddler struct {
		id   int64
		rows []JournalRow
	}
	var cut []straddler
	if err := eachChunk(ctx, tx, `SELECT id, data FROM journal_chunks WHERE max_seq > ? ORDER BY id`, []any{last}, func(id int64, data []byte) (bool, error) {
		rows, err := decodeAll(id, data, nil)
		cut = append(cut, straddler{id, rows})
		return true, err
	}); err != nil {
		return fmt.Errorf("trim: %w", err)
	}
	for _, c := range cut {
		keep := slices.DeleteFunc(slices.Clone(c.rows), func(r JournalRow) bool { return r.Seq > last })
		var e chunkEncoder
		e.encode(keep)
		if _, err := tx.ExecContext(ctx, `UPDATE journal_chunks SET min_seq = ?, max_seq = ?, min_at = ?, max_at = ?, n = ?, data = ? WHERE id = ?`,
			e.minSeq, e.maxSeq, e.minAt, e.maxAt, e.n, e.bytes(), c.id); err != nil {
			return fmt.Errorf("trim: %w", err)
		}
		had, has := entitiesOf(c.rows), entitiesOf(keep)
		for k := range had {
			if _, ok := has[k]; ok {
				continue
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM journal_chunk_entity WHERE etype = ? AND ekey = ? AND chunk = ?`, k[0], k[1], c.id); err != nil {
				return fmt.Errorf("trim: %w", err)
			}
		}
	}
	if deleted > 0 {
		// Keyed by entity, the look-up is scanned for the chunks gone; this
		// happens only after a restore of the main file.
		if _, err := tx.ExecContext(ctx, `DELETE FROM journal_chunk_entity WHERE chunk NOT IN (SELECT id FROM journal_chunks)`); err != nil {
			return fmt.Errorf("trim: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (k, v) VALUES ('journal_seq', ?)`, strconv.FormatUint(last, 10)); err != nil {
		return fmt.Errorf("trim: %w", err)
	}
	return tx.Commit()
}

// entitiesOf is the set of entities rows are of.
func entitiesOf(rows []JournalRow) map[[2]string]struct{} {
	m := make(map[[2]string]struct{}, len(rows))
	for _, r := range rows {
		m[[2]string{r.Etype, r.Ekey}] = struct{}{}
	}
	return m
}

// reconcileJournalIndex returns the position of the journal's entity
// look-up and the newest chunk. Chunk ids are never handed out twice, so
// the position can only be beyond every id ever handed out if the file
// was changed by hand (its sqlite_sequence row deleted): the entries above
// then go, and the position comes back to the newest chunk, so no chunk
// written later counts as indexed.
func reconcileJournalIndex(ctx context.Context, j *sql.DB) (upto, last int64, err error) {
	var issued int64
	if err := j.QueryRowContext(ctx, `SELECT coalesce((SELECT v FROM journal_index WHERE k = ?1), 0),
		coalesce((SELECT max(id) FROM journal_chunks), 0),
		coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'journal_chunks'), 0)`, journalIndexKey).Scan(&upto, &last, &issued); err != nil {
		return 0, 0, err
	}
	if upto <= max(last, issued) {
		return upto, last, nil
	}
	if _, err := j.ExecContext(ctx, `DELETE FROM journal_chunk_entity WHERE chunk > ?`, last); err != nil {
		return 0, 0, err
	}
	if _, err := j.ExecContext(ctx, `INSERT OR REPLACE INTO journal_index (k, v) VALUES (?, ?)`, journalIndexKey, last); err != nil {
		return 0, 0, err
	}
	return last, last, nil
}

// Durable is the stream position up to which every event's rows are
// committed in the journal file.
func (j *Journal) Durable() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable
}

// Path is the journal file.
func (j *Journal) Path() string { return j.path }

// Err is the error of the last write if it failed (the writer retries it);
// nil when the journal is writing.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Append hands rows to the writer, with the stream position they (and the
// rows handed before) cover; through may also move back (a recreated
// stream). The rows are copied. It blocks while the writer is a full
// backlog behind. After Close it drops the rows: the journal position stays
// where the last write left it, and the events above it are merged again
// at the next start.
func (j *Journal) Append(rows []JournalRow, through uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for len(j.pending) >= journalMaxPending && !j.stopped {
		ch := j.progress
		j.mu.Unlock()
		<-ch
		j.mu.Lock()
	}
	if j.stopped {
		return
	}
	j.pending = append(j.pending, rows...)
	j.through = through
	j.handed++
	j.poke()
}

// poke wakes the writer.
func (j *Journal) poke() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// linger waits until journalLinger has passed since the last write,
// unless Sync is waiting, the rows fill half the bound, or ctx ends.
func (j *Journal) linger(ctx context.Context, last time.Time) {
	for {
		j.mu.Lock()
		hurry := j.syncing > 0 || len(j.pending) >= journalMaxPending/2
		j.mu.Unlock()
		wait := time.Until(last.Add(journalLinger))
		if hurry || wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			return
		case <-j.wake: // more rows, or a Sync: look again
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// Sync waits until everything handed so far is committed (or the journal
// is closed, or ctx ends).
func (j *Journal) Sync(ctx context.Context) error {
	j.mu.Lock()
	target := j.handed
	if j.written < target {
		j.syncing++
		defer func() { j.mu.Lock(); j.syncing--; j.mu.Unlock() }()
		j.poke()
	}
	for j.written < target && !j.stopped {
		ch := j.progress
		j.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("journal: %w", ctx.Err())
		}
		j.mu.Lock()
	}
	err := j.err
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// run is the writer: it takes everything handed since its last write and
// commits it in one transaction, retrying a failed write with backoff
// (the rows stay in memory, and Append blocks once they fill the bound).
func (j *Journal) run(ctx context.Context) {
	defer close(j.done)
	var spare []JournalRow
	var last time.Time
	backoff := journalBackoffMin
	for {
		select {
		case <-j.wake:
		case <-ctx.Done():
		}
		j.linger(ctx, last)
		stopping := ctx.Err() != nil
		j.mu.Lock()
		rows, through, handed, written := j.pending, j.through, j.handed, j.written
		j.pending = spare[:0]
		j.mu.Unlock()
		// Nothing handed since the last write: none, unless the look-up
		// has a backlog to take (a write of the look-up alone).
		indexOnly := handed == written && j.indexBehind()
		for handed != written || indexOnly {
			err := j.write(rows, through, handed)
			if !indexOnly {
				last = time.Now() // the linger counts from the last write of rows
			}
			if err == nil {
				backoff = journalBackoffMin
				break
			}
			j.mu.Lock()
			j.err = err
			j.notify()
			j.mu.Unlock()
			if stopping {
				break // Close gives a failing write one more try
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				stopping = true
			}
			backoff = min(backoff*2, journalBackoffMax)
		}
		clear(rows)
		spare = rows
		if stopping {
			j.mu.Lock()
			j.stopped = true
			j.notify()
			j.mu.Unlock()
			return
		}
	}
}

// write commits rows as chunks with the position, brings the look-up up
// to date when its time has come, and records the progress.
func (j *Journal) write(rows []JournalRow, through, handed uint64) error {
	ctx := context.Background() // a write is short and never abandoned half-way
	upto, ixAt, newest, tookPend, err := j.writeTx(ctx, rows, through)
	if err != nil {
		// The rows are written again, as other chunks: the entries of the
		// chunks rolled back go (the look-up may have sorted pend).
		j.pend = slices.DeleteFunc(j.pend, func(p chunkPair) bool { return p.chunk > j.lastChunk })
		return err
	}
	j.lastChunk = max(j.lastChunk, newest)
	if tookPend {
		clear(j.pend)
		j.pend = j.pend[:0]
	}
	j.mu.Lock()
	j.ixUpto, j.ixAt = upto, ixAt
	if ixAt.IsZero() {
		j.poke() // a backlog: the next step at once
	}
	j.written, j.durable, j.err = handed, through, nil
	j.notify()
	j.mu.Unlock()
	return nil
}

// writeTx is write's transaction. It returns what to record once it
// committed: the look-up's position and time, the newest chunk, and
// whether the look-up took the entries in pend.
func (j *Journal) writeTx(ctx context.Context, rows []JournalRow, through uint64) (upto int64, ixAt time.Time, newest int64, tookPend bool, err error) {
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, time.Time{}, 0, false, fmt.Errorf("journal: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	newest, j.pend, err = insertChunks(ctx, tx, &j.enc, rows, j.pend)
	if err != nil {
		return 0, time.Time{}, 0, false, fmt.Errorf("journal: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (k, v) VALUES ('journal_seq', ?)`, strconv.FormatUint(through, 10)); err != nil {
		return 0, time.Time{}, 0, false, fmt.Errorf("journal: %w", err)
	}
	upto, ixAt, tookPend, err = j.index(ctx, tx, max(j.lastChunk, newest))
	if err != nil {
		return 0, time.Time{}, 0, false, err
	}
	if err := tx.Commit(); err != nil {
		return 0, time.Time{}, 0, false, fmt.Errorf("journal: commit: %w", err)
	}
	return upto, ixAt, newest, tookPend, nil
}

// insertChunks stores rows as chunks of at most journalChunkRows rows and
// about journalChunkBytes each, encoded with enc, and appends their
// look-up entries to pairs. newest is the last chunk's id (0 without
// rows).
func insertChunks(ctx context.Context, tx *sql.Tx, enc *chunkEncoder, rows []JournalRow, pairs []chunkPair) (newest int64, _ []chunkPair, err error) {
	for len(rows) > 0 {
		enc.reset()
		n := 0
		for n < len(rows) && !enc.full() {
			enc.add(&rows[n])
			n++
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO journal_chunks (min_seq, max_seq, min_at, max_at, n, data) VALUES (?, ?, ?, ?, ?, ?)`,
			enc.minSeq, enc.maxSeq, enc.minAt, enc.maxAt, enc.n, enc.bytes())
		if err != nil {
			return 0, pairs, fmt.Errorf("insert chunk: %w", err)
		}
		if newest, err = res.LastInsertId(); err != nil {
			return 0, pairs, fmt.Errorf("insert chunk: %w", err)
		}
		for i := range rows[:n] {
			pairs = appendPair(pairs, rows[i].Etype, rows[i].Ekey, newest)
		}
		rows = rows[n:]
	}
	return newest, pairs, nil
}

// appendPair appends a look-up entry unless it repeats the last one (an
// entity's events in a row); other repeats go when the entries are sorted.
func appendPair(pairs []chunkPair, etype, ekey string, chunk int64) []chunkPair {
	if n := len(pairs); n > 0 && pairs[n-1].chunk == chunk && pairs[n-1].ekey == ekey && pairs[n-1].etype == etype {
		return pairs
	}
	return append(pairs, chunkPair{etype, ekey, chunk})
}

// index brings the entity look-up up to date in the write's transaction,
// at most every journalIndexEvery. Chunks written before the start, which
// are not in pend, go first: decoded, at most journalIndexChunk rows a
// step. Then the entries in pend, which cover every chunk up to newest
// (the newest chunk once the transaction commits). It returns the
// position and time to record once the transaction commits (a zero time
// when more is to be indexed at once), and whether pend went in.
func (j *Journal) index(ctx context.Context, tx *sql.Tx, newest int64) (int64, time.Time, bool, error) {
	j.mu.Lock()
	upto, at, every := j.ixUpto, j.ixAt, j.ixEvery
	j.mu.Unlock()
	now := time.Now()
	if now.Sub(at) < every {
		return upto, at, false, nil
	}
	if upto < j.fileEnd {
		to, pairs, err := indexDecoded(ctx, tx, upto, j.fileEnd, j.sorted[:0])
		if err == nil {
			err = j.lw.put(ctx, tx, pairs, to)
		}
		clear(pairs) // the strings decoded are not kept until the next step
		j.sorted = pairs[:0]
		if err != nil {
			return 0, time.Time{}, false, fmt.Errorf("journal: index: %w", err)
		}
		if to < newest {
			now = time.Time{}
		}
		return to, now, false, nil
	}
	if newest <= upto {
		return upto, now, false, nil
	}
	if err := j.lw.put(ctx, tx, j.pend, newest); err != nil {
		return 0, time.Time{}, false, fmt.Errorf("journal: index: %w", err)
	}
	return newest, now, true, nil
}

// lookupWriter writes entries of the journal's look-up by entity.
type lookupWriter struct {
	ins  *Bulk
	args []any // scratch
}

func newLookupWriter() lookupWriter {
	return lookupWriter{ins: NewBulk(`INSERT OR IGNORE INTO journal_chunk_entity (etype, ekey, chunk) VALUES %s`, 3)}
}

// put writes the entries in pairs, in key order (it sorts pairs in
// place), and the position upto. Key order makes the cursor move forward
// through the B-tree's pages, each written once. The values go in
// statements of pairsPerStmt entries: a small argument list, reused.
func (w *lookupWriter) put(ctx context.Context, tx *sql.Tx, pairs []chunkPair, upto int64) error {
	slices.SortFunc(pairs, func(a, b chunkPair) int {
		if c := strings.Compare(a.etype, b.etype); c != 0 {
			return c
		}
		if c := strings.Compare(a.ekey, b.ekey); c != 0 {
			return c
		}
		return cmp.Compare(a.chunk, b.chunk)
	})
	args := w.args[:0]
	var err error
	for i := range pairs {
		if i > 0 && pairs[i] == pairs[i-1] {
			continue
		}
		p := &pairs[i]
		args = append(args, p.etype, p.ekey, p.chunk)
		if len(args) == pairsPerStmt*3 {
			if args, err = w.flush(ctx, tx, args); err != nil {
				return err
			}
		}
	}
	if _, err = w.flush(ctx, tx, args); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO journal_index (k, v) VALUES (?, ?)`, journalIndexKey, upto)
	return err
}

// flush writes the entries in args and returns args emptied, keeping
// nothing alive until the next update.
func (w *lookupWriter) flush(ctx context.Context, tx *sql.Tx, args []any) ([]any, error) {
	var err error
	if len(args) > 0 {
		err = w.ins.Exec(ctx, tx, args)
	}
	clear(args)
	w.args = args[:0]
	return w.args, err
}

// pairsPerStmt is how many look-up entries one statement writes: Bulk's
// largest statement.
const pairsPerStmt = 64

// indexDecoded returns the look-up entries of the chunks in (upto, end],
// decoded, as far as the first chunk that makes journalIndexChunk rows,
// and the last chunk they cover. A chunk that does not decode keeps the
// entries of the rows before the damage: readers report it when they read
// it, and the look-up moves past it instead of failing every write.
func indexDecoded(ctx context.Context, tx *sql.Tx, upto, end int64, pairs []chunkPair) (int64, []chunkPair, error) {
	to, n := end, 0
	var d chunkDecoder
	err := eachChunk(ctx, tx, `SELECT id, data FROM journal_chunks WHERE id > ? AND id <= ? ORDER BY id`, []any{upto, end}, func(id int64, data []byte) (bool, error) {
		if d.reset(id, data) == nil {
			// A damaged chunk keeps the entries of the rows before the damage.
			_ = d.each(func() {
				if k := len(pairs); k == 0 || pairs[k-1].chunk != id || !d.is(pairs[k-1].etype, pairs[k-1].ekey) {
					pairs = append(pairs, chunkPair{string(d.field(d.row.etype)), string(d.field(d.row.ekey)), id})
				}
				n++
			})
		}
		if n >= journalIndexChunk {
			to = id
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return 0, pairs, err
	}
	return to, pairs, nil
}

// indexBehind reports whether the entity look-up has a backlog that an
// index-only write should take (an upgraded file, a restart after a
// burst) while no rows arrive.
func (j *Journal) indexBehind() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ixAt.IsZero() && j.err == nil
}

// SyncIndex brings the entity look-up up to every chunk committed so far,
// without waiting for its second (tests; readers need not: JournalEvents
// reads the chunks above it).
func (j *Journal) SyncIndex(ctx context.Context) error {
	if err := j.Sync(ctx); err != nil {
		return err
	}
	var last int64
	if err := j.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM journal_chunks`).Scan(&last); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.ixUpto < last && !j.stopped {
		if j.err != nil {
			return fmt.Errorf("journal: %w", j.err)
		}
		j.ixAt = time.Time{}
		j.poke()
		ch := j.progress
		j.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			j.mu.Lock()
			return fmt.Errorf("journal: %w", ctx.Err())
		}
		j.mu.Lock()
	}
	return nil
}

// IndexUpto is the last chunk id the entity look-up covers.
func (j *Journal) IndexUpto() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ixUpto
}

// notify wakes everyone waiting for the writer; j.mu is held.
func (j *Journal) notify() {
	close(j.progress)
	j.progress = make(chan struct{})
}

// close writes what is still handed (one attempt) and closes the file.
func (j *Journal) close() error {
	var err error
	j.once.Do(func() {
		j.cancel()
		<-j.done
		err = j.db.Close()
	})
	return err
}

// SetBusyTimeout changes how long a journal write waits for a lock held by
// another connection before it fails and is retried (Open sets 5 s).
func (j *Journal) SetBusyTimeout(ctx context.Context, d time.Duration) error {
	if err := setBusyTimeout(ctx, j.db, d); err != nil {
		return fmt.Errorf("journal busy timeout: %w", err)
	}
	return nil
}
