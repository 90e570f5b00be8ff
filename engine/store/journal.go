package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
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
func JournalPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + ".journal" + ext
}

// journalSchema is the journal file's schema.
var journalSchema = []string{
	`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS journal (
		id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL,
		etype TEXT NOT NULL, ekey TEXT NOT NULL, subject TEXT NOT NULL, msg_id TEXT NOT NULL, data BLOB)`,
	`CREATE INDEX IF NOT EXISTS journal_entity ON journal (etype, ekey, id)`,
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
	journalLinger     = 100 * time.Millisecond
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
	err             error
	stopped         bool
	syncing         int           // Sync calls waiting: no lingering
	wake            chan struct{} // cap 1: there is work
	progress        chan struct{} // closed (and replaced) after each write or failure

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
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j := &Journal{
		db: db, path: jpath,
		ins:      Insert("journal (seq, at, etype, ekey, subject, msg_id, data)", 7),
		through:  seq,
		durable:  seq,
		wake:     make(chan struct{}, 1),
		progress: make(chan struct{}),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go j.run(cctx)
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
		for handed != written { // else nothing was handed since the last write
			err := j.write(rows, through, handed)
			last = time.Now()
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
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: commit: %w", err)
	}
	j.mu.Lock()
	j.written, j.durable, j.err = handed, through, nil
	j.notify()
	j.mu.Unlock()
	return nil
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
