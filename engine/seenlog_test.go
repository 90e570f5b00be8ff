package engine_test

import (
	"strings"
	"testing"
	"time"
)

// idBatch is busyBatch with a producer's event id on every event:
// evt-<order>-c and evt-<order>-e.
func idBatch(orders ...string) []streamEvent {
	evs := busyBatch(orders...)
	for i := range evs {
		suffix := "-c"
		if i%2 == 1 {
			suffix = "-e"
		}
		evs[i].id = "evt-" + evs[i].data["order_id"].(string) + suffix
	}
	return evs
}

// ids counts the event ids waiting in the log, and those folded into
// seen_ids.
func (h *harness) ids() (logged, folded int) {
	h.t.Helper()
	return h.count(`SELECT count(*) FROM seen_log`), h.count(`SELECT count(*) FROM seen_ids`)
}

// TestEventIDsLoggedThenFolded: a producer's event ids are appended to
// seen_log with their batch and folded into seen_ids once a second of the
// engine's clock. A repeat of an id (a producer's retry, new sequence) has
// no second effect whether its id waits in the log or was folded; the ids
// of a batch that failed are not remembered, so its events count when
// they come again.
func TestEventIDsLoggedThenFolded(t *testing.T) {
	h := newHarness(t, lateRule, foldConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	h.batch(idBatch("o-1", "o-2", "o-3", "o-4")...)
	if logged, folded := h.ids(); logged != 8 || folded != 0 {
		t.Fatalf("%d ids in the log and %d folded after a busy batch, want 8 and 0 (not folded within the second)", logged, folded)
	}
	// Repeats while the ids wait in the log: nothing happens again.
	h.batch(idBatch("o-1", "o-2", "o-3", "o-4")...)
	if n := h.count(`SELECT count(*) FROM outbox`); n != 4 {
		t.Fatalf("%d notifications after the repeats, want 4", n)
	}
	// A failed batch: its ids are not kept, in the log or in memory.
	if _, err := h.st.W.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON seen_log WHEN NEW.eid LIKE 'evt-o-boom%' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	if err := h.emitBatch(idBatch("o-5", "o-boom")...); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("batch error %v, want the injected failure", err)
	}
	if _, err := h.st.W.Exec(`DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	h.batch(idBatch("o-5", "o-boom")...)
	if n := h.count(`SELECT count(*) FROM outbox`); n != 6 {
		t.Fatalf("%d notifications after the failed batch came again, want 6", n)
	}
	// A second later the next batch folds the log.
	h.clk.Advance(time.Second)
	h.batch(idBatch("o-6")...)
	if logged, folded := h.ids(); logged != 0 || folded != 14 {
		t.Fatalf("after a second: %d ids in the log, %d folded; want 0 and 14", logged, folded)
	}
	// Repeats of folded ids: seen_ids answers.
	h.batch(idBatch("o-1", "o-boom", "o-6")...)
	if n := h.count(`SELECT count(*) FROM outbox`); n != 7 {
		t.Fatalf("%d notifications after repeats of folded ids, want 7", n)
	}
	var seq int64
	if err := h.st.W.QueryRow(`SELECT seq FROM seen_ids WHERE id = 'evt-o-1-e'`).Scan(&seq); err != nil || seq != 2 {
		t.Fatalf("evt-o-1-e kept with sequence %d (%v), want 2: the first it came with", seq, err)
	}
}

// TestEventIDsFoldedAtStart: a stop leaves the log as it is; the next
// start folds it, and the ids logged before the stop still have no
// second effect.
func TestEventIDsFoldedAtStart(t *testing.T) {
	h := newHarness(t, lateRule, foldConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	h.batch(idBatch("o-1", "o-2", "o-3")...)
	h.restart()
	if logged, folded := h.ids(); logged != 0 || folded != 6 {
		t.Fatalf("after a restart: %d ids in the log, %d folded; want 0 and 6", logged, folded)
	}
	h.batch(idBatch("o-1", "o-2", "o-3", "o-4")...)
	if n := h.count(`SELECT count(*) FROM outbox`); n != 4 {
		t.Fatalf("%d notifications, want 4: the three repeats have no effect", n)
	}
}
