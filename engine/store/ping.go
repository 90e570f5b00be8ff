package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"time"
)

// pingBusy bounds how long a readiness check waits for the write lock: a
// normal transaction holds it for milliseconds, so a longer wait means
// another process locked the database or writes are failing.
const pingBusy = time.Second

// ping checks that a write could be made now, on a connection of its own:
// the writer's single connection may be busy (or stuck behind a lock) with
// the engine's work, and a readiness probe must neither queue behind it
// nor hold it. The write is rolled back, so the check changes nothing.
func (s *Store) ping(ctx context.Context) (err error) {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(pingBusy.Milliseconds()))
	db, err := sql.Open("sqlite3", "file:"+s.Path+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	defer func() {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`); rerr != nil && err == nil {
			err = fmt.Errorf("ping store: %w", rerr)
		}
	}()
	if _, err := conn.ExecContext(ctx, `UPDATE meta SET v = v WHERE k = 'schema'`); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// SetBusyTimeout changes how long a write waits for a lock held by another
// connection before it fails (Open sets 10 s). The writer keeps its one
// connection for the life of the pool, so the setting lasts.
func (s *Store) SetBusyTimeout(ctx context.Context, d time.Duration) error {
	if err := setBusyTimeout(ctx, s.W, d); err != nil {
		return fmt.Errorf("store busy timeout: %w", err)
	}
	return nil
}
