package engine_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// busyBatch is a batch big enough not to count as a quiet stream (which
// folds at once): the orders given are created and each gets a late ETA.
func busyBatch(orders ...string) []streamEvent {
	var evs []streamEvent
	for _, o := range orders {
		evs = append(evs, streamEvent{subject: "orders.created", data: order(o, "c-1")},
			streamEvent{subject: "shipments.eta_updated", data: eta(o, "2026-11-22T12:00:00Z")})
	}
	return evs
}

// marks counts the dedup marks waiting in the log, and those folded into
// the dedup table whose key is LIKE pattern.
func (h *harness) marks(pattern string) (logged, folded int) {
	h.t.Helper()
	return h.count(`SELECT count(*) FROM dedup_log`), h.count(`SELECT count(*) FROM dedup WHERE key LIKE '` + pattern + `'`)
}

// keys are n keys prefix-0, prefix-1, …
func keys(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return ks
}

// foldConfig is baseConfig without the frequency cap, so every order of
// one customer is notified.
const foldConfig = `
channels:
  email: { type: log, address_field: email }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "21:00", end: "09:00" }
  frequency_cap: { max: 0 }
`

func (h *harness) count(q string) int {
	h.t.Helper()
	var n int
	if err := h.st.W.QueryRow(q).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// TestMarksNotFoldedYetStillDedup: a batch's dedup marks go to the log and
// wait in memory for the fold. A later batch that fails drops the engine's
// memos; a repeat after it must still be deduped by the marks waiting in
// memory, not notified twice.
func TestMarksNotFoldedYetStillDedup(t *testing.T) {
	h := newHarness(t, lateRule, foldConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	h.batch(busyBatch("o-1", "o-2", "o-3", "o-4")...)
	if log, marks := h.marks("o-%"); log != 4 || marks != 0 {
		t.Fatalf("%d marks in the log and %d folded after a busy batch, want 4 and 0 (not folded within the second)", log, marks)
	}
	// A failed batch: its marks are not kept, in the log or in memory.
	if _, err := h.st.W.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON dedup_log WHEN NEW.key LIKE 'o-boom/%' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	if err := h.emitBatch(busyBatch("o-5", "o-boom", "o-6", "o-7")...); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("batch error %v, want the injected failure", err)
	}
	if _, err := h.st.W.Exec(`DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	// The same ETAs again for o-1…o-4, and a new order: the four repeats
	// are deduped by the marks in memory (the table has none yet).
	h.batch(busyBatch("o-1", "o-2", "o-3", "o-4", "o-8")...)
	eq(t, "outbox", h.outboxStatuses(), []string{
		"o-1 2026-11-22 pending", "o-2 2026-11-22 pending", "o-3 2026-11-22 pending", "o-4 2026-11-22 pending", "o-8 2026-11-22 pending",
	})
	if got := h.reasons("deduped"); len(got) != 4 {
		t.Fatalf("deduped: %v, want the four repeats", got)
	}
	// The failed batch's orders notify when they come again.
	h.batch(busyBatch("o-5", "o-boom", "o-6", "o-7")...)
	if n := h.count(`SELECT count(*) FROM outbox`); n != 9 {
		t.Fatalf("%d notifications, want 9", n)
	}
}

// TestDedupLogFoldsOnceASecondAndAtStart: the log is folded into the
// dedup table, sorted, once a second of the engine's clock and at the
// next start (a stop leaves it as it is); the newest mark of a key wins.
func TestDedupLogFoldsOnceASecondAndAtStart(t *testing.T) {
	h := newHarness(t, lateRule, foldConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	h.batch(busyBatch("o-1", "o-2", "o-3", "o-4")...)
	h.clk.Advance(time.Second)
	h.batch(busyBatch("o-5", "o-6", "o-7", "o-8")...)
	if log, marks := h.marks("o-%"); log != 0 || marks != 8 {
		t.Fatalf("after a second: %d marks in the log, %d folded; want 0 and 8", log, marks)
	}
	h.batch(busyBatch("o-9", "o-10", "o-11", "o-12")...)
	// Two marks of one key in the log, the newer last: the fold keeps it.
	if _, err := h.st.W.Exec(`INSERT INTO dedup_log (rule, key, until, notification) VALUES
		('late', 'o-x/1', 100, 'older'), ('late', 'o-x/1', 200, 'newer'), ('late', 'o-1/2026-11-22T12:00:00Z', 300, 'n-latest')`); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if log, marks := h.marks("o-%"); log != 0 || marks != 13 {
		t.Fatalf("after a restart: %d marks in the log, %d folded; want 0 and 13", log, marks)
	}
	var notif string
	var until int64
	if err := h.st.W.QueryRow(`SELECT notification, until FROM dedup WHERE rule = 'late' AND key = 'o-x/1'`).Scan(&notif, &until); err != nil || notif != "newer" || until != 200 {
		t.Fatalf("folded mark %q %d (%v), want the newer one", notif, until, err)
	}
	if err := h.st.W.QueryRow(`SELECT notification FROM dedup WHERE rule = 'late' AND key = 'o-1/2026-11-22T12:00:00Z'`).Scan(&notif); err != nil || notif != "n-latest" {
		t.Fatalf("a logged mark did not replace the folded one: %q (%v)", notif, err)
	}
	// After the restart the repeats of o-9…o-12, logged before the stop,
	// are deduped.
	h.batch(busyBatch("o-9", "o-10", "o-11", "o-12")...)
	if n := h.count(`SELECT count(*) FROM outbox`); n != 12 {
		t.Fatalf("%d notifications after the restart, want 12", n)
	}
}

// TestFoldGoesOnOverBatches: a log longer than one chunk is folded over
// the next batches, oldest marks first, and every mark dedups throughout:
// from memory until its chunk is folded, from the table after; a big
// batch folds more at once.
func TestFoldGoesOnOverBatches(t *testing.T) {
	h := newHarness(t, lateRule, foldConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	const n = 2500 // more than one chunk (foldChunk, 2048)
	orders := keys("o", n)
	h.batch(busyBatch(orders...)...)
	h.clk.Advance(time.Second)
	h.batch(busyBatch("x-1", "x-2")...)
	if log, marks := h.marks("o-%"); log != n+2-2048 || marks != 2048 {
		t.Fatalf("after the first fold: %d marks in the log, %d folded; want %d and 2048", log, marks, n+2-2048)
	}
	// The repeats of every order are deduped, whether their mark is folded
	// or waits in memory; this batch folds the rest.
	h.batch(busyBatch(orders...)...)
	if log, marks := h.marks("%"); log != 0 || marks != n+2 {
		t.Fatalf("after the second fold: %d marks in the log, %d folded; want 0 and %d", log, marks, n+2)
	}
	if got := len(h.reasons("deduped")); got != n {
		t.Fatalf("%d repeats deduped, want %d", got, n)
	}
	// Folded and forgotten in memory: the table alone dedups them now.
	h.batch(busyBatch(orders[:10]...)...)
	if got, want := h.count(`SELECT count(*) FROM outbox`), n+2; got != want {
		t.Fatalf("%d notifications, want %d", got, want)
	}
	// A big batch (a backlog's) folds up to four marks an event at once:
	// the log that waited and its own marks.
	orders = keys("p", n)
	h.batch(busyBatch(orders[:600]...)...)
	h.clk.Advance(time.Second)
	h.batch(busyBatch(orders[600:]...)...)
	if log, marks := h.marks("p-%"); log != 0 || marks != n {
		t.Fatalf("after a big batch: %d marks in the log, %d folded; want 0 and %d", log, marks, n)
	}
}
