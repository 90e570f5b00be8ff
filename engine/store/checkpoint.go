package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"sync"
	"time"
)

// WAL checkpoints off the commit path.
//
// SQLite's default is that the commit which grows the WAL past 1,000 pages
// copies the WAL back into the database file and syncs both, inside that
// commit: one intake batch in a few stalls for tens of milliseconds, and
// the engine pays the copy on its own goroutine. Instead the writer turns
// automatic checkpoints off and a checkpointer with its own connection
// runs PASSIVE checkpoints in the background: they never block the writer
// (nor readers), and the writer restarts the WAL from its beginning once
// a checkpoint caught up. If the WAL still grows past walRestartPages (the
// writer never paused long enough), one RESTART checkpoint waits for the
// writer's current transaction and resets it, so the WAL stays bounded.
//
// Durability is unchanged: a commit is in the WAL whichever connection
// later checkpoints it.

const (
	checkpointEvery = 250 * time.Millisecond
	walRestartPages = 256 << 20 / PageSize // 256 MiB of the store's pages (128 MiB in a file of 4 KiB pages)
)

type checkpointer struct {
	db     *sql.DB
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startCheckpointer opens the checkpointer's connection and turns the
// writer's automatic checkpoints off. On any error the writer keeps SQLite's
// own checkpoints, so nothing depends on the checkpointer running.
func startCheckpointer(ctx context.Context, w *sql.DB, path string) (*checkpointer, error) {
	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	db, err := openSingle(path, q)
	if err != nil {
		return nil, fmt.Errorf("checkpointer: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("checkpointer: %w", err)
	}
	// The writer has exactly one connection, kept for the life of the
	// pool; should it ever be replaced, the new one checkpoints by itself
	// again (SQLite's default), which is merely slower.
	if _, err := w.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0`); err != nil {
		db.Close()
		return nil, fmt.Errorf("checkpointer: %w", err)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &checkpointer{db: db, cancel: cancel, done: make(chan struct{})}
	go c.run(cctx)
	return c, nil
}

func (c *checkpointer) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var busy, log, done int
		if err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
			continue // e.g. the database is being closed; try again next tick
		}
		if log > walRestartPages {
			_, _ = c.db.ExecContext(ctx, `PRAGMA wal_checkpoint(RESTART)`)
		}
	}
}

// stop ends the loop and closes the connection; the writer's close
// checkpoints whatever is left.
func (c *checkpointer) stop() error {
	var err error
	c.once.Do(func() {
		c.cancel()
		<-c.done
		err = c.db.Close()
	})
	return err
}
