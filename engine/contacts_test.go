package engine_test

import (
	"testing"
	"time"

	"github.com/proactived/proactived/engine/store"
)

// storedContact is one row of the contacts table.
type storedContact struct {
	at                                      time.Time
	customer, etype, ekey, topic, ch, state string
}

func (h *harness) contacts() []storedContact {
	h.t.Helper()
	rows, err := h.st.W.Query(`SELECT at, customer, etype, ekey, topic, channel, status FROM contacts ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []storedContact
	for rows.Next() {
		var c storedContact
		var at int64
		if err := rows.Scan(&at, &c.customer, &c.etype, &c.ekey, &c.topic, &c.ch, &c.state); err != nil {
			h.t.Fatal(err)
		}
		c.at = store.FromMillis(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func TestSupportContactEntityRefsAndTime(t *testing.T) {
	h := newHarness(t, policyRules, baseConfig)
	noQuiet(h)
	h.customer("c-1", map[string]any{"email": "c-1@x"})
	h.emit("orders.created", order("o-1", "c-1"))

	// The entity as a plain field that the order's key expression reads,
	// and the customer as customer_id; no time: the event's time.
	h.emit("support.contacts", map[string]any{"customer_id": "c-1", "order_id": "o-1", "topic": "order_status", "channel": "chat"})
	// An explicit ref and a helpdesk time in the past.
	h.advance(time.Hour)
	h.emit("support.contacts", map[string]any{"customer": "c-1", "entity": map[string]any{"type": "order", "key": "o-9"},
		"topic": "returns", "status": "closed", "time": "2026-11-20T10:30:00+01:00"})
	// No entity at all; a bad time falls back to the event time.
	h.emit("support.contacts", map[string]any{"customer": "c-1", "status": "resolved", "time": "yesterday"})

	got := h.contacts()
	want := []storedContact{
		{at: t0, customer: "c-1", etype: "order", ekey: "o-1", topic: "order_status", ch: "chat", state: "opened"},
		{at: time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC), customer: "c-1", etype: "order", ekey: "o-9", topic: "returns", state: "closed"},
		{at: t0.Add(time.Hour), customer: "c-1", state: "closed"},
	}
	if len(got) != len(want) {
		t.Fatalf("stored %d contacts, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !got[i].at.Equal(want[i].at) || got[i].customer != want[i].customer || got[i].etype != want[i].etype ||
			got[i].ekey != want[i].ekey || got[i].topic != want[i].topic || got[i].ch != want[i].ch || got[i].state != want[i].state {
			t.Errorf("contact %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}

	// The plain-field contact is linked to o-1, so it (and only it: the
	// entity-less contact is closed) inhibits o-1's notice.
	h.emit("shipments.eta_updated", eta("o-1", "2026-11-22T12:00:00Z"))
	if inh := h.reasons("inhibited"); len(inh) != 1 {
		t.Fatalf("want the late notice inhibited by the open contact, got inhibited reasons %q; sent %q", inh, h.sentSummary())
	}
}
