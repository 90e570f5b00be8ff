//go:build unix

package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockData takes the data directory for this process: two daemons on one
// directory would each recreate the other's consumer and send each
// other's outbox. The lock is the kernel's (flock), so a killed daemon
// leaves none behind; the file keeps the holder's pid for the error.
func lockData(dir string) (release func(), err error) {
	path := filepath.Join(dir, "proactived.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
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
