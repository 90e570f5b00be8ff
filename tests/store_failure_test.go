package tests

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/daemon"
)

// TestStoreFailure makes SQLite refuse writes: another connection holds an
// EXCLUSIVE lock several times longer than the writer's busy timeout (cut
// from 10 s to 1 s to keep the test short), taken while notifications are
// being sent and held while more events arrive. Events
// are not acked, /readyz answers 503, the intake retries the batch with
// backoff and the dispatcher retries recording what it sent; once the lock
// is gone everything is delivered exactly once and the stream is acked.
func TestStoreFailure(t *testing.T) {
	const busy, hold = time.Second, 6 * time.Second
	sink := newKeySink(t)
	sink.delay.Store(int64(300 * time.Millisecond)) // sends are in flight when the lock comes
	e := startRobust(t, "", robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"),
		func(o *daemon.Options) { o.StoreBusyTimeout = busy })
	readyURL := "http://" + e.d.HTTPAddr() + "/readyz"
	pub := newPublisher(t, e.cfg.NATS.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(batches ...[]genEvent) {
		t.Helper()
		for _, b := range batches {
			if err := pub.run(ctx, b, 0); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
	}
	const customers = 10
	publish(genWorkload(0, customers, 1).events)
	expected := map[string]bool{}
	wave := func(name string, n int) {
		created, eta, exp := lateOrders(name, n, customers)
		publish(created, eta)
		for k := range exp {
			expected[k] = true
		}
	}
	wave("warm", 10)
	waitFor(t, 30*time.Second, func() error {
		if n := missing(expected, sink); n > 0 {
			return fmt.Errorf("%d warm-up notifications missing", n)
		}
		return nil
	})

	js, err := jetstream.New(pub.js.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ackFloor := func() (acked, last uint64) {
		t.Helper()
		c, err := js.Consumer(ctx, e.cfg.NATS.Stream, e.cfg.NATS.Consumer)
		if err != nil {
			t.Fatalf("consumer: %v", err)
		}
		ci, err := c.Info(ctx)
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		s, err := js.Stream(ctx, e.cfg.NATS.Stream)
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		si, err := s.Info(ctx)
		if err != nil {
			t.Fatalf("stream info: %v", err)
		}
		return ci.AckFloor.Stream, si.State.LastSeq
	}

	// A second connection takes the write lock while the sink holds a send.
	wave("sending", 30)
	waitFor(t, 30*time.Second, func() error {
		if sink.inflight.Load() == 0 {
			return fmt.Errorf("no send in flight")
		}
		return nil
	})
	locker, err := sql.Open("sqlite3", "file:"+e.d.Store().Path+"?_busy_timeout=30000")
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatalf("lock the store: %v", err)
	}
	locked := time.Now()
	rw := watchReady(readyURL)
	delivered, _ := sink.counts()
	t.Logf("store locked with %d sends in flight, %d delivered so far", sink.inflight.Load(), delivered)

	// Events keep coming while the store refuses writes.
	wave("locked", 30)
	waitFor(t, hold, func() error {
		if !rw.saw(503, locked) {
			return fmt.Errorf("readyz %d", rw.last())
		}
		return nil
	})
	notReadyAfter := time.Since(locked)
	time.Sleep(time.Until(locked.Add(hold))) // the failure window itself
	acked, last := ackFloor()
	if acked >= last {
		t.Errorf("stream acked up to %d of %d while the store refused writes", acked, last)
	}
	if missing(expected, sink) == 0 {
		t.Errorf("every notification was delivered although the store refused writes")
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatalf("unlock the store: %v", err)
	}
	unlocked := time.Now()
	t.Logf("store unlocked after %s; stream acked up to %d of %d meanwhile", unlocked.Sub(locked).Round(100*time.Millisecond), acked, last)

	waitFor(t, 30*time.Second, func() error {
		if !rw.saw(200, unlocked) {
			return fmt.Errorf("readyz %d since the store is writable", rw.last())
		}
		return nil
	})
	readyAfter := time.Since(unlocked)
	wave("after", 10)
	waitFor(t, 60*time.Second, func() error {
		if n := missing(expected, sink); n > 0 {
			return fmt.Errorf("%d of %d notifications missing", n, len(expected))
		}
		st, err := outboxStatus(ctx, e.d.Store().R)
		if err != nil {
			return err
		}
		if n := waiting(st); n > 0 {
			return fmt.Errorf("%d outbox rows waiting: %v", n, st)
		}
		if acked, last := ackFloor(); acked != last {
			return fmt.Errorf("stream acked up to %d of %d", acked, last)
		}
		return nil
	})
	changes := rw.close()
	d := checkDelivery(expected, sink)
	logs := e.logs.String()
	intakeRetries := strings.Count(logs, "commit failed; retrying the batch")
	recordRetries := strings.Count(logs, "could not record delivery outcomes; retrying")
	// A batch refused mid-way drops the entity state waiting in memory
	// (write-back) and merges it again from the stream before the retry;
	// refused at BEGIN (this lock) nothing in memory changed, so nothing
	// needs rebuilding (engine: TestRollbackRebuildsFromTheStream).
	rebuilds := strings.Count(logs, "rebuilt entity state from the stream")
	t.Logf("RESULT store failure: locked %s; readyz 503 after %s, 200 again %s after unlock (%s); intake batch retries %d (state rebuilt from the stream %d times), outcome-record retries %d; %d expected, %d requests, %d duplicates",
		unlocked.Sub(locked).Round(100*time.Millisecond), notReadyAfter.Round(100*time.Millisecond), readyAfter.Round(100*time.Millisecond),
		describe(changes, locked), intakeRetries, rebuilds, recordRetries, len(expected), d.requests, d.duplicates)
	if intakeRetries == 0 {
		t.Errorf("the intake never retried a refused batch")
	}
	if recordRetries == 0 {
		t.Errorf("the dispatcher never retried recording what it sent while the store refused writes")
	}
	if probs := d.problems(-1); len(probs) > 0 {
		t.Errorf("delivery across a store failure:\n  %s", strings.Join(probs, "\n  "))
	}
	if _, last = ackFloor(); e.d.Engine().LastSeq() != last {
		t.Errorf("engine committed up to %d, stream ends at %d", e.d.Engine().LastSeq(), last)
	}
}
