package engine_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/store"
)

// streamEvent is an event as the stream keeps it, for a rebuild.
type streamEvent struct {
	seq     uint64
	id      string
	subject string
	data    map[string]any
	at      time.Time
}

// rebuild feeds the engine the stream's events as the intake would after
// a restart, and ends the rebuild.
func rebuild(h *harness, stream []streamEvent) {
	h.t.Helper()
	feed(h, stream)
	if err := h.eng.RebuildDone(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// feed hands the engine retained events to merge again, without ending the
// rebuild (as when the broker goes away half-way).
func feed(h *harness, stream []streamEvent) {
	h.t.Helper()
	for _, ev := range stream {
		body, err := json.Marshal(ev.data)
		if err != nil {
			h.t.Fatal(err)
		}
		raw := event.Raw{Subject: ev.subject, Body: body, Seq: ev.seq, Time: ev.at, MsgID: ev.id}
		if err := h.eng.Rebuild(h.ctx, raw); err != nil {
			h.t.Fatal(err)
		}
	}
}

// holdJournal makes the journal file unwritable — another connection
// holds its write lock — until release; the journal's writer gives up a
// write after 20 ms and retries.
func holdJournal(h *harness) (release func()) {
	h.t.Helper()
	if err := h.st.Journal.SetBusyTimeout(h.ctx, 20*time.Millisecond); err != nil {
		h.t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+store.JournalPath(h.st.Path))
	if err != nil {
		h.t.Fatal(err)
	}
	conn, err := db.Conn(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := conn.ExecContext(h.ctx, `BEGIN IMMEDIATE`); err != nil {
		h.t.Fatal(err)
	}
	return func() {
		if _, err := conn.ExecContext(h.ctx, `ROLLBACK`); err != nil {
			h.t.Fatal(err)
		}
		conn.Close()
		db.Close()
	}
}

// TestRebuildAfterCrashRestoresStateAndJournal: entity state waits in
// memory (write-back) and journal rows wait for the journal file's writer
// while decisions and the outbox are committed; a crash loses them;
// re-merging the retained events from the stored positions brings back
// the same state, with each event in the journal once — including a
// producer retry (same id, new sequence) that was skipped the first time,
// and after a rebuild the broker cut off half-way and the intake began
// again from the start of its range.
func TestRebuildAfterCrashRestoresStateAndJournal(t *testing.T) {
	h := newHarness(t, lateRule, baseConfig+"intake: { state_flush: 1h, batch: 1 }\n")
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	// The journal's writer cannot write until the crash: its rows are lost
	// with the process.
	release := holdJournal(h)
	var stream []streamEvent
	emit := func(id, subject string, data map[string]any) {
		h.seq++
		stream = append(stream, streamEvent{seq: h.seq, id: id, subject: subject, data: copyMap(data), at: h.clk.Now()})
		h.emitSeq(h.seq, id, subject, data)
	}
	emit("", "orders.created", order("o-1", "c-1"))
	emit("", "orders.created", order("o-2", "c-1"))
	emit("", "shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	emit("evt-7", "shipments.eta_updated", map[string]any{"order_id": "o-2", "eta": "2026-11-20T12:00:00Z", "carrier": "dhl"})
	// The producer retries evt-7 with other data: skipped as a repeat.
	emit("evt-7", "shipments.eta_updated", map[string]any{"order_id": "o-2", "eta": "2026-12-24T12:00:00Z", "carrier": "ups"})
	emit("", "orders.updated", map[string]any{"order_id": "o-1", "status": "in_transit"})

	want := map[string]map[string]any{}
	for _, k := range []string{"o-1", "o-2"} {
		st, err := h.eng.Entity(h.ctx, "order", k)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = st
	}
	if want["o-2"]["carrier"] != "dhl" {
		t.Fatalf("the retried event was merged: %v", want["o-2"])
	}
	sentBefore := len(h.sent())
	var stored int
	if err := h.st.R.QueryRow(`SELECT count(*) FROM entities WHERE type = 'order'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Fatalf("%d orders written before state_flush elapsed; the test needs them in memory only", stored)
	}

	for deadline := time.Now().Add(10 * time.Second); h.st.Journal.Err() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the journal's writer reports no failure with its file locked")
		}
	}
	if err := h.st.Ping(h.ctx); err == nil {
		t.Error("readiness ignores a journal that cannot be written")
	}
	// A crash: nothing in memory was written (Close's last journal write
	// fails on the lock too).
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	release()
	h.open()
	if d := h.st.Journal.Durable(); d != 0 {
		t.Fatalf("journal position %d after the crash, want 0 (nothing written)", d)
	}
	from, to := h.eng.RebuildRange()
	if from != 0 || to != uint64(len(stream)) {
		t.Fatalf("rebuild range (%d, %d], want (0, %d]", from, to, len(stream))
	}
	// The broker goes away after four events: the intake tries again from
	// the start of the range it was given.
	feed(h, stream[:4])
	if f, tt := h.eng.RebuildRange(); f != from || tt != to {
		t.Fatalf("rebuild range (%d, %d] after a cut-off rebuild, want (%d, %d] still", f, tt, from, to)
	}
	rebuild(h, stream)
	if from, to := h.eng.RebuildRange(); from != to {
		t.Fatalf("rebuild still pending: (%d, %d]", from, to)
	}
	for k, w := range want {
		var raw []byte
		if err := h.st.R.QueryRow(`SELECT state FROM entities WHERE type = 'order' AND key = ?`, k).Scan(&raw); err != nil {
			t.Fatalf("order %s not written after the rebuild: %v", k, err)
		}
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fmt.Sprint(got), fmt.Sprint(w)) {
			t.Errorf("order %s after rebuild = %v, want %v", k, got, w)
		}
	}
	if err := h.eng.Flush(h.ctx); err != nil {
		t.Fatal(err)
	}
	journal := map[string]int{}
	all, err := store.JournalAll(h.ctx, h.st.R)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		journal[r.Ekey]++
	}
	if want := map[string]int{"o-1": 3, "o-2": 2, "c-1": 0}; journal["o-1"] != want["o-1"] || journal["o-2"] != want["o-2"] {
		t.Errorf("journal rows per order = %v, want o-1: 3, o-2: 2", journal)
	}
	// The rebuild re-ran no rule: nothing new was sent.
	h.settle()
	if n := len(h.sent()); n != sentBefore {
		t.Errorf("%d notifications after the rebuild, want %d", n, sentBefore)
	}
	// And processing goes on from the rebuilt state.
	emit("", "shipments.eta_updated", eta("o-2", "2026-11-25T12:00:00Z"))
	if st, _ := h.eng.Entity(h.ctx, "order", "o-2"); st["carrier"] != "dhl" || st["eta"] != "2026-11-25T12:00:00Z" {
		t.Errorf("o-2 after a new event: %v", st)
	}
}

// TestStateFlushWritesOnTheClock: with events stopped, state waits at most
// intake.state_flush in memory; state_flush: 0 writes with every batch.
func TestStateFlushWritesOnTheClock(t *testing.T) {
	count := func(h *harness) int {
		var n int
		if err := h.st.R.QueryRow(`SELECT count(*) FROM entities WHERE type = 'order'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	h := newHarness(t, lateRule, baseConfig+"intake: { state_flush: 2s, batch: 1 }\n")
	h.emit("orders.created", order("o-1", "c-1"))
	if n := count(h); n != 0 {
		t.Fatalf("%d orders written at once with state_flush 2s", n)
	}
	h.advance(3 * time.Second)
	if n := count(h); n != 1 {
		t.Fatalf("%d orders written 3s later, want 1", n)
	}

	h0 := newHarness(t, lateRule, baseConfig+"intake: { state_flush: 0s }\n")
	h0.emit("orders.created", order("o-1", "c-1"))
	if n := count(h0); n != 1 {
		t.Fatalf("%d orders written with state_flush 0, want 1", n)
	}
}

// TestRollbackRebuildsFromTheStream: a batch that fails half-way (here an
// outbox insert the store refuses) rolls back; the entity state that
// earlier, committed batches left in memory is dropped with the cache, so
// the engine asks for a rebuild from the stored positions, and after it
// the retried batch sees the right state.
func TestRollbackRebuildsFromTheStream(t *testing.T) {
	h := newHarness(t, lateRule, baseConfig+"intake: { state_flush: 1h, batch: 1 }\n")
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	var stream []streamEvent
	add := func(subject string, data map[string]any) streamEvent {
		h.seq++
		ev := streamEvent{seq: h.seq, subject: subject, data: copyMap(data), at: h.clk.Now()}
		stream = append(stream, ev)
		return ev
	}
	ev := add("orders.created", order("o-1", "c-1"))
	h.emitSeq(ev.seq, "", ev.subject, ev.data)
	ev = add("orders.updated", map[string]any{"order_id": "o-1", "status": "in_transit"})
	h.emitSeq(ev.seq, "", ev.subject, ev.data)
	if from, to := h.eng.RebuildRange(); from != to {
		t.Fatalf("rebuild pending before any failure: (%d, %d]", from, to)
	}

	// The store refuses the next outbox row: the late ETA's batch fails.
	if _, err := h.st.W.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	late := add("shipments.eta_updated", eta("o-1", "2026-11-23T12:00:00Z"))
	p, rej := h.eng.Prepare(&event.Event{Subject: late.subject, ID: fmt.Sprint("seq-", late.seq), Time: late.at,
		Data: event.Normalize(copyMap(late.data)).(map[string]any), Seq: late.seq})
	if rej != nil {
		t.Fatal(rej)
	}
	if err := h.eng.HandleBatch(h.ctx, []*engine.Prepared{p}); err == nil {
		t.Fatal("the batch committed although the store refused its outbox row")
	}
	from, to := h.eng.RebuildRange()
	if from != 0 || to != 2 {
		t.Fatalf("after the failed batch the rebuild range is (%d, %d], want (0, 2]", from, to)
	}
	if _, err := h.st.W.Exec(`DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	rebuild(h, stream[:2])
	// The retry (JetStream redelivers the same message) fires on the
	// rebuilt state: in transit, promised before the new ETA.
	h.emitSeq(late.seq, "", late.subject, late.data)
	if got := h.verdicts("late"); len(got) == 0 || got[0] != "late o-1 sent" {
		t.Fatalf("late verdicts after the retry: %v, want it sent", got)
	}
	if st, _ := h.eng.Entity(h.ctx, "order", "o-1"); st["status"] != "in_transit" || st["promised_at"] == nil {
		t.Fatalf("o-1 after rebuild and retry: %v", st)
	}
}

// TestFlushDoesNotWaitForAFailingJournal: the API flushes before it reads
// and a stop flushes before it exits; with the journal's file unwritable
// neither waits for it for good (readiness reports the journal), and the
// rows are written once the file is writable again.
func TestFlushDoesNotWaitForAFailingJournal(t *testing.T) {
	h := newHarness(t, lateRule, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	release := holdJournal(h)
	h.emit("orders.created", order("o-1", "c-1"))
	if err := h.eng.Flush(h.ctx); err != nil {
		t.Fatalf("flush with the journal failing: %v", err)
	}
	var n int
	if err := h.st.R.QueryRow(`SELECT count(*) FROM entities WHERE type = 'order'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("entity state not written by the flush (%d, %v)", n, err)
	}
	release()
	if err := h.eng.Flush(h.ctx); err != nil {
		t.Fatal(err)
	}
	if got, _, err := store.JournalEvents(h.ctx, h.st.R, "order", "o-1", 10); err != nil || len(got) != 1 {
		t.Fatalf("journal rows for o-1 after the file came back: %d (%v)", len(got), err)
	}
}

// TestQuietBatchWritesABoundedShare: a small batch after a wait means
// the stream is quiet, so it writes entity changes before they are due —
// but at most quietFlush (256) of them, so a quiet stream is written
// within a few batches without one batch holding up the events behind
// it. Small batches back to back (a steady stream) write none early.
func TestQuietBatchWritesABoundedShare(t *testing.T) {
	h := newHarness(t, lateRule, foldConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	orders := keys("o", 600)
	h.batch(busyBatch(orders...)...)
	written := func() int { return h.count(`SELECT count(*) FROM entities WHERE type = 'order'`) }
	if n := written(); n != 0 {
		t.Fatalf("%d orders written by a busy batch within the second, want 0", n)
	}
	// Small batches back to back are a steady stream, not a quiet one:
	// each would write entities the next events change again.
	for i := range 3 {
		h.batch(streamEvent{subject: "orders.created", data: order(orders[i], "c-1")})
	}
	if n := written(); n != 0 {
		t.Fatalf("%d orders written by small batches back to back, want 0", n)
	}
	for i, want := range []int{256, 512, 600} {
		h.advance(100 * time.Millisecond) // more than the engine's quietGap (50 ms), far less than state_flush
		h.batch(streamEvent{subject: "orders.created", data: order(orders[i], "c-1")})
		if n := written(); n != want {
			t.Fatalf("after quiet batch %d: %d orders written, want %d", i+1, n, want)
		}
	}
}
