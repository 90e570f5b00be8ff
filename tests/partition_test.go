package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

// TestPartitionHoldsDeadlines: the daemon is cut off from a broker that
// stays up (a network partition), and producers go on publishing to it.
// While cut off the daemon cannot know what they published, so a deadline
// must not fire on the wall clock alone: the event that meets it may be
// waiting in the stream. Once the daemon is back and has caught up, the
// deadline that was met stays quiet and the one that was not fires.
func TestPartitionHoldsDeadlines(t *testing.T) {
	ns := natstest.Run(t)
	proxy := newTCPProxy(t, strings.TrimPrefix(ns.URL, "nats://"))
	sink := newKeySink(t)
	e := startRobustRules(t, "nats://"+proxy.ln.Addr().String(), robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"), timerRules)
	pub := newPublisher(t, ns.URL) // the producers' own way to the broker
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	publish := func(subject, id, body string) {
		t.Helper()
		if err := pub.publishRetry(ctx, genEvent{Subject: subject, ID: id, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	publish("shop.customers.updated", "cust-c-0001", `{"customer_id":"c-0001","email":"c-0001@example.com","locale":"en","channels":["email"]}`)
	for _, o := range []string{"o-met", "o-missed"} {
		publish("shop.orders.created", "created-"+o, fmt.Sprintf(`{"order_id":%q,"customer_id":"c-0001","promised_at":"2026-11-22T18:00:00Z","status":"paid"}`, o))
	}
	created := time.Now()
	waitFor(t, 10*time.Second, func() error {
		if got := e.d.Engine().LastSeq(); got != 3 {
			return fmt.Errorf("engine at %d of 3", got)
		}
		return nil
	})

	// The partition: the daemon's connection is cut and cannot come back.
	proxy.blocked.Store(true)
	proxy.cut(0)
	waitFor(t, 10*time.Second, func() error {
		if err := e.d.Ready(ctx); err == nil || !strings.Contains(err.Error(), "nats not connected") {
			return fmt.Errorf("readiness %v", err)
		}
		return nil
	})
	// o-met is dispatched within its 2 s; the daemon does not see it.
	publish("shop.shipments.dispatched", "dispatched-o-met", `{"order_id":"o-met"}`)
	if d := time.Since(created); d > 1500*time.Millisecond {
		t.Fatalf("the dispatch was published %s after the order, too late for the test's 2 s deadline", d)
	}
	time.Sleep(time.Until(created.Add(4 * time.Second))) // both deadlines pass on the wall clock
	if total, _ := sink.counts(); total != 0 {
		t.Fatalf("%d notifications sent while cut off from the stream: %v", total, sink.snapshot())
	}

	proxy.blocked.Store(false)
	waitFor(t, 30*time.Second, func() error {
		if got := e.d.Engine().LastSeq(); got != 4 {
			return fmt.Errorf("engine at %d of 4", got)
		}
		if n := missing(map[string]bool{"not-dispatched/o-missed": true}, sink); n > 0 {
			return fmt.Errorf("the missed deadline has not fired")
		}
		return nil
	})
	time.Sleep(time.Second) // a deadline that wrongly fires would do so now
	got := sink.snapshot()
	if len(got) != 1 || len(got["not-dispatched/o-missed"]) != 1 {
		t.Errorf("after the partition: %v, want only not-dispatched/o-missed, once", got)
	}
}

// TestSilentPartitionIsNoticed: the network between the daemon and the
// broker starts dropping everything without resetting the connection.
// The daemon must notice within seconds (its pings go unanswered), not
// after the client's default of minutes: readiness drops, and returns
// once the network does.
func TestSilentPartitionIsNoticed(t *testing.T) {
	ns := natstest.Run(t)
	proxy := newTCPProxy(t, strings.TrimPrefix(ns.URL, "nats://"))
	sink := newKeySink(t)
	e := startRobust(t, "nats://"+proxy.ln.Addr().String(), robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"))
	ctx := context.Background()

	proxy.dropping.Store(true) // what the server sends is lost; nothing is closed
	proxy.blocked.Store(true)  // and no new connection gets through
	began := time.Now()
	waitFor(t, 30*time.Second, func() error {
		if err := e.d.Ready(ctx); err == nil || !strings.Contains(err.Error(), "nats not connected") {
			return fmt.Errorf("readiness %v", err)
		}
		return nil
	})
	noticed := time.Since(began)
	t.Logf("silent partition noticed after %s", noticed.Round(100*time.Millisecond))
	if noticed > 20*time.Second {
		t.Errorf("a silent partition took %s to notice", noticed)
	}
	proxy.dropping.Store(false)
	proxy.blocked.Store(false)
	waitFor(t, 30*time.Second, func() error { return e.d.Ready(ctx) })
}
