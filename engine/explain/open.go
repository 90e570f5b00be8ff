package explain

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/proactived/proactived/engine/store"
)

// OpenReadOnly opens the store's SQLite file (with its journal file) for
// reading only, beside a running daemon (WAL lets readers run while the
// one writer commits). It never creates or migrates anything: a missing
// file is an error that says so, and so is a file that is not a proactived
// store.
func OpenReadOnly(ctx context.Context, path string) (*sql.DB, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no database at %s: has the daemon run with this data directory (--data, config `data`)?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("open %s: is a directory, want the SQLite file", path)
	}
	db := store.OpenReader(path, 2)
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('entities', 'decisions', 'outbox')`).Scan(&n); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if n != 3 {
		db.Close()
		return nil, fmt.Errorf("open %s: not a proactived store (tables missing)", path)
	}
	return db, nil
}
