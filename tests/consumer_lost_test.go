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

// TestConsumerDeletedMidStream: the durable consumer disappears while
// events flow (an operator's `nats consumer rm`, a broker that lost its
// consumer state). The daemon must notice, consume again from its
// committed position and lose nothing.
func TestConsumerDeletedMidStream(t *testing.T) {
	ns := natstest.Run(t)
	sink := newKeySink(t)
	e := startRobust(t, ns.URL, robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"))
	w := genWorkload(2000, 100, seedFromEnv(t))
	pub := newPublisher(t, ns.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.run(ctx, w.events, 1500) }()

	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		time.Sleep(700 * time.Millisecond)
		if err := js.DeleteConsumer(ctx, "PROACTIVE_EVENTS", "proactived"); err != nil {
			t.Fatalf("delete consumer: %v", err)
		}
		t.Logf("consumer deleted: published %d/%d, engine at %d", pub.published.Load(), len(w.events), e.d.Engine().LastSeq())
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	waitFor(t, 60*time.Second, func() error {
		if n := missing(w.expected, sink); n > 0 {
			return fmt.Errorf("%d of %d expected notifications missing; engine at %d of %d events", n, len(w.expected), e.d.Engine().LastSeq(), len(w.events))
		}
		return nil
	})
	waitFor(t, 10*time.Second, func() error { return e.d.Ready(ctx) })
	checkStates(t, e, w)
	d := checkDelivery(w.expected, sink)
	t.Logf("RESULT consumer deleted 3 times: %d events, %d expected, %d requests, %d duplicates, %d recreations logged",
		len(w.events), len(w.expected), d.requests, d.duplicates, strings.Count(e.logs.String(), "the consumer is gone"))
	if probs := d.problems(-1); len(probs) > 0 {
		t.Errorf("delivery across deleted consumers:\n  %s", strings.Join(probs, "\n  "))
	}
}

// TestStreamDeletedAndRecreated: an operator deletes the whole stream
// (`nats stream rm`) while the daemon is idle. The daemon creates it again,
// notices that its positions start over, and consumes what producers
// publish next: nothing published after the deletion is lost.
func TestStreamDeletedAndRecreated(t *testing.T) {
	ns := natstest.Run(t)
	sink := newKeySink(t)
	e := startRobust(t, ns.URL, robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"))
	w := genWorkload(1000, 50, seedFromEnv(t))
	half := len(w.events) / 2
	pub := newPublisher(t, ns.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pub.run(ctx, w.events[:half], 0); err != nil {
		t.Fatalf("publish: %v", err)
	}
	waitFor(t, 30*time.Second, func() error {
		if got := e.d.Engine().LastSeq(); got != uint64(half) {
			return fmt.Errorf("engine at %d of %d", got, half)
		}
		return nil
	})

	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "PROACTIVE_EVENTS"); err != nil {
		t.Fatal(err)
	}
	// The producer retries until a stream takes its events: the daemon's.
	if err := pub.run(ctx, w.events[half:], 0); err != nil {
		t.Fatalf("publish after the deletion: %v", err)
	}
	waitFor(t, 60*time.Second, func() error {
		if n := missing(w.expected, sink); n > 0 {
			return fmt.Errorf("%d of %d expected notifications missing; engine at %d", n, len(w.expected), e.d.Engine().LastSeq())
		}
		return nil
	})
	waitFor(t, 10*time.Second, func() error { return e.d.Ready(ctx) })
	if got := e.d.Engine().LastSeq(); got != uint64(len(w.events)-half) {
		t.Errorf("engine at %d on the new stream, want %d", got, len(w.events)-half)
	}
	if !strings.Contains(e.logs.String(), "created stream") {
		t.Errorf("the daemon did not create the stream again")
	}
	checkStates(t, e, w)
	d := checkDelivery(w.expected, sink)
	t.Logf("RESULT stream deleted: %d events (%d after the deletion), %d expected, %d requests, %d duplicates",
		len(w.events), len(w.events)-half, len(w.expected), d.requests, d.duplicates)
	if probs := d.problems(-1); len(probs) > 0 {
		t.Errorf("delivery across a deleted stream:\n  %s", strings.Join(probs, "\n  "))
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
		lose func(storeDir string) string // removes state, returns what
	}{
		{"consumer state lost", func(dir string) string {
			return filepath.Join(dir, "jetstream", "$G", "streams", "PROACTIVE_EVENTS", "obs")
		}},
		{"whole store lost", func(dir string) string { return filepath.Join(dir, "jetstream") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newNATSProc(t)
			b.start(t)
			sink := newKeySink(t)
			e := startRobust(t, b.url(), robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"))
			w := genWorkload(1000, 50, seedFromEnv(t))
			half := len(w.events) / 2
			pub := newPublisher(t, b.url())
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := pub.run(ctx, w.events[:half], 0); err != nil {
				t.Fatalf("publish: %v", err)
			}
			waitFor(t, 30*time.Second, func() error {
				if got := e.d.Engine().LastSeq(); got != uint64(half) {
					return fmt.Errorf("engine at %d of %d", got, half)
				}
				return nil
			})
			b.kill(t)
			lost := tc.lose(b.storeDir)
			if _, err := os.Stat(lost); err != nil {
				t.Fatalf("the broker's state is not where the test looks: %v", err)
			}
			if err := os.RemoveAll(lost); err != nil {
				t.Fatal(err)
			}
			b.start(t)
			if err := pub.run(ctx, w.events[half:], 0); err != nil {
				t.Fatalf("publish after the restart: %v", err)
			}
			waitFor(t, 60*time.Second, func() error {
				if n := missing(w.expected, sink); n > 0 {
					return fmt.Errorf("%d of %d expected notifications missing; engine at %d", n, len(w.expected), e.d.Engine().LastSeq())
				}
				return nil
			})
			waitFor(t, 10*time.Second, func() error { return e.d.Ready(ctx) })
			checkStates(t, e, w)
			d := checkDelivery(w.expected, sink)
			t.Logf("RESULT broker back without %s: %d events (%d after), %d expected, %d requests, %d duplicates",
				filepath.Base(lost), len(w.events), len(w.events)-half, len(w.expected), d.requests, d.duplicates)
			if probs := d.problems(-1); len(probs) > 0 {
				t.Errorf("delivery across the broker's lost state:\n  %s", strings.Join(probs, "\n  "))
			}
		})
	}
}
