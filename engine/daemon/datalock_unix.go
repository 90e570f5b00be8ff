//go:build unix

package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// lockData takes the data directory for this process: two daemons on one
// directory would each recreate the other's consumer and send each
// other's outbox. The lock is the kernel's (flock), so a killed daemon
// leaves none behind; the file keeps the holder's pid for the error.
//
// A held lock is tried again for up to wait: a supervisor (or a test
// harness) that restarts the daemon right after SIGKILL, without waiting
// for the old process to be reaped, starts the new one while the kernel
// is still tearing the old one down — two restarts in ten did so here.
func lockData(ctx context.Context, dir string, wait time.Duration, log *slog.Logger) (release func(), err error) {
	path := filepath.Join(dir, "proactived.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	start := time.Now()
	for logged := false; ; {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		waited := time.Since(start)
		if !errors.Is(err, syscall.EWOULDBLOCK) || waited > wait {
			break
		}
		// A killed predecessor is usually gone within milliseconds: say
		// nothing unless it takes longer.
		if !logged && waited > 250*time.Millisecond {
			holder, _ := os.ReadFile(path)
			log.Warn("the data dir is locked by another proactived; waiting for it to exit", "dir", dir, "pid", pidOf(holder), "for", wait.String())
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock data dir %s: %w", dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another proactived (pid %s); stop it first, or give this one its own --data", dir, pidOf(holder))
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

func pidOf(b []byte) string {
	if p := string(bytes.TrimSpace(b)); p != "" {
		return p
	}
	return "unknown"
}
