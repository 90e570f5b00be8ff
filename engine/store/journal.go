package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// The event journal lives in a SQLite file of its own, written by a
// goroutine of its own.
//
// The journal is one row per event merged into an entity: the largest
// table by rows and the one nothing reads while events are processed
// (only explain). In the main file its inserts and their index pages were
// a sixth of the engine's time, on the engine's goroutine, and made every
// other table's pages colder. Like entity state it is derived from the
// stream alone, so it needs no place in the transaction that acks the
// events: the engine hands each committed batch's rows to the writer, the
// writer commits them with the stream position they cover (journal_seq,
// in the journal file's own meta), and after a crash the intake re-reads
// the retained events above that position (engine/writeback.go). Two files
// have two write locks, so the journal commits on the other core while the
// engine commits the next batch.
//
// Readers see one database: the read pool attaches the journal file, and
// an unqualified `journal` names its table.

// JournalPath is the journal file beside the main database at path:
// data/proactived.db → data/proactived.journal.db.
func JournalPath(path string) string { return besidePath(path, "journal") }

// journalSchema is the journal file's schema.
var journalSchema = []string{
	`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS journal (
		id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL,
		etype TEXT NOT NULL, ekey TEXT NOT NULL, subject TEXT NOT NULL, msg_id TEXT NOT NULL, data BLOB)`,
	// The journal's look-up by entity, written once a second in key order
	// instead of with every write (journalIndexEvery); readers add the rows
	// above journal_index's 'upto' (JournalOf). Files written before it had
	// an ordinary index, journal_entity, written with every row.
	`DROP INDEX IF EXISTS journal_entity`,
	`CREATE TABLE IF NOT EXISTS journal_by_entity (etype TEXT NOT NULL, ekey TEXT NOT NULL, id INTEGER NOT NULL,
		PRIMARY KEY (etype, ekey, id)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS journal_index (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`,
}

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
	// and writes each page of the random-key entity index once for all of
	// them, instead of once per batch (the writer's commits were half its
	// time; BENCHMARKS.md, sixth round). Nothing is acked on the journal,
	// so the delay costs only rows to re-merge after a crash.
	journalLinger = 100 * time.Millisecond
	// journalIndexEvery is the least time between two updates of the
	// journal's entity look-up: the random-key B-tree's pages are written
	// once a second rather than with every write (BENCHMARKS.md, seventh
	// round); readers scan the rows not indexed yet, about this much.
	journalIndexEvery = time.Second
	// journalIndexChunk bounds the rows one update indexes: a backlog (an
	// upgraded file) is taken in steps, one per write.
	journalIndexChunk = 16384
	journalBackoffMax = 5 * time.Second
	// journalBusy is how long a journal write waits for a lock held by
	// another connection (a backup, an operator's DELETE) before it counts
	// as failed and is retried.
	journalBusy = 5 * time.Second
)

// Journal is the journal file and its writer.
type Journal struct {
	db   *sql.DB
	ins  *Bulk
	path string

	mu      sync.Mutex
	pending []JournalRow
	// through is the stream position the rows handed so far cover;
	// durable, the one the last write committed.
	through, durable uint64
	// handed counts Append calls; written is the last one written.
	handed, written uint64
	// ixUpto is the last journal row id the entity look-up covers
	// (committed); ixAt is when it was last brought up to date.
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
// database, moves a journal table the main file still has into it, and
// starts the writer. w is the main file's writer.
func openJournal(ctx context.Context, w *sql.DB, path string) (*Journal, error) {
	jpath := JournalPath(path)
	// 8 MiB of cache: rows append at the table's right edge; only the
	// entity index takes random keys, and a lingering write touches each of
	// its pages once.
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
	seq, err := reconcileJournal(ctx, w, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal %s: %w", jpath, err)
	}
	ixUpto, err := reconcileJournalIndex(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal %s: %w", jpath, err)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j := &Journal{
		db: db, path: jpath,
		ins:      Insert("journal (seq, at, etype, ekey, subject, msg_id, data)", 7),
		through:  seq,
		durable:  seq,
		ixUpto:   ixUpto,
		ixEvery:  journalIndexEvery,
		wake:     make(chan struct{}, 1),
		progress: make(chan struct{}),
		cancel:   cancel,
		done:     make(chan struct{}),
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
		stmts := []string{
			`BEGIN`,
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
// will process again.
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
		if _, err := j.ExecContext(ctx, `DELETE FROM journal WHERE seq > ?`, last); err != nil {
			return 0, err
		}
		seq = last
	default:
		return seq, nil
	}
	if _, err := j.ExecContext(ctx, `INSERT OR REPLACE INTO meta (k, v) VALUES ('journal_seq', ?)`, strconv.FormatUint(seq, 10)); err != nil {
		return 0, err
	}
	return seq, nil
}

// reconcileJournalIndex returns the position of the journal's entity
// look-up, made consistent with the rows: the newest rows may have been
// deleted (reconcileJournal, an operator) and SQLite then hands their ids
// out again, so entries above the last row go and the position comes
// back to it.
func reconcileJournalIndex(ctx context.Context, j *sql.DB) (int64, error) {
	var upto, last int64
	if err := j.QueryRowContext(ctx, `SELECT coalesce((SELECT v FROM journal_index WHERE k = 'upto'), 0), coalesce((SELECT max(id) FROM journal), 0)`).Scan(&upto, &last); err != nil {
		return 0, err
	}
	if upto <= last {
		return upto, nil
	}
	for _, q := range []string{`DELETE FROM journal_by_entity WHERE id > ?1`, `INSERT OR REPLACE INTO journal_index (k, v) VALUES ('upto', ?1)`} {
		if _, err := j.ExecContext(ctx, q, last); err != nil {
			return 0, err
		}
	}
	return last, nil
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

// write commits rows and the position, and records the progress.
func (j *Journal) write(rows []JournalRow, through, handed uint64) error {
	ctx := context.Background() // a write is short and never abandoned half-way
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	args := make([]any, 0, len(rows)*7)
	for i := range rows {
		r := &rows[i]
		args = append(args, r.Seq, r.At, r.Etype, r.Ekey, r.Subject, r.MsgID, r.Data)
	}
	if err := j.ins.Exec(ctx, tx, args); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (k, v) VALUES ('journal_seq', ?)`, strconv.FormatUint(through, 10)); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	ixUpto, ixAt, err := j.index(ctx, tx)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: commit: %w", err)
	}
	j.mu.Lock()
	j.ixUpto, j.ixAt = ixUpto, ixAt
	if ixAt.IsZero() {
		j.poke() // a backlog: the next chunk at once
	}
	j.written, j.durable, j.err = handed, through, nil
	j.notify()
	j.mu.Unlock()
	return nil
}

// index brings the entity look-up up to the newest row in the write's
// transaction, at most every journalIndexEvery and journalIndexChunk rows
// at a time, in key order, copied inside SQLite. It returns the position
// and time to record once the transaction commits.
func (j *Journal) index(ctx context.Context, tx *sql.Tx) (int64, time.Time, error) {
	j.mu.Lock()
	upto, at, every := j.ixUpto, j.ixAt, j.ixEvery
	j.mu.Unlock()
	now := time.Now()
	if now.Sub(at) < every {
		return upto, at, nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM journal`).Scan(&last); err != nil {
		return 0, time.Time{}, fmt.Errorf("journal: index: %w", err)
	}
	to := min(last, upto+journalIndexChunk)
	if to <= upto {
		return upto, now, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO journal_by_entity (etype, ekey, id)
		SELECT etype, ekey, id FROM journal WHERE id > ? AND id <= ? ORDER BY etype, ekey, id`, upto, to); err != nil {
		return 0, time.Time{}, fmt.Errorf("journal: index: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO journal_index (k, v) VALUES ('upto', ?)`, to); err != nil {
		return 0, time.Time{}, fmt.Errorf("journal: index: %w", err)
	}
	if to < last {
		now = time.Time{} // a backlog: the next write takes the next chunk
	}
	return to, now, nil
}

// indexBehind reports whether the entity look-up has a backlog that an
// index-only write should take (an upgraded file, a restart after a
// burst) while no rows arrive.
func (j *Journal) indexBehind() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ixAt.IsZero() && j.err == nil
}

// SyncIndex brings the entity look-up up to every row committed so far,
// without waiting for its second (tests; readers need not: JournalOf
// covers the rest).
func (j *Journal) SyncIndex(ctx context.Context) error {
	if err := j.Sync(ctx); err != nil {
		return err
	}
	var last int64
	if err := j.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM journal`).Scan(&last); err != nil {
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

// IndexUpto is the last journal row id the entity look-up covers.
func (j *Journal) IndexUpto() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ixUpto
}

// JournalOf returns a condition on the journal table, for a reader
// (OpenReader attaches the journal), that keeps the rows of the entity
// its look-up finds plus the rows it does not cover yet; the caller's
// WHERE must also hold etype = ? AND ekey = ? on the row, which filters
// those (and entries of rows deleted since).
func JournalOf(etype, ekey string) (string, []any) {
	return lookupIn("journal", "journal_index", Lookup{`SELECT id FROM journal_by_entity WHERE etype = ? AND ekey = ?`, []any{etype, ekey}})
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
