// Package store keeps proactived's durable state in a SQLite file (WAL):
// entity snapshots, the consumer's position, decisions, the outbox and its
// delivery attempts, dedup marks, timers and support contacts; and the
// event journal in a second file beside it (journal.go).
//
// One writer: all writes go through a single connection, so the engine can
// batch many events into one transaction and SQLite never sees two writers.
// Reads (API, explain, report) use a separate read-only pool that WAL lets
// run beside the writer.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3" // SQLite driver (cgo)
)

// Store is the opened database.
type Store struct {
	W *sql.DB // the single writer
	R *sql.DB // readers (the journal file attached)
	// Journal is the event journal's file and writer (journal.go).
	Journal *Journal
	// Index is the decision index's file and indexer (dindex.go).
	Index *DecisionIndex
	Path  string
	// ckpt checkpoints the WAL in the background (checkpoint.go).
	ckpt *checkpointer
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// A 32 MiB page cache: 64 MiB measured no faster (1M orders: 25,618
	// vs 24,791 events/s) and was 48 MB more of the all-in-one daemon's
	// RSS with a million entities (BENCHMARKS.md, "Memory"). 128 prepared
	// statements kept on the connection: the engine runs the same few
	// dozen statements for every event, and compiling the SQL each time
	// was the largest single cost of a batch (BENCHMARKS.md).
	w, err := openWriter(path, 10*time.Second, 32768, 128)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate store %s: %w", path, err)
	}
	j, err := openJournal(ctx, w, path)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	x, err := openDecisionIndex(ctx, w, path)
	if err != nil {
		j.close()
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	r := OpenReader(path, 4)
	ckpt, err := startCheckpointer(ctx, w, path)
	if err != nil {
		r.Close()
		x.close()
		j.close()
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{W: w, R: r, Journal: j, Index: x, Path: path, ckpt: ckpt}, nil
}

// OpenReader opens a read-only pool of up to conns connections on the
// database at path, with its journal file attached when there is one (so
// unqualified names find the journal's tables: JournalEvents) and its decision
// index (DecisionsIn; an empty one in memory when the file is missing, so
// every decision is in the index's tail). It creates and migrates nothing;
// connections open on first use, so a missing or unreadable file shows as
// the first query's error.
func OpenReader(path string, conns int) *sql.DB {
	rq := url.Values{}
	rq.Set("_busy_timeout", "10000")
	rq.Set("mode", "ro")
	ro := url.Values{}
	ro.Set("mode", "ro")
	jpath, ipath := JournalPath(path), IndexPath(path)
	_, jerr := os.Stat(jpath)
	_, ierr := os.Stat(ipath)
	drv := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		if jerr == nil {
			if _, err := c.Exec(`ATTACH DATABASE ? AS `+journalAttach, []driver.Value{"file:" + jpath + "?" + ro.Encode()}); err != nil {
				return fmt.Errorf("attach journal %s: %w", jpath, err)
			}
		}
		if ierr == nil {
			if _, err := c.Exec(`ATTACH DATABASE ? AS `+indexAttach, []driver.Value{"file:" + ipath + "?" + ro.Encode()}); err != nil {
				return fmt.Errorf("attach decision index %s: %w", ipath, err)
			}
			return nil
		}
		if _, err := c.Exec(`ATTACH DATABASE ':memory:' AS `+indexAttach, nil); err != nil {
			return fmt.Errorf("attach empty decision index: %w", err)
		}
		for _, stmt := range indexSchema {
			if _, err := c.Exec(strings.Replace(stmt, "EXISTS ", "EXISTS "+indexAttach+".", 1), nil); err != nil {
				return fmt.Errorf("empty decision index: %w", err)
			}
		}
		return nil
	}}
	r := sql.OpenDB(connector{drv: drv, dsn: "file:" + path + "?" + rq.Encode()})
	r.SetMaxOpenConns(conns)
	return r
}

// openWriter opens a file's one writer connection: WAL, write transactions
// that take the write lock at BEGIN, a busy timeout, a page cache of
// cacheKiB and stmts prepared statements kept. synchronous=NORMAL in WAL
// mode survives a process crash (SIGKILL); only an OS crash or power loss
// can lose the last transactions.
func openWriter(path string, busy time.Duration, cacheKiB, stmts int) (*sql.DB, error) {
	if err := create(path); err != nil {
		return nil, err
	}
	return openSingle(path, writerDSN(busy, cacheKiB, stmts, "immediate"))
}

// PageSize is the page size of the files the store creates. An 8 KiB page
// holds about seven of the outbox's ~1 KB rows where a 4 KiB one holds
// three, so a batch splits and writes fewer pages: against SQLite's 4 KiB
// default the backlog drain ran ~5 % more events a second on ~6 % less CPU
// an event, and the latency at a fixed 10,000 events/s stayed within its
// run-to-run spread (BENCHMARKS.md, eleventh round).
// 16 KiB pages drained faster still but doubled the median latency at a
// fixed rate: each random-key update writes a whole page to the WAL. A
// file keeps the page size it was created with.
const PageSize = 8192

// create makes the database file at path with PageSize pages and in WAL
// mode, if there is no file there yet. The page size must be set before
// the first write, and the writer's DSN switches to WAL (a write) as it
// connects, so a new file is made here first.
func create(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // there is a file, or Open's own error will say why not
	}
	db, err := openSingle(path, url.Values{})
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer db.Close()
	for _, q := range []string{fmt.Sprintf(`PRAGMA page_size = %d`, PageSize), `PRAGMA journal_mode = WAL`} {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
	}
	return nil
}

// writerDSN is the DSN of a writer connection; txlock is how its
// transactions begin (immediate: with the write lock).
func writerDSN(busy time.Duration, cacheKiB, stmts int, txlock string) url.Values {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	q.Set("_txlock", txlock)
	q.Set("_cache_size", strconv.Itoa(-cacheKiB))
	q.Set("_stmt_cache_size", strconv.Itoa(stmts))
	return q
}

// besidePath is the file of the given part beside the main database at
// path: data/proactived.db, "journal" → data/proactived.journal.db.
func besidePath(path, part string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + part + ext
}

// openSingle opens a pool of exactly one connection, kept for the life of
// the pool: a writer (the main file's, the journal's) or the checkpointer.
// Settings made on the connection (PRAGMAs) therefore last.
func openSingle(path string, q url.Values) (*sql.DB, error) {
	return openSingleHook(path, q, nil)
}

// openSingleHook is openSingle with hook run on the connection as it
// opens (ATTACH).
func openSingleHook(path string, q url.Values, hook func(*sqlite3.SQLiteConn) error) (*sql.DB, error) {
	db := sql.OpenDB(connector{drv: &sqlite3.SQLiteDriver{ConnectHook: hook}, dsn: "file:" + path + "?" + q.Encode()})
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// setBusyTimeout sets how long db's (single) connection waits for a lock
// held by another connection before a write fails.
func setBusyTimeout(ctx context.Context, db *sql.DB, d time.Duration) error {
	_, err := db.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, d.Milliseconds()))
	return err
}

// ReadSeq reads a stream position kept in a meta table (last_seq,
// state_seq, journal_seq); ok is false when there is none.
func ReadSeq(ctx context.Context, db *sql.DB, k string) (seq uint64, ok bool, err error) {
	var v string
	err = db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = ?`, k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", k, err)
	}
	if seq, err = strconv.ParseUint(v, 10, 64); err != nil {
		return 0, false, fmt.Errorf("read %s: %w", k, err)
	}
	return seq, true, nil
}

// connector opens connections of one driver configuration; unlike
// sql.Register it needs no process-wide driver name.
type connector struct {
	drv *sqlite3.SQLiteDriver
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.drv }

// Close writes the journal rows still handed, then closes every pool. The
// readers go first: each writer's connection is then the last one on its
// file, and SQLite checkpoints and removes that file's WAL as it closes
// (a read-only connection closing last would leave it behind).
func (s *Store) Close() error {
	errR := s.R.Close()
	errJ := s.Journal.close()
	errX := s.Index.close()
	var errCk error
	if s.ckpt != nil {
		errCk = s.ckpt.stop()
	}
	return errors.Join(errR, errJ, errX, errCk, s.W.Close())
}

// Ping checks that a write could be made now and that the journal's last
// write did not fail (readiness); see ping.go.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.Journal.Err(); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	if err := s.Index.Err(); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return s.ping(ctx)
}

const schemaVersion = "1"

var schema = []string{
	`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID`,
	// Entity snapshots: the shallow merge of every event that touched them.
	`CREATE TABLE IF NOT EXISTS entities (
		type TEXT NOT NULL, key TEXT NOT NULL, state BLOB NOT NULL,
		created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
		PRIMARY KEY (type, key)) WITHOUT ROWID`,
	// Explicit event ids (Nats-Msg-Id, CloudEvents id) already processed.
	// Ids derived from the stream sequence need no row: the consumer
	// position in meta covers them.
	`CREATE TABLE IF NOT EXISTS seen_ids (id TEXT PRIMARY KEY, at INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID`,
	// Those ids as the engine records them, appended with each batch and
	// folded into seen_ids in id order about once a second
	// (engine/seenlog.go): an append places no random key.
	`CREATE TABLE IF NOT EXISTS seen_log (
		id INTEGER PRIMARY KEY, eid TEXT NOT NULL, at INTEGER NOT NULL, seq INTEGER NOT NULL)`,
	// The per-entity journal of received events has a file of its own
	// (journal.go).
	// Every verdict, one row each.
	`CREATE TABLE IF NOT EXISTS decisions (
		id INTEGER PRIMARY KEY, at INTEGER NOT NULL, rule TEXT NOT NULL,
		etype TEXT NOT NULL, ekey TEXT NOT NULL, customer TEXT NOT NULL,
		verdict TEXT NOT NULL, reason TEXT NOT NULL, notification TEXT NOT NULL,
		event TEXT NOT NULL, mode TEXT NOT NULL DEFAULT 'live')`,
	// No secondary index: the decision index file has their look-ups by
	// entity, customer and rule (dindex.go). Files written before it had
	// these three indexes in the main file.
	`DROP INDEX IF EXISTS decisions_entity`,
	`DROP INDEX IF EXISTS decisions_customer`,
	`DROP INDEX IF EXISTS decisions_rule`,
	// The outbox: one row per notification, with its channel candidates.
	`CREATE TABLE IF NOT EXISTS outbox (
		id TEXT PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, rule TEXT NOT NULL,
		etype TEXT NOT NULL, ekey TEXT NOT NULL, customer TEXT NOT NULL,
		priority INTEGER NOT NULL, status TEXT NOT NULL,
		candidates BLOB NOT NULL, hop INTEGER NOT NULL DEFAULT 0,
		attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
		doc BLOB NOT NULL, trigger BLOB, last_error TEXT NOT NULL DEFAULT '',
		recheck INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, sent_at INTEGER NOT NULL DEFAULT 0)`,
	`CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_at)`,
	// The dispatcher's claim order over live rows only: a claim reads the
	// first due rows in this order instead of sorting every due row (which
	// made draining a backlog of N notifications cost O(N) per claim).
	`CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (priority DESC, next_at) WHERE status IN ('pending', 'retry', 'sending')`,
	`CREATE INDEX IF NOT EXISTS outbox_entity ON outbox (rule, ekey, created_at)`,
	`CREATE INDEX IF NOT EXISTS outbox_customer ON outbox (customer, created_at)`,
	// Delivery attempts.
	`CREATE TABLE IF NOT EXISTS attempts (
		id INTEGER PRIMARY KEY, notification TEXT NOT NULL, at INTEGER NOT NULL,
		channel TEXT NOT NULL, attempt INTEGER NOT NULL, ok INTEGER NOT NULL,
		retry INTEGER NOT NULL, error TEXT NOT NULL, millis INTEGER NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS attempts_notification ON attempts (notification, id)`,
	// Dedup marks: a fired rule with this key is a repeat until `until`.
	`CREATE TABLE IF NOT EXISTS dedup (
		rule TEXT NOT NULL, key TEXT NOT NULL, until INTEGER NOT NULL, notification TEXT NOT NULL,
		PRIMARY KEY (rule, key)) WITHOUT ROWID`,
	// Dedup marks as the engine sets them, appended with each batch and
	// folded into dedup in key order about once a second
	// (engine/dedupfold.go): an append places no random key.
	`CREATE TABLE IF NOT EXISTS dedup_log (
		id INTEGER PRIMARY KEY, rule TEXT NOT NULL, key TEXT NOT NULL,
		until INTEGER NOT NULL, notification TEXT NOT NULL)`,
	// Durable timers: absence deadlines, for: hold-downs, promises.
	`CREATE TABLE IF NOT EXISTS timers (
		rule TEXT NOT NULL, etype TEXT NOT NULL, ekey TEXT NOT NULL, kind TEXT NOT NULL,
		due INTEGER NOT NULL, armed_at INTEGER NOT NULL, payload BLOB,
		PRIMARY KEY (rule, etype, ekey, kind)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS timers_due ON timers (due)`,
	// Support contacts.
	`CREATE TABLE IF NOT EXISTS contacts (
		id INTEGER PRIMARY KEY, at INTEGER NOT NULL, customer TEXT NOT NULL,
		etype TEXT NOT NULL, ekey TEXT NOT NULL, topic TEXT NOT NULL,
		channel TEXT NOT NULL, status TEXT NOT NULL, contact_id TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS contacts_customer ON contacts (customer, at)`,
	`CREATE INDEX IF NOT EXISTS contacts_entity ON contacts (etype, ekey, at)`,
	// Arrival marks for history retention (prune.go): the newest id of a
	// table whose time column is the event's own time, at a time of the
	// engine's clock.
	`CREATE TABLE IF NOT EXISTS prune_marks (tbl TEXT NOT NULL, at INTEGER NOT NULL, id INTEGER NOT NULL,
		PRIMARY KEY (tbl, at)) WITHOUT ROWID`,
	// Fan-out jobs in progress: one event over every entity of a type,
	// processed in pages between intake batches.
	`CREATE TABLE IF NOT EXISTS fanout (
		id INTEGER PRIMARY KEY, rule TEXT NOT NULL, etype TEXT NOT NULL,
		cursor TEXT NOT NULL, event BLOB NOT NULL, created_at INTEGER NOT NULL)`,
}

func migrate(ctx context.Context, db *sql.DB) error {
	for _, stmt := range schema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%.60s: %w", stmt, err)
		}
	}
	// seen_ids.seq came with write-back: a rebuild must know which of two
	// events with one id was the one merged.
	var has int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('seen_ids') WHERE name = 'seq'`).Scan(&has); err != nil {
		return fmt.Errorf("inspect seen_ids: %w", err)
	}
	if has == 0 {
		if _, err := db.ExecContext(ctx, `ALTER TABLE seen_ids ADD COLUMN seq INTEGER NOT NULL DEFAULT 0`); err != nil {
			return fmt.Errorf("add seen_ids.seq: %w", err)
		}
	}
	_, err := db.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ('schema', ?) ON CONFLICT (k) DO NOTHING`, schemaVersion)
	return err
}

// Millis converts a time to the stored representation (Unix ms, UTC).
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromMillis converts back.
func FromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// Forever is the "until" of a mark that never expires.
const Forever = int64(1<<62 - 1)
