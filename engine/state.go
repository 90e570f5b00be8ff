package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/store"
)

// entity is one remembered record: the shallow merge of every event that
// touched it.
type entity struct {
	typ, key string
	state    map[string]any
	created  time.Time
	updated  time.Time
	dirty    bool
	// dirtySeq is the stream sequence of the oldest event merged since the
	// entity was last written (write-back, writeback.go); 0 while dirty
	// means a change from outside the stream, written at the next commit.
	dirtySeq uint64
	inBatch  bool
}

func (en *entity) stateOrEmpty() map[string]any {
	if en == nil || en.state == nil {
		return map[string]any{}
	}
	return en.state
}

type cacheKey struct{ typ, key string }

// newEntityCache bounds the hot entities in memory (memo.go); one whose
// changes are not written yet, or that the batch in progress holds, stays
// when its generation is dropped.
func newEntityCache(max int) *memo[cacheKey, *entity] {
	return newMemo[cacheKey](max, func(en *entity) bool { return en.dirty || en.inBatch })
}

// load returns the entity from the cache or the store; a new empty entity
// when there is none yet.
func (e *Engine) load(ctx context.Context, typ, key string) (*entity, error) {
	k := cacheKey{typ, key}
	if en, ok := e.cache.get(k); ok {
		e.track(en)
		return en, nil
	}
	en := &entity{typ: typ, key: key}
	var (
		raw              []byte
		created, updated int64
	)
	q := e.st.W.QueryRowContext
	if e.cur != nil {
		// Without waiting for the batch's pipe: entity rows are written
		// only at commit (flushState), never by the statements it queued
		// while evaluating, and database/sql serialises the two
		// goroutines' calls on the connection.
		q = e.cur.tx.QueryRowContext
	}
	err := q(ctx, `SELECT state, created_at, updated_at FROM entities WHERE type = ? AND key = ?`, typ, key).Scan(&raw, &created, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("load %s:%s: %w", typ, key, err)
	default:
		st, err := event.DecodeObjectWith(raw, e.keys)
		if err != nil {
			return nil, fmt.Errorf("load %s:%s: corrupt state: %w", typ, key, err)
		}
		en.state = st
		en.created, en.updated = store.FromMillis(created), store.FromMillis(updated)
	}
	e.cache.put(k, en)
	e.track(en)
	return en, nil
}

func (e *Engine) track(en *entity) {
	if e.cur != nil && !en.inBatch {
		en.inBatch = true
		e.cur.touched = append(e.cur.touched, en)
	}
}

// saveEntity writes one entity's state in b's transaction.
func (e *Engine) saveEntity(ctx context.Context, b *batch, en *entity) error {
	raw, err := event.AppendJSON(nil, en.state)
	if err != nil {
		return fmt.Errorf("save %s:%s: %w", en.typ, en.key, err)
	}
	return b.write(ctx, tOther, `INSERT INTO entities (type, key, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (type, key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
		en.typ, en.key, raw, store.Millis(en.created), store.Millis(en.updated))
}
