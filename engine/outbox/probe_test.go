package outbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/notifiers"
)

// switchable is a channel that is down (a retryable failure) while down
// is set, and refuses the notifications in refuse (retryably) whatever
// its state.
type switchable struct {
	mu     sync.Mutex
	down   bool
	refuse map[string]bool
	calls  []string // ids, in order
	ok     map[string]int
}

func (s *switchable) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, n.ID)
	if s.down || s.refuse[n.ID] {
		return true, errors.New("503 service unavailable")
	}
	if s.ok == nil {
		s.ok = map[string]int{}
	}
	s.ok[n.ID]++
	return false, nil
}

func (s *switchable) set(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *switchable) sends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func runAll(t *testing.T, d *Dispatcher) int {
	t.Helper()
	total := 0
	for {
		n, err := d.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

// TestDownChannelIsProbedThenItsRetriesGoAtOnce: four notifications fail on
// a channel that is down and wait a minute's backoff. The channel counts
// as down, so every 5 s one of them is tried; the first probe after the
// channel is back succeeds and the other three go at once, 55 s before
// their backoff would have let them.
func TestDownChannelIsProbedThenItsRetriesGoAtOnce(t *testing.T) {
	hook := &switchable{down: true}
	st, clk, d := setup(t, map[string]notifiers.Notifier{"webhook": hook})
	d.o.Probe = 5 * time.Second
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		enqueue(t, st, id, policy.Candidate{Channel: "webhook", Address: "https://example.com/hook"})
	}
	if n := runAll(t, d); n != 4 {
		t.Fatalf("first attempts: %d sent, want 4", n)
	}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if s, _, a := status(t, st, id); s != "retry" || a != 1 {
			t.Fatalf("%s after a failed attempt: %s (%d attempts), want retry (1)", id, s, a)
		}
	}
	// Before the probe interval, nothing; at it, one probe, which fails.
	clk.Advance(4 * time.Second)
	if n := runAll(t, d); n != 0 {
		t.Fatalf("%d sent 4 s after the failures, want 0 (probe every 5 s)", n)
	}
	clk.Advance(time.Second)
	if n := runAll(t, d); n != 1 {
		t.Fatalf("%d sent at the first probe, want exactly 1", n)
	}
	// The channel comes back; the next probe succeeds and the rest follow.
	hook.set(false)
	clk.Advance(5 * time.Second)
	if n := runAll(t, d); n != 4 {
		t.Fatalf("%d sent after the channel came back, want 4 (a probe, then the other three at once)", n)
	}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if s, _, _ := status(t, st, id); s != "sent" {
			t.Fatalf("%s is %s 10 s into a 1 m backoff, want sent", id, s)
		}
		if hook.ok[id] != 1 {
			t.Fatalf("%s delivered %d times, want once", id, hook.ok[id])
		}
	}
	if got := hook.sends(); got != 4+1+4 {
		t.Fatalf("%d sends in all, want 9 (4 failures, 1 failed probe, 4 deliveries)", got)
	}
}

// TestOneRefusedNotificationKeepsItsBackoff: a receiver that refuses one
// notification while it takes the others is not down, so the refused one
// is not probed: it waits its whole backoff.
func TestOneRefusedNotificationKeepsItsBackoff(t *testing.T) {
	hook := &switchable{refuse: map[string]bool{"n1": true}}
	st, clk, d := setup(t, map[string]notifiers.Notifier{"webhook": hook})
	d.o.Probe = 5 * time.Second
	enqueue(t, st, "n1", policy.Candidate{Channel: "webhook"})
	if n := runAll(t, d); n != 1 {
		t.Fatalf("%d sent, want 1", n)
	}
	for i, id := range []string{"n2", "n3", "n4", "n5"} {
		clk.Advance(10 * time.Second)
		enqueue(t, st, id, policy.Candidate{Channel: "webhook"})
		if n := runAll(t, d); n != 1 {
			t.Fatalf("round %d: %d sent, want only the new notification %s", i, n, id)
		}
	}
	if s, _, a := status(t, st, "n1"); s != "retry" || a != 1 {
		t.Fatalf("n1 after 40 s of a 1 m backoff: %s with %d attempts, want retry with 1", s, a)
	}
	clk.Advance(20 * time.Second)
	if n := runAll(t, d); n != 1 {
		t.Fatalf("%d sent when n1's backoff ended, want 1", n)
	}
}

// TestDownChannelIsProbedAfterARestart: a new dispatcher (a restart)
// finds three notifications waiting to retry on one channel, treats it as
// down and probes it at once.
func TestDownChannelIsProbedAfterARestart(t *testing.T) {
	hook := &switchable{down: true}
	st, clk, d := setup(t, map[string]notifiers.Notifier{"webhook": hook})
	for _, id := range []string{"n1", "n2", "n3"} {
		enqueue(t, st, id, policy.Candidate{Channel: "webhook"})
	}
	if n := runAll(t, d); n != 3 {
		t.Fatalf("%d sent, want 3", n)
	}
	hook.set(false)
	clk.Advance(time.Second)
	restarted := New(Options{Store: st, Clock: clk, Channels: map[string]notifiers.Notifier{"webhook": hook},
		Retry: d.o.Retry, Probe: 5 * time.Second})
	if n := runAll(t, restarted); n != 3 {
		t.Fatalf("%d sent after the restart, 1 s into a 1 m backoff, want 3 (a probe, then the other two)", n)
	}
	// Probes off: the same situation waits out the backoff.
	for _, id := range []string{"m1", "m2", "m3"} {
		enqueue(t, st, id, policy.Candidate{Channel: "webhook"})
	}
	hook.set(true)
	if n := runAll(t, restarted); n != 3 {
		t.Fatalf("%d sent, want 3", n)
	}
	hook.set(false)
	noProbe := New(Options{Store: st, Clock: clk, Channels: map[string]notifiers.Notifier{"webhook": hook}, Retry: d.o.Retry})
	clk.Advance(30 * time.Second)
	if n := runAll(t, noProbe); n != 0 {
		t.Fatalf("%d sent without probes 30 s into a 1 m backoff, want 0", n)
	}
}
