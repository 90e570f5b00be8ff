package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

// lossRun is the in-process daemon over a robust workload, for the tests in
// which the broker loses what the daemon consumes from.
type lossRun struct {
	t    *testing.T
	ctx  context.Context
	e    *env
	sink *keySink
	w    *workload
	pub  *publisher
	half int
}

func newLossRun(t *testing.T, natsURL string, orders, customers int) *lossRun {
	t.Helper()
	sink := newKeySink(t)
	e := startRobust(t, natsURL, robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"))
	w := genWorkload(orders, customers, seedFromEnv(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &lossRun{t: t, ctx: ctx, e: e, sink: sink, w: w, pub: newPublisher(t, natsURL), half: len(w.events) / 2}
}

// firstHalf publishes the first half of the workload and waits until the
// engine has committed it: the daemon is then idle.
func (r *lossRun) firstHalf() {
	r.t.Helper()
	if err := r.pub.run(r.ctx, r.w.events[:r.half], 0); err != nil {
		r.t.Fatalf("publish: %v", err)
	}
	waitFor(r.t, 30*time.Second, func() error {
		if got := r.e.d.Engine().LastSeq(); got != uint64(r.half) {
			return fmt.Errorf("engine at %d of %d", got, r.half)
		}
		return nil
	})
}

// secondHalf publishes the rest; the publisher retries until a stream
// takes its events.
func (r *lossRun) secondHalf() {
	r.t.Helper()
	if err := r.pub.run(r.ctx, r.w.events[r.half:], 0); err != nil {
		r.t.Fatalf("publish the second half: %v", err)
	}
}

// allDelivered waits until every expected notification arrived and the
// daemon is ready, checks every order's state, and fails on anything
// missing, unexpected or repeated. It logs what with the counts.
func (r *lossRun) allDelivered(what string) {
	r.t.Helper()
	waitFor(r.t, 60*time.Second, func() error {
		if n := missing(r.w.expected, r.sink); n > 0 {
			return fmt.Errorf("%d of %d expected notifications missing; engine at %d", n, len(r.w.expected), r.e.d.Engine().LastSeq())
		}
		return nil
	})
	waitFor(r.t, 10*time.Second, func() error { return r.e.d.Ready(r.ctx) })
	checkStates(r.t, r.e, r.w)
	d := checkDelivery(r.w.expected, r.sink)
	r.t.Logf("RESULT %s: %d events, %d expected, %d requests, %d duplicates, %d consumer recreations logged",
		what, len(r.w.events), len(r.w.expected), d.requests, d.duplicates, strings.Count(r.e.logs.String(), "the consumer is gone"))
	if probs := d.problems(-1); len(probs) > 0 {
		r.t.Errorf("delivery (%s):\n  %s", what, strings.Join(probs, "\n  "))
	}
}

// jsClient is a JetStream client of the test's own, an operator's.
func jsClient(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestConsumerDeletedMidStream: the durable consumer disappears while
// events flow (an operator's `nats consumer rm`, a broker that lost its
// consumer state). The daemon must notice, consume again from its
// committed position and lose nothing.
func TestConsumerDeletedMidStream(t *testing.T) {
	ns := natstest.Run(t)
	r := newLossRun(t, ns.URL, 2000, 100)
	pubDone := make(chan error, 1)
	go func() { pubDone <- r.pub.run(r.ctx, r.w.events, 1500) }()
	js := jsClient(t, ns.URL)
	for i := 0; i < 3; i++ {
		time.Sleep(700 * time.Millisecond)
		if err := js.DeleteConsumer(r.ctx, "PROACTIVE_EVENTS", "proactived"); err != nil {
			t.Fatalf("delete consumer: %v", err)
		}
		t.Logf("consumer deleted: published %d/%d, engine at %d", r.pub.published.Load(), len(r.w.events), r.e.d.Engine().LastSeq())
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	r.allDelivered("consumer deleted 3 times")
	if n := strings.Count(r.e.logs.String(), "the consumer is gone"); n < 3 {
		t.Errorf("the consumer was recreated %d times after 3 deletions", n)
	}
}

// TestStreamDeletedAndRecreated: an operator deletes the whole stream
// (`nats stream rm`) while the daemon is idle. The daemon creates it again,
// notices that its positions start over, and consumes what producers
// publish next: nothing published after the deletion is lost.
func TestStreamDeletedAndRecreated(t *testing.T) {
	ns := natstest.Run(t)
	r := newLossRun(t, ns.URL, 1000, 50)
	r.firstHalf()
	if err := jsClient(t, ns.URL).DeleteStream(r.ctx, "PROACTIVE_EVENTS"); err != nil {
		t.Fatal(err)
	}
	r.secondHalf()
	r.allDelivered("stream deleted after the first half")
	if got, want := r.e.d.Engine().LastSeq(), uint64(len(r.w.events)-r.half); got != want {
		t.Errorf("engine at %d on the new stream, want %d", got, want)
	}
	if !strings.Contains(r.e.logs.String(), "created stream") {
		t.Errorf("the daemon did not create the stream again")
	}
}

// TestBrokerRestartsWithoutItsState: the external broker is killed and
// comes back without what it knew — its consumer state lost, or its whole
// store (a new disk, a memory-only server). The broker then only answers
// "no responders"; the daemon must find out that its consumer (and
// stream) are gone, create them again, and consume what producers publish
// next without losing any of it.
func TestBrokerRestartsWithoutItsState(t *testing.T) {
	for _, tc := range []struct {
		name string
		lost func(storeDir string) string // the state the broker loses
	}{
		{"consumer state lost", func(dir string) string {
			return filepath.Join(dir, "jetstream", "$G", "streams", "PROACTIVE_EVENTS", "obs")
		}},
		{"whole store lost", func(dir string) string { return filepath.Join(dir, "jetstream") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newNATSProc(t)
			b.start(t)
			r := newLossRun(t, b.url(), 1000, 50)
			r.firstHalf()
			b.kill(t)
			lost := tc.lost(b.storeDir)
			if _, err := os.Stat(lost); err != nil {
				t.Fatalf("the broker's state is not where the test looks: %v", err)
			}
			if err := os.RemoveAll(lost); err != nil {
				t.Fatal(err)
			}
			b.start(t)
			r.secondHalf()
			r.allDelivered("broker back without " + filepath.Base(lost))
		})
	}
}
