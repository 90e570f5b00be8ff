package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

// A crash between the sends and the record: the sends noted in the sent
// log are recorded as delivered on start, not sent again; the leased row
// whose send was not noted is due at once; a torn last line is ignored.
func TestRecoverFromSentLog(t *testing.T) {
	ch := &scripted{}
	st, clk, _ := setup(t, map[string]notifiers.Notifier{"email": ch})
	for _, id := range []string{"n1", "n2", "n3"} {
		enqueue(t, st, id, policy.Candidate{Channel: "email", Address: "a@example.com"})
	}
	// The crashed run: all three claimed with a long lease, n1 and n2 sent.
	lease := store.Millis(t0.Add(time.Hour))
	if _, err := st.W.Exec(`UPDATE outbox SET status = 'sending', next_at = ?`, lease); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "outbox-sent.log")
	l, left, err := openSentLog(logPath)
	if err != nil || len(left) != 0 {
		t.Fatalf("fresh log: %v %v", left, err)
	}
	// n1 from the batch whose outcomes were being recorded (generation 0),
	// n2 from the batch sent meanwhile (generation 1).
	for gen, id := range []string{"n1", "n2"} {
		if err := l.add(gen, sentEntry{ID: id, Channel: "email", Attempt: 1, At: store.Millis(t0), Millis: 3}); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"n3","chan`) // killed mid-write
	f.Close()

	d := New(Options{Store: st, Clock: clk, Channels: map[string]notifiers.Notifier{"email": ch},
		Retry: Retry{Attempts: 3, Backoff: time.Minute, Timeout: time.Second}, SentLog: logPath})
	ctx := context.Background()
	if err := d.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"n1": "sent", "n2": "sent", "n3": "sending"} {
		if s, _, _ := status(t, st, id); s != want {
			t.Errorf("%s: %s after recovery, want %s", id, s, want)
		}
	}
	var delivered int
	st.W.QueryRow(`SELECT count(*) FROM decisions WHERE verdict = 'delivered'`).Scan(&delivered)
	if delivered != 2 {
		t.Errorf("%d delivered decisions, want 2", delivered)
	}
	for _, p := range []string{logPath, logPath + ".1"} {
		if b, _ := os.ReadFile(p); len(b) != 0 {
			t.Errorf("sent log %s not emptied: %q", filepath.Base(p), b)
		}
	}
	// n3 is due now, not in an hour, and is the only one sent.
	if n, err := d.RunOnce(ctx); n != 1 || err != nil {
		t.Fatalf("RunOnce: %d %v", n, err)
	}
	if len(ch.calls) != 1 || ch.calls[0] != "r/n3@email:a@example.com" {
		t.Errorf("sent %v, want only n3", ch.calls)
	}
	if s, _, _ := status(t, st, "n3"); s != "sent" {
		t.Errorf("n3: %s", s)
	}
}

// slow answers after a delay and tracks how many sends overlap.
type slow struct {
	delay         time.Duration
	inflight, max atomic.Int32
}

func (s *slow) Notify(ctx context.Context, _ *notifiers.Notification) (bool, error) {
	s.take(s.delay)
	return false, nil
}

// take counts one send in flight for d.
func (s *slow) take(d time.Duration) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		m := s.max.Load()
		if n <= m || s.max.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(d)
}

// A fast channel gets one send at a time (a crash can repeat at most one
// of its notifications); a slow one gets concurrent sends.
func TestLanePacesByLatency(t *testing.T) {
	for _, c := range []struct {
		delay   time.Duration
		atMost  int32
		atLeast int32
	}{{0, 1, 1}, {60 * time.Millisecond, 16, 4}} {
		ch := &slow{delay: c.delay}
		st, _, d := setup(t, map[string]notifiers.Notifier{"email": ch})
		for i := 0; i < 40; i++ {
			enqueue(t, st, string(rune('a'+i/26))+string(rune('a'+i%26)), policy.Candidate{Channel: "email"})
		}
		runAll(t, d)
		if m := ch.max.Load(); m > c.atMost || m < c.atLeast {
			t.Errorf("channel answering in %s: %d concurrent sends, want %d..%d", c.delay, m, c.atLeast, c.atMost)
		}
	}
}

// A channel's max_in_flight caps its concurrent sends whatever its
// latency: 1 for a channel that answers in 60 ms (four or more without).
func TestLaneMaxInFlight(t *testing.T) {
	ch := &slow{delay: 60 * time.Millisecond}
	st, _, d := setup(t, map[string]notifiers.Notifier{"email": ch})
	d.o.MaxInFlight = map[string]int{"email": 1}
	for i := 0; i < 12; i++ {
		enqueue(t, st, string(rune('a'+i)), policy.Candidate{Channel: "email"})
	}
	runAll(t, d)
	if m := ch.max.Load(); m != 1 {
		t.Errorf("max_in_flight 1: %d concurrent sends", m)
	}
}

// jittery answers at once, except every third send, which takes 30 ms:
// a fast channel seen from a loaded machine, where a send's time also
// holds the waits for a processor.
type jittery struct {
	slow
	n atomic.Int32
}

func (j *jittery) Notify(context.Context, *notifiers.Notification) (bool, error) {
	var d time.Duration
	if j.n.Add(1)%3 == 0 {
		d = 30 * time.Millisecond
	}
	j.take(d)
	return false, nil
}

// A fast channel whose sends are sometimes slowed by this process's own
// load stays at one send at a time: with the average of its times as its
// latency (10 ms here) it got three at once, and a SIGKILL could repeat
// three notifications.
func TestLaneIgnoresOccasionalSlowSends(t *testing.T) {
	ch := &jittery{}
	st, _, d := setup(t, map[string]notifiers.Notifier{"email": ch})
	for i := 0; i < 60; i++ {
		enqueue(t, st, string(rune('a'+i/26))+string(rune('a'+i%26)), policy.Candidate{Channel: "email"})
	}
	runAll(t, d)
	if got := ch.n.Load(); got != 60 {
		t.Fatalf("%d sends, want 60", got)
	}
	if m := ch.max.Load(); m != 1 {
		t.Errorf("%d concurrent sends to a channel that answers at once, want 1", m)
	}
}

// counting accepts every notification, counts them per idempotency key,
// and calls stop after the stopAt-th.
type counting struct {
	mu     sync.Mutex
	keys   map[string]int
	n      int
	stopAt int
	stop   func()
}

func (c *counting) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[n.IdempotencyKey]++
	c.n++
	if c.n == c.stopAt {
		c.stop()
	}
	return false, nil
}

// Stopping Run in the middle of a backlog — one batch sent, the one before
// it being recorded, the next claimed — ends it without sending the rest,
// and a new dispatcher on the same store and sent log sends every
// notification that was not delivered, and none twice.
func TestStopMidBacklogThenRestartSendsEachOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := &counting{keys: map[string]int{}, stopAt: 700, stop: cancel}
	st, clk, _ := setup(t, nil)
	const total = 2000
	for i := 0; i < total; i++ {
		enqueue(t, st, fmt.Sprintf("n%04d", i), policy.Candidate{Channel: "email", Address: "a@example.com"})
	}
	logPath := filepath.Join(t.TempDir(), "outbox-sent.log")
	opts := Options{Store: st, Clock: clk, Channels: map[string]notifiers.Notifier{"email": ch}, Batch: 256,
		Retry: Retry{Attempts: 3, Backoff: time.Minute, Timeout: time.Second}, SentLog: logPath}
	New(opts).Run(ctx, time.Hour)
	if ch.n >= total {
		t.Fatalf("a stopped dispatcher sent the whole backlog (%d)", ch.n)
	}
	firstRun := ch.n

	// The restart: everything left is sent, nothing twice.
	ch.mu.Lock()
	ch.stopAt, ch.stop = total+1, func() {}
	ch.mu.Unlock()
	runUntil(t, New(opts), func() (bool, string) {
		var sent int
		if err := st.R.QueryRow(`SELECT count(*) FROM outbox WHERE status = 'sent'`).Scan(&sent); err != nil {
			t.Fatal(err)
		}
		return sent == total, fmt.Sprintf("%d of %d sent", sent, total)
	})
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for k, n := range ch.keys {
		if n != 1 {
			t.Errorf("%s sent %d times", k, n)
		}
	}
	if len(ch.keys) != total {
		t.Errorf("%d distinct notifications sent, want %d", len(ch.keys), total)
	}
	var attempts, delivered int
	_ = st.R.QueryRow(`SELECT count(*) FROM attempts`).Scan(&attempts)
	_ = st.R.QueryRow(`SELECT count(*) FROM decisions WHERE verdict = 'delivered'`).Scan(&delivered)
	if attempts != total || delivered != total {
		t.Errorf("%d attempts and %d delivered decisions recorded, want %d each", attempts, delivered, total)
	}
	t.Logf("first run sent %d of %d before it stopped", firstRun, total)
}

// In Run, a notification whose channel fails for good falls back to the
// next channel and is sent there at once — not held until the lease the
// claim gave it runs out (the virtual clock never moves here, so a row
// left leased would never be sent).
func TestRunSendsAFallbackAtOnce(t *testing.T) {
	sms := &scripted{plan: []error{errors.New("invalid number")}}
	email := &scripted{}
	st, clk, _ := setup(t, nil)
	enqueue(t, st, "n1", policy.Candidate{Channel: "sms", Address: "+1"}, policy.Candidate{Channel: "email", Address: "a@x"})
	d := New(Options{Store: st, Clock: clk, Channels: map[string]notifiers.Notifier{"sms": sms, "email": email},
		Retry: Retry{Attempts: 3, Backoff: time.Minute, Timeout: time.Second}})
	runUntil(t, d, func() (bool, string) {
		s, hop, _ := status(t, st, "n1")
		return s == "sent" && hop == 1, fmt.Sprintf("fallback not sent: status %s, hop %d", s, hop)
	})
	email.mu.Lock()
	defer email.mu.Unlock()
	if len(email.calls) != 1 || email.calls[0] != "r/n1@email:a@x" {
		t.Fatalf("email calls %v", email.calls)
	}
}

// runUntil runs d until done says the store reached what the test waits
// for, then stops it. It fails with done's description if Run ends first
// or 10 s of wall time pass (a bound for a stuck dispatcher, not a timing
// assertion: either case otherwise finishes in milliseconds).
func runUntil(t *testing.T, d *Dispatcher, done func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() { defer close(ended); d.Run(ctx, time.Millisecond) }()
	defer func() { cancel(); <-ended }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, what := done()
		if ok {
			return
		}
		select {
		case <-ended:
			t.Fatalf("the dispatcher ended: %s", what)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
	}
}
