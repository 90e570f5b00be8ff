package tests

import (
	"fmt"
	"testing"
	"time"
)

// TestOneDaemonPerDataDir: a second daemon on a data directory in use
// (a manual run beside the service, a supervisor starting a new process
// before the old one is gone) would recreate the first's consumer and send
// its outbox too. It refuses to start and names the holder; the first goes
// on serving; once the first is killed, the directory is free at once (the
// kernel drops the lock with the process).
func TestOneDaemonPerDataDir(t *testing.T) {
	b := newBinSetup(t)
	b.broker.start(t)
	first := b.start(t)
	waitFor(t, 30*time.Second, func() error { return procReady(first) })

	exitsWith(t, b.start(t), fmt.Sprintf("is in use by another proactived (pid %d)", first.cmd.Process.Pid))
	if err := procReady(first); err != nil {
		t.Errorf("first daemon after the second was refused: %v", err)
	}

	first.kill(t)
	third := b.start(t)
	waitFor(t, 30*time.Second, func() error { return procReady(third) })
	if code := third.term(t); code != 0 {
		t.Errorf("graceful stop exited %d\n%s", code, third.tail(20))
	}
}
