package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/event"
)

// emitBatch processes events in one batch (one transaction), as the
// intake does with what arrived together; id "" is a stream-numbered id.
func (h *harness) emitBatch(evs ...streamEvent) error {
	h.t.Helper()
	ps := make([]*engine.Prepared, 0, len(evs))
	for _, e := range evs {
		h.seq++
		id, explicit := e.id, e.id != ""
		if !explicit {
			id = fmt.Sprint("seq-", h.seq)
		}
		ev := &event.Event{Subject: e.subject, ID: id, ExplicitID: explicit, Time: h.clk.Now(),
			Data: event.Normalize(copyMap(e.data)).(map[string]any), Seq: h.seq}
		p, rej := h.eng.Prepare(ev)
		if rej != nil {
			h.t.Fatalf("%s rejected: %v", e.subject, rej)
		}
		ps = append(ps, p)
	}
	return h.eng.HandleBatch(h.ctx, ps)
}

// batch is emitBatch for a batch that must commit.
func (h *harness) batch(evs ...streamEvent) {
	h.t.Helper()
	if err := h.emitBatch(evs...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) outboxStatuses() []string {
	h.t.Helper()
	rows, err := h.st.W.Query(`SELECT ekey, json_extract(doc, '$.vars.eta'), status FROM outbox ORDER BY 1, 2`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k, eta, st string
		if err := rows.Scan(&k, &eta, &st); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, k+" "+eta[:10]+" "+st)
	}
	return out
}

// TestABatchSeesItsOwnQueuedWrites: a batch's writes run on the pipe's
// goroutine while the engine evaluates the next events, so everything that
// reads must first wait for them: a later event of the same batch
// supersedes the notification an earlier one queued, and a producer's
// event id sent twice in one batch is processed once.
func TestABatchSeesItsOwnQueuedWrites(t *testing.T) {
	h := newHarness(t, lateRule, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	if err := h.emitBatch(
		streamEvent{subject: "orders.created", data: order("o-1", "c-1")},
		streamEvent{subject: "shipments.eta_updated", data: eta("o-1", "2026-11-22T12:00:00Z")},
		streamEvent{subject: "shipments.eta_updated", data: eta("o-1", "2026-11-23T12:00:00Z")},
		streamEvent{subject: "orders.created", data: order("o-2", "c-1")},
		streamEvent{id: "producer-1", subject: "shipments.eta_updated", data: eta("o-2", "2026-11-24T12:00:00Z")},
		streamEvent{id: "producer-1", subject: "shipments.eta_updated", data: eta("o-2", "2026-11-25T12:00:00Z")},
	); err != nil {
		t.Fatal(err)
	}
	eq(t, "outbox after one batch", h.outboxStatuses(), []string{
		"o-1 2026-11-22 superseded",
		"o-1 2026-11-23 pending",
		"o-2 2026-11-24 pending",
	})
	h.settle()
	if got := h.sentSummary(); len(got) != 2 {
		t.Fatalf("sent %v, want the o-1 ETA of the 23rd and the o-2 ETA of the 24th", got)
	}
}

// TestAFailedQueuedWriteRollsTheBatchBack: a write the pipe runs after
// the engine moved on fails the whole batch at commit — nothing of it is
// stored, the consumer position stays — and the same events commit once
// the store takes them.
func TestAFailedQueuedWriteRollsTheBatchBack(t *testing.T) {
	h := newHarness(t, lateRule, baseConfig)
	h.customer("c-1", map[string]any{"email": "a@x", "channels": []string{"email"}})
	if _, err := h.st.W.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON dedup_log WHEN NEW.key LIKE 'o-boom/%' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	batch := []streamEvent{
		{subject: "orders.created", data: order("o-1", "c-1")},
		{subject: "shipments.eta_updated", data: eta("o-1", "2026-11-22T12:00:00Z")},
		{subject: "orders.created", data: order("o-boom", "c-1")},
		{subject: "shipments.eta_updated", data: eta("o-boom", "2026-11-22T12:00:00Z")},
		{subject: "orders.created", data: order("o-3", "c-1")},
		{subject: "shipments.eta_updated", data: eta("o-3", "2026-11-22T12:00:00Z")},
	}
	before := h.eng.LastSeq()
	err := h.emitBatch(batch...)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("batch error %v, want the injected failure", err)
	}
	if got := h.outboxStatuses(); len(got) != 0 {
		t.Fatalf("outbox after the failed batch: %v, want nothing", got)
	}
	if got := h.verdicts(""); len(got) != 0 {
		t.Fatalf("decisions after the failed batch: %v, want none", got)
	}
	if h.eng.LastSeq() != before {
		t.Fatalf("consumer position moved to %d after a failed batch (was %d)", h.eng.LastSeq(), before)
	}
	if _, err := h.st.W.Exec(`DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	h.seq = before // the stream delivers the same events again
	rebuild(h, nil)
	h.batch(batch...)
	h.settle()
	if got := h.sentSummary(); len(got) != 3 {
		t.Fatalf("sent %v after the retry, want one notification per order", got)
	}
}

// TestPoliciesSeeTheirBatchsOwnWrites: inhibition (by a rule, by an open
// support contact and its closing) and the frequency cap read what earlier
// events of the same batch queued; the outcome is the one of the same
// events in batches of their own (TestInhibitionByRuleAndOpenContact,
// TestFrequencyCapPreemptsLowerPriority).
func TestPoliciesSeeTheirBatchsOwnWrites(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	noQuiet(h)
	for _, c := range []string{"c-1", "c-2", "c-3"} {
		h.customer(c, map[string]any{"email": c + "@x"})
	}
	evs := []streamEvent{
		{subject: "orders.created", data: order("o-1", "c-1")},
		{subject: "orders.created", data: order("o-2", "c-2")},
		{subject: "orders.cancelled", data: map[string]any{"order_id": "o-1"}},
		{subject: "shipments.eta_updated", data: eta("o-1", "2026-11-22T12:00:00Z")}, // inhibited by cancelled
		{subject: "support.contacts", data: map[string]any{"customer": "c-2", "entity": map[string]any{"type": "order", "key": "o-2"}, "topic": "order_status", "status": "opened", "channel": "phone"}},
		{subject: "shipments.eta_updated", data: eta("o-2", "2026-11-22T12:00:00Z")}, // inhibited: open contact
		{subject: "support.contacts", data: map[string]any{"customer": "c-2", "entity": map[string]any{"type": "order", "key": "o-2"}, "status": "closed"}},
		{subject: "shipments.eta_updated", data: eta("o-2", "2026-11-23T12:00:00Z")}, // contact closed: goes
	}
	// c-3: five orders, a budget of 3 per 24h across them.
	for i := 0; i < 5; i++ {
		evs = append(evs, streamEvent{subject: "orders.created", data: order(fmt.Sprintf("o-3%d", i), "c-3")})
	}
	for i := 0; i < 4; i++ {
		evs = append(evs, streamEvent{subject: "orders.promo", data: map[string]any{"order_id": fmt.Sprintf("o-3%d", i), "n": i}})
	}
	h.batch(evs...)
	h.settle()
	eq(t, "sent", h.sentSummary(), []string{"cancelled o-1 email +0s", "late o-2 email +0s", "promo o-30 email +0s", "promo o-31 email +0s", "promo o-32 email +0s"})
	inh := h.reasons("inhibited")
	if len(inh) != 2 || !strings.Contains(inh[0], "inhibited by rule cancelled") || !strings.Contains(inh[1], "open support contact") {
		t.Fatalf("inhibited reasons %q", inh)
	}
	if capped := h.reasons("capped"); len(capped) != 1 || !strings.Contains(capped[0], "budget 3 per 24h0m0s spent") {
		t.Fatalf("capped reasons %q", capped)
	}
}
