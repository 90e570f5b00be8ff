package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

// The decision index lives in a SQLite file of its own, written by a
// goroutine of its own.
//
// Decisions are appended to the main file without secondary indexes: a
// row costs one append at the rowid B-tree's right edge. Their look-ups
// by entity, customer and rule (explain, the API, reports) were three
// random-key index entries per row, each a page of its own dirtied in
// every intake commit: with them the decisions were a fifth of the
// engine's CPU per event (BENCHMARKS.md, seventh round). The index is
// derived from the decisions table alone, so it needs no place in the
// transaction that acks the events: the indexer reads the rows above the
// position it has covered (dindex_meta 'upto', kept in the index file in
// the same transaction as its entries), writes their keys in one
// transaction a second, and so touches each index page once a second
// instead of once per batch, on the other core, under the index file's own
// write lock.
//
// Readers never miss a decision that is not indexed yet: DecisionsIn
// selects the index's candidates plus every decision above 'upto' (the
// tail, at most about a second of decisions), and the caller's own
// conditions on the decision row check both. An index file that is lost,
// or older or newer than the main file (a restore), is rebuilt from the
// decisions at the next start; its position is checked against the row it
// names.

// IndexPath is the decision index's file beside the main database at
// path: data/proactived.db → data/proactived.index.db.
func IndexPath(path string) string { return besidePath(path, "index") }

// indexSchema is the index file's schema. The tables are named so that an
// unqualified name finds them in the attached file.
var indexSchema = []string{
	`CREATE TABLE IF NOT EXISTS dindex_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS decision_entity (etype TEXT NOT NULL, ekey TEXT NOT NULL, id INTEGER NOT NULL,
		PRIMARY KEY (etype, ekey, id)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS decision_customer (customer TEXT NOT NULL, id INTEGER NOT NULL,
		PRIMARY KEY (customer, id)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS decision_rule (rule TEXT NOT NULL, id INTEGER NOT NULL,
		PRIMARY KEY (rule, id)) WITHOUT ROWID`,
}

// indexAttach is the schema name readers attach the index file as.
const indexAttach = "dix"

const (
	// indexEvery is the least time between two index writes while nobody
	// waits for one: the tail that readers scan is at most about this
	// much of decisions.
	indexEvery = time.Second
	// indexChunk bounds the decisions one index write takes; a backlog
	// (a rebuild) is taken in writes of this many, one after another.
	indexChunk = 16384
	// indexBackoffMax bounds the wait between attempts after a failed
	// write (doubling from indexEvery).
	indexBackoffMax = 30 * time.Second
	// indexBusy is how long an index write waits for a lock held by
	// another connection (a backup) before it counts as failed.
	indexBusy = 5 * time.Second
)

// DecisionIndex is the index file and its indexer.
type DecisionIndex struct {
	db   *sql.DB // the index file's writer, the main file attached read-only as src
	path string

	mu       sync.Mutex
	upto     int64         // the last decision id indexed, committed
	uptoAt   int64         // its time: tells the decision from a later one with its id
	every    time.Duration // indexEvery (tests lengthen it)
	err      error
	waiting  int           // Sync calls waiting: no lingering
	wake     chan struct{} // cap 1: look now
	progress chan struct{} // closed (and replaced) after each write or failure

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// openDecisionIndex opens (creating if needed) the index file beside the
// main database at path, checks its position against the main file's
// decisions (w is the main file's writer) and starts the indexer.
func openDecisionIndex(ctx context.Context, w *sql.DB, path string) (*DecisionIndex, error) {
	ipath := IndexPath(path)
	db, err := openIndexWriter(path)
	if err != nil {
		return nil, fmt.Errorf("decision index %s: %w", ipath, err)
	}
	for _, stmt := range indexSchema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("decision index %s: %.60s: %w", ipath, stmt, err)
		}
	}
	upto, uptoAt, err := reconcileIndex(ctx, w, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("decision index %s: %w", ipath, err)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	x := &DecisionIndex{
		db: db, path: ipath, upto: upto, uptoAt: uptoAt, every: indexEvery,
		wake:     make(chan struct{}, 1),
		progress: make(chan struct{}),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go x.run(cctx)
	return x, nil
}

// openIndexWriter opens the index file's writer connection with the main
// file at path attached read-only as src, so an index write copies the
// keys from the decisions inside SQLite (no value crosses into Go).
// Transactions are deferred, unlike the other writers': BEGIN IMMEDIATE
// would take a write lock on every attached file, the main one included.
// The first statement that touches the index file is a write, so the
// transaction never has to upgrade a read snapshot there. 4 MiB of cache:
// dirty pages beyond it spill to the WAL before the commit, which costs
// little in WAL mode, and the daemon's RSS with a million entities is near
// its 256 MB target.
func openIndexWriter(path string) (*sql.DB, error) {
	if err := create(IndexPath(path)); err != nil {
		return nil, err
	}
	q := writerDSN(indexBusy, 4096, 16, "deferred")
	ro := url.Values{}
	ro.Set("mode", "ro")
	main := "file:" + path + "?" + ro.Encode()
	return openSingleHook(IndexPath(path), q, func(c *sqlite3.SQLiteConn) error {
		if _, err := c.Exec(`ATTACH DATABASE ? AS src`, []driver.Value{main}); err != nil {
			return fmt.Errorf("attach %s: %w", path, err)
		}
		// The decisions are read once each, in order: a small cache.
		if _, err := c.Exec(`PRAGMA src.cache_size = -512`, nil); err != nil {
			return fmt.Errorf("attach %s: %w", path, err)
		}
		return nil
	})
}

// reconcileIndex returns the index's position, made consistent with the
// main file: the decision it names must be there with the time it had
// when it was indexed, else the index describes another file (the main
// file was restored from a backup, or replaced) and starts over empty.
func reconcileIndex(ctx context.Context, w, x *sql.DB) (upto, uptoAt int64, err error) {
	if err := x.QueryRowContext(ctx, `SELECT coalesce((SELECT v FROM dindex_meta WHERE k = 'upto'), 0),
		coalesce((SELECT v FROM dindex_meta WHERE k = 'upto_at'), 0)`).Scan(&upto, &uptoAt); err != nil {
		return 0, 0, err
	}
	if ok, err := positionHolds(ctx, w, "decisions", upto, uptoAt); err != nil || ok {
		return upto, uptoAt, err
	}
	tx, err := x.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if err := resetIndex(ctx, tx); err != nil {
		return 0, 0, err
	}
	return 0, 0, tx.Commit()
}

// rowQuerier is a database or a transaction.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// positionHolds reports whether the decision the index's position names
// (upto, indexed when it had time uptoAt) is still that decision in the
// decisions table q reads (main's, as decisions or src.decisions). It is
// not if the main file was restored or replaced, or if an operator deleted
// the newest decisions and SQLite handed their ids out again: decisions at
// or below the position would then never be indexed.
func positionHolds(ctx context.Context, q rowQuerier, decisions string, upto, uptoAt int64) (bool, error) {
	if upto == 0 {
		return true, nil
	}
	var at int64
	err := q.QueryRowContext(ctx, `SELECT at FROM `+decisions+` WHERE id = ?`, upto).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read decisions: %w", err)
	}
	return at == uptoAt, nil
}

// resetIndex empties the index in ex's transaction: it is built again from
// the first decision.
func resetIndex(ctx context.Context, ex Execer) error {
	for _, q := range resetStmts {
		if _, err := ex.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("start over: %w", err)
		}
	}
	return nil
}

// Path is the index file.
func (x *DecisionIndex) Path() string { return x.path }

// Err is the error of the last index write if it failed (the indexer
// retries it); nil when the index is being written.
func (x *DecisionIndex) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// Upto is the last decision id the index covers.
func (x *DecisionIndex) Upto() int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.upto
}

// Sync waits until every decision committed before the call is indexed
// (or ctx ends). Readers need not call it (DecisionsIn covers the tail);
// it is for tests and for a stop that wants a short tail.
func (x *DecisionIndex) Sync(ctx context.Context) error {
	var last int64
	if err := x.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM src.decisions`).Scan(&last); err != nil {
		return fmt.Errorf("decision index: %w", err)
	}
	x.mu.Lock()
	x.waiting++
	defer func() { x.mu.Lock(); x.waiting--; x.mu.Unlock() }()
	for x.upto < last {
		ch := x.progress
		x.mu.Unlock()
		x.poke()
		select {
		case <-ch:
		case <-x.done:
			return errors.New("decision index: closed")
		case <-ctx.Done():
			return fmt.Errorf("decision index: %w", ctx.Err())
		}
		x.mu.Lock()
	}
	x.mu.Unlock()
	return nil
}

func (x *DecisionIndex) poke() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// run is the indexer: every indexEvery (at once while a backlog remains or
// Sync waits) it indexes the decisions above its position.
func (x *DecisionIndex) run(ctx context.Context) {
	defer close(x.done)
	wait := time.Duration(0)
	for {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-x.wake:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
		// A step is not cancelled midway: with a cancellable context
		// database/sql rolls a cancelled transaction back on a goroutine of
		// its own, so close could return with the connection still open —
		// it holds the main file attached, and the main file's and the
		// index's WAL then outlived Store.Close (a flaky
		// TestJournalFileWritesRowsAndPosition). A step is one bounded
		// chunk; close waits for it.
		n, err := x.step(context.WithoutCancel(ctx))
		x.mu.Lock()
		x.err = err
		hurry, every := x.waiting > 0, x.every
		close(x.progress)
		x.progress = make(chan struct{})
		x.mu.Unlock()
		switch {
		case err != nil:
			wait = min(max(2*wait, every), indexBackoffMax)
		case n == indexChunk || (hurry && n > 0):
			wait = 0
		default:
			wait = every
		}
	}
}

// step indexes up to indexChunk decisions above the position, in one
// transaction of the index file, and returns how many it indexed. Each
// table's entries go in key order: the B-tree cursor then moves forward
// through pages already in the cache.
func (x *DecisionIndex) step(ctx context.Context) (int, error) {
	x.mu.Lock()
	upto, uptoAt := x.upto, x.uptoAt
	x.mu.Unlock()
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("decision index: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	// Every read of the main file below shares one snapshot of it, so no
	// deletion falls between the check and the copy. Starting over is
	// rare: a purge deletes the oldest decisions, not the newest.
	ok, err := positionHolds(ctx, tx, "src.decisions", upto, uptoAt)
	if err != nil {
		return 0, fmt.Errorf("decision index: %w", err)
	}
	if !ok {
		if err := resetIndex(ctx, tx); err != nil {
			return 0, fmt.Errorf("decision index: %w", err)
		}
		upto = 0
	}
	// The last of the next indexChunk decisions.
	var last, lastAt int64
	err = tx.QueryRowContext(ctx, `SELECT id, at FROM (SELECT id, at FROM src.decisions WHERE id > ? ORDER BY id LIMIT ?) ORDER BY id DESC LIMIT 1`, upto, indexChunk).Scan(&last, &lastAt)
	if errors.Is(err, sql.ErrNoRows) {
		if !ok { // started over on an empty table
			return 0, x.commit(tx, 0, 0)
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("decision index: read decisions: %w", err)
	}
	var n int64
	for i, q := range indexStmts {
		res, err := tx.ExecContext(ctx, q, upto, last)
		if err != nil {
			return 0, fmt.Errorf("decision index: %w", err)
		}
		if i == len(indexStmts)-1 { // every decision has a rule
			if n, err = res.RowsAffected(); err != nil {
				return 0, fmt.Errorf("decision index: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO dindex_meta (k, v) VALUES ('upto', ?), ('upto_at', ?)`, last, lastAt); err != nil {
		return 0, fmt.Errorf("decision index: %w", err)
	}
	if err := x.commit(tx, last, lastAt); err != nil {
		return 0, err
	}
	return int(n), nil
}

// commit commits an index write and records its position.
func (x *DecisionIndex) commit(tx *sql.Tx, upto, uptoAt int64) error {
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("decision index: commit: %w", err)
	}
	x.mu.Lock()
	x.upto, x.uptoAt = upto, uptoAt
	x.mu.Unlock()
	return nil
}

// indexStmts copy the keys of the decisions in (?, ?] from the main file;
// the last one's row count is the number of decisions.
var indexStmts = [...]string{
	`INSERT OR IGNORE INTO decision_entity (etype, ekey, id)
		SELECT etype, ekey, id FROM src.decisions WHERE id > ?1 AND id <= ?2 AND ekey != '' ORDER BY etype, ekey, id`,
	`INSERT OR IGNORE INTO decision_customer (customer, id)
		SELECT customer, id FROM src.decisions WHERE id > ?1 AND id <= ?2 AND customer != '' ORDER BY customer, id`,
	`INSERT OR IGNORE INTO decision_rule (rule, id)
		SELECT rule, id FROM src.decisions WHERE id > ?1 AND id <= ?2 ORDER BY rule, id`,
}

// resetStmts empty the index: it is built again from the first decision.
var resetStmts = [...]string{`DELETE FROM decision_entity`, `DELETE FROM decision_customer`, `DELETE FROM decision_rule`, `DELETE FROM dindex_meta`}

// close stops the indexer and closes its connections. What is not indexed
// yet is indexed at the next start.
func (x *DecisionIndex) close() error {
	var err error
	x.once.Do(func() {
		x.cancel()
		<-x.done
		err = x.db.Close()
	})
	return err
}

// SetBusyTimeout changes how long an index write waits for a lock held by
// another connection before it fails and is retried (Open sets 5 s).
func (x *DecisionIndex) SetBusyTimeout(ctx context.Context, d time.Duration) error {
	if err := setBusyTimeout(ctx, x.db, d); err != nil {
		return fmt.Errorf("decision index busy timeout: %w", err)
	}
	return nil
}

// A Lookup is one key of a look-up written beside its table: the
// decisions of an entity, of a customer or of a rule (and, in a journal
// file of the version before chunks, the journal rows of an entity).
type Lookup struct {
	sql  string // selects the ids
	args []any
}

// ByEntity looks decisions up by the entity they are about.
func ByEntity(etype, ekey string) Lookup {
	return Lookup{`SELECT id FROM decision_entity WHERE etype = ? AND ekey = ?`, []any{etype, ekey}}
}

// ByCustomer looks decisions up by the customer they notify.
func ByCustomer(customer string) Lookup {
	return Lookup{`SELECT id FROM decision_customer WHERE customer = ?`, []any{customer}}
}

// ByRule looks decisions up by their rule.
func ByRule(rule string) Lookup {
	return Lookup{`SELECT id FROM decision_rule WHERE rule = ?`, []any{rule}}
}

// DecisionsIn returns a condition on the decisions table, for a reader
// (OpenReader attaches the index), that keeps the rows the lookups find
// plus the tail not indexed yet. It narrows the rows SQLite reads; it does
// not select by itself: the caller's WHERE must also hold the lookups'
// own conditions (etype = ? AND ekey = ?, …) on the decision row, which
// filter the tail (and any entry of an index built for another file).
func DecisionsIn(ls ...Lookup) (string, []any) { return lookupIn("decisions", "dindex_meta", ls...) }

// lookupIn is the condition on table's id that keeps the ids the lookups
// select plus every id above the look-ups' position ('upto' in meta).
func lookupIn(table, meta string, ls ...Lookup) (string, []any) {
	parts := make([]string, 0, len(ls)+1)
	var args []any
	for _, l := range ls {
		parts = append(parts, l.sql)
		args = append(args, l.args...)
	}
	parts = append(parts, `SELECT id FROM `+table+` WHERE id > coalesce((SELECT v FROM `+meta+` WHERE k = 'upto'), 0)`)
	return "id IN (" + strings.Join(parts, " UNION ALL ") + ")", args
}
