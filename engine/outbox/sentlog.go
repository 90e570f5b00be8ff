package outbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// sentLog is an append-only file of deliveries whose outcome is not yet
// committed to SQLite. A send is appended the moment the channel accepts
// it (one small write, which survives SIGKILL as it sits in the page
// cache), long before the batch's outcomes commit. After a crash the
// entries mark their rows sent instead of sending them again, so the only
// notification a crash can repeat is one whose channel accepted it in the
// microseconds before its entry was written.
//
// It is two files, one per generation: the dispatcher sends one batch
// while the outcomes of the one before commit, and emptying the file of
// the committed batch must not drop the notes of the batch in flight.
// Generation 0 is the configured path, generation 1 the path + ".1".
type sentLog struct {
	mu sync.Mutex
	f  [2]*os.File
	n  [2]int // entries since the last reset
}

type sentEntry struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Attempt int    `json:"attempt"`
	At      int64  `json:"at"`     // unix ms, the dispatcher's clock
	Millis  int64  `json:"millis"` // how long the channel took
}

// openSentLog opens (creating) both files and returns the entries a
// previous run left behind. A torn last line (a crash mid-write) is
// ignored: that send is treated as unconfirmed and sent again.
func openSentLog(path string) (*sentLog, []sentEntry, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("sent log: %w", err)
	}
	l := &sentLog{}
	var left []sentEntry
	for gen, p := range [2]string{path, path + ".1"} {
		f, entries, err := openSentFile(p)
		if err != nil {
			_ = l.close()
			return nil, nil, err
		}
		l.f[gen], l.n[gen] = f, len(entries)
		left = append(left, entries...)
	}
	return l, left, nil
}

func openSentFile(path string) (*os.File, []sentEntry, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("sent log: %w", err)
	}
	var left []sentEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e sentEntry
		if json.Unmarshal(bytes.TrimSpace(sc.Bytes()), &e) == nil && e.ID != "" {
			left = append(left, e)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, nil, fmt.Errorf("sent log %s: %w", path, err)
	}
	return f, left, nil
}

// add appends one accepted send to generation gen (0 or 1).
func (l *sentLog) add(gen int, e sentEntry) error {
	if l == nil {
		return nil
	}
	b, _ := json.Marshal(e)
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f[gen].Write(b); err != nil {
		return fmt.Errorf("sent log: %w", err)
	}
	l.n[gen]++
	return nil
}

// reset empties generation gen once every entry's outcome is committed.
func (l *sentLog) reset(gen int) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[gen] == 0 {
		return nil
	}
	if err := l.f[gen].Truncate(0); err != nil {
		return fmt.Errorf("sent log: %w", err)
	}
	l.n[gen] = 0
	return nil
}

func (l *sentLog) close() error {
	if l == nil {
		return nil
	}
	var errs []error
	for _, f := range l.f {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
