package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

type scripted struct {
	mu    sync.Mutex
	calls []string // idempotency keys seen
	plan  []error  // per call; nil = ok
	retry bool
	panic bool
}

func (s *scripted) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.panic {
		panic("plugin bug")
	}
	s.calls = append(s.calls, n.IdempotencyKey+"@"+n.Channel+":"+n.To.Address)
	if len(s.plan) == 0 {
		return false, nil
	}
	err := s.plan[0]
	s.plan = s.plan[1:]
	return s.retry, err
}

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func setup(t *testing.T, chans map[string]notifiers.Notifier) (*store.Store, *clock.Virtual, *Dispatcher) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "o.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewVirtual(t0)
	d := New(Options{Store: st, Clock: clk, Channels: chans,
		Retry: Retry{Attempts: 3, Backoff: time.Minute, MaxBackoff: 3 * time.Minute, Timeout: time.Second}})
	return st, clk, d
}

func enqueue(t *testing.T, st *store.Store, id string, cands ...policy.Candidate) {
	t.Helper()
	c, _ := json.Marshal(cands)
	doc, _ := json.Marshal(notifiers.Notification{ID: id, IdempotencyKey: "r/" + id, Rule: "r"})
	_, err := st.W.Exec(`INSERT INTO outbox (id, idem_key, rule, etype, ekey, customer, priority, status, candidates, next_at, doc, created_at, updated_at)
		VALUES (?, ?, 'r', 'order', ?, 'c-1', 1, 'pending', ?, ?, ?, ?, ?)`, id, "r/"+id, id, c, store.Millis(t0), doc, store.Millis(t0), store.Millis(t0))
	if err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, st *store.Store, id string) (string, int, int) {
	t.Helper()
	var s string
	var hop, attempts int
	if err := st.W.QueryRow(`SELECT status, hop, attempts FROM outbox WHERE id = ?`, id).Scan(&s, &hop, &attempts); err != nil {
		t.Fatal(err)
	}
	return s, hop, attempts
}

func TestRetryBackoffThenFallbackThenFail(t *testing.T) {
	down := errors.New("503 from gateway")
	sms := &scripted{plan: []error{down, down, down}, retry: true}
	email := &scripted{plan: []error{errors.New("550 no such mailbox")}}
	st, clk, d := setup(t, map[string]notifiers.Notifier{"sms": sms, "email": email})
	enqueue(t, st, "n1", policy.Candidate{Channel: "sms", Address: "+1"}, policy.Candidate{Channel: "email", Address: "a@x"})
	ctx := context.Background()

	// Attempt 1 now; attempt 2 after 1m; attempt 3 after 2m more (backoff
	// doubles). A moment before each backoff ends nothing is sent.
	for i, backoff := range []time.Duration{0, time.Minute, 2 * time.Minute} {
		if backoff > 0 {
			clk.Advance(backoff - time.Second)
			if n, _ := d.RunOnce(ctx); n != 0 {
				t.Fatalf("attempt %d sent before its backoff ended", i+1)
			}
			clk.Advance(time.Second)
		}
		if n, _ := d.RunOnce(ctx); n != 1 {
			t.Fatalf("attempt %d: %d rows sent", i+1, n)
		}
	}
	if s, hop, _ := status(t, st, "n1"); s != "pending" || hop != 1 {
		t.Fatalf("after 3 failed sms attempts: %s hop %d, want pending on hop 1", s, hop)
	}
	if n, _ := d.RunOnce(ctx); n != 1 {
		t.Fatal("fallback not sent at once")
	}
	if s, _, attempts := status(t, st, "n1"); s != "failed" || attempts != 1 {
		t.Fatalf("after a permanent email failure: %s (%d attempts), want failed", s, attempts)
	}
	if len(sms.calls) != 3 || sms.calls[0] != "r/n1@sms:+1" || email.calls[0] != "r/n1@email:a@x" {
		t.Fatalf("calls sms %v email %v", sms.calls, email.calls)
	}
	var attempts int
	_ = st.W.QueryRow(`SELECT count(*) FROM attempts WHERE notification = 'n1'`).Scan(&attempts)
	if attempts != 4 {
		t.Fatalf("%d attempts recorded, want 4", attempts)
	}
	var verdicts []string
	rows, _ := st.W.Query(`SELECT verdict FROM decisions ORDER BY id`)
	for rows.Next() {
		var v string
		_ = rows.Scan(&v)
		verdicts = append(verdicts, v)
	}
	rows.Close()
	if len(verdicts) != 2 || verdicts[0] != "fallback" || verdicts[1] != "failed" {
		t.Fatalf("verdicts %v", verdicts)
	}
}

// A crash between the send and recording it: the row stays "sending"
// with a lease; after the lease it is sent again with the same key.
func TestLeaseRecoversACrashedSend(t *testing.T) {
	ch := &scripted{}
	st, clk, d := setup(t, map[string]notifiers.Notifier{"email": ch})
	enqueue(t, st, "n1", policy.Candidate{Channel: "email", Address: "a@x"})
	ctx := context.Background()
	rows, err := d.claim(ctx) // claimed, then the process "dies"
	if err != nil || len(rows) != 1 {
		t.Fatalf("claim: %v %d", err, len(rows))
	}
	_ = d.send(ctx, rows[0], 0)
	if n, _ := d.RunOnce(ctx); n != 0 {
		t.Fatal("a leased row was sent again before its lease ended")
	}
	clk.Advance(5 * time.Second)
	if n, _ := d.RunOnce(ctx); n != 1 {
		t.Fatal("row not recovered after the lease")
	}
	if s, _, _ := status(t, st, "n1"); s != "sent" {
		t.Fatalf("status %s", s)
	}
	if len(ch.calls) != 2 || ch.calls[0] != ch.calls[1] {
		t.Fatalf("resend must carry the same idempotency key: %v", ch.calls)
	}
}

func TestPanickingChannelDoesNotKillTheDispatcher(t *testing.T) {
	st, _, d := setup(t, map[string]notifiers.Notifier{"email": &scripted{panic: true}})
	enqueue(t, st, "n1", policy.Candidate{Channel: "email"})
	if _, err := d.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := status(t, st, "n1"); s != "failed" {
		t.Fatalf("status %s, want failed", s)
	}
}

func TestBackoffIsExponentialAndCapped(t *testing.T) {
	d := New(Options{Retry: Retry{Attempts: 9, Backoff: 30 * time.Second, MaxBackoff: time.Hour}})
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := d.Backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	j := New(Options{Retry: Retry{Backoff: time.Minute, MaxBackoff: time.Hour}, Jitter: 0.5})
	for i := 0; i < 100; i++ {
		if b := j.Backoff(1); b < 30*time.Second || b > time.Minute {
			t.Fatalf("jittered backoff %s outside [30s, 1m]", b)
		}
	}
}
