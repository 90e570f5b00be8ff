package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

// TestDeadlineWaitsForTheBacklog: orders are created while the daemon
// runs (their 6 s deadlines armed), then it stops; while it is down the
// orders are dispatched — behind 40,000 other events, well inside the
// deadline — and the deadlines pass. On start it drains that backlog over
// several ticks; a deadline may fire only once the events stored before
// it fell due are applied, so the dispatched orders get nothing and the
// ones never dispatched get their notification.
func TestDeadlineWaitsForTheBacklog(t *testing.T) {
	// The deadline is long enough for the dispatches to be stored inside
	// it on a loaded machine (CI runs every package at once, with -race).
	const dispatched, forgotten, filler, within = 20, 5, 40_000, 6 * time.Second
	bin := buildDaemon(t)
	ns := natstest.Run(t)
	sink := newKeySink(t)
	dir := t.TempDir()
	rules := rulesDir(t, map[string]string{"shop.yaml": strings.Replace(timerRules, "within: 2s", fmt.Sprintf("within: %s", within), 1)})
	cfgPath := filepath.Join(dir, "proactived.yaml")
	if err := os.WriteFile(cfgPath, []byte(robustConfig(sink.srv.URL, sink.srv.URL, 5, "200ms", "2s")), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	args := []string{"run", "--config", cfgPath, "--rules", rules, "--data", data,
		"--nats", ns.URL, "--http", "127.0.0.1:0", "--log-format", "json"}
	// The orders are created while the daemon runs: their deadlines are
	// armed. Then it stops.
	p := startProc(t, bin, filepath.Join(dir, "daemon-1.log"), args...)
	waitFor(t, 30*time.Second, func() error { return procReady(p) })
	var evs []genEvent
	for c := 0; c < 10; c++ {
		evs = append(evs, genEvent{Subject: "shop.customers.updated", ID: fmt.Sprintf("cust-%d", c),
			Body: fmt.Appendf(nil, `{"customer_id":"c-%04d","email":"c%d@example.com","channels":["email"]}`, c, c)})
	}
	expected := map[string]bool{}
	for i := 0; i < dispatched+forgotten; i++ {
		id := fmt.Sprintf("o-%04d", i)
		evs = append(evs, genEvent{Subject: "shop.orders.created", ID: "created-" + id,
			Body: fmt.Appendf(nil, `{"order_id":%q,"customer_id":"c-%04d","promised_at":"2026-11-22T18:00:00Z","status":"paid"}`, id, i%10)})
		if i >= dispatched {
			expected["not-dispatched/"+id] = true
		}
	}
	pub := newPublisher(t, ns.URL)
	armed := time.Now()
	if err := pub.run(context.Background(), evs, 0); err != nil {
		t.Fatal(err)
	}
	db := openStoreRO(t, filepath.Join(data, "proactived.db"))
	waitFor(t, 10*time.Second, func() error {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM timers WHERE rule = 'not-dispatched'`).Scan(&n); err != nil {
			return err
		}
		if n != dispatched+forgotten {
			return fmt.Errorf("%d deadlines armed, want %d", n, dispatched+forgotten)
		}
		return nil
	})
	if code := p.term(t); code != 0 {
		t.Fatalf("graceful stop exited %d\n%s", code, p.tail(20))
	}

	// While it is down: filler, then the dispatches, inside the deadline;
	// then the deadline passes.
	evs = evs[:0]
	for i := 0; i < filler; i++ {
		evs = append(evs, genEvent{Subject: "shop.customers.updated", ID: fmt.Sprintf("fill-%d", i),
			Body: fmt.Appendf(nil, `{"customer_id":"c-%04d","visits":%d}`, i%10, i)})
	}
	for i := 0; i < dispatched; i++ {
		id := fmt.Sprintf("o-%04d", i)
		evs = append(evs, genEvent{Subject: "shop.shipments.dispatched", ID: "dispatched-" + id, Body: fmt.Appendf(nil, `{"order_id":%q}`, id)})
	}
	if err := pub.run(context.Background(), evs, 0); err != nil {
		t.Fatal(err)
	}
	took := time.Since(armed)
	if took > within-time.Second {
		t.Fatalf("the dispatches were stored %s after the orders: they must be inside the %s deadline for this test to mean anything", took, within)
	}
	time.Sleep(time.Until(armed.Add(within + time.Second)))

	// Start again onto the backlog; wait until all of it is applied and a
	// few ticks passed.
	p = startProc(t, bin, filepath.Join(dir, "daemon-2.log"), args...)
	waitFor(t, 60*time.Second, func() error {
		if err := procReady(p); err != nil {
			return err
		}
		if n := missing(expected, sink); n > 0 {
			return fmt.Errorf("%d of %d undispatched orders not notified yet", n, len(expected))
		}
		return nil
	})
	time.Sleep(time.Second)
	var wrong []string
	for k, hits := range sink.snapshot() {
		if !expected[k] {
			wrong = append(wrong, fmt.Sprintf("%s (%d)", k, len(hits)))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d notifications for orders dispatched before their deadline (the dispatch waited in the backlog): %s",
			len(wrong), strings.Join(wrong, ", "))
	}
	if probs := checkDelivery(expected, sink).problems(0); len(probs) > 0 {
		t.Errorf("delivery:\n  %s", strings.Join(probs, "\n  "))
	}
	t.Logf("dispatches stored %s after the orders, behind %d events; %d deadlines passed while down; on start %d notifications, %d expected",
		took.Round(time.Millisecond), filler, dispatched+forgotten, len(sink.snapshot()), len(expected))
	if code := p.term(t); code != 0 {
		t.Errorf("graceful stop exited %d\n%s", code, p.tail(20))
	}
}
