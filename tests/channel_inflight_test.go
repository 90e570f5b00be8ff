package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestChannelMaxInFlight: a webhook that takes 30 ms to answer gets
// several sends at once by default (so its latency does not cap the
// rate), and one at a time with `max_in_flight: 1` — the setting for a
// receiver that records a request before answering it, where a SIGKILL
// repeats every send in flight.
func TestChannelMaxInFlight(t *testing.T) {
	for _, c := range []struct {
		name     string
		option   string
		min, max int32
	}{
		{"default", "", 2, 16},
		{"max_in_flight 1", ", max_in_flight: 1", 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			sink := newKeySink(t)
			sink.delay.Store(int64(30 * time.Millisecond))
			cfg := robustConfig(sink.srv.URL, sink.srv.URL, 8, "1s", "2s")
			cfg = strings.Replace(cfg, "address_field: email, timeout: 2s }", "address_field: email, timeout: 2s"+c.option+" }", 1)
			if c.option != "" && !strings.Contains(cfg, c.option) {
				t.Fatalf("config lacks %q:\n%s", c.option, cfg)
			}
			e := startRobust(t, "", cfg)
			pub := newPublisher(t, e.cfg.NATS.URL)
			ctx := context.Background()
			if err := pub.run(ctx, genWorkload(0, 10, 1).events, 0); err != nil {
				t.Fatal(err)
			}
			const orders = 40
			created, eta, expected := lateOrders("f", orders, 10)
			if len(expected) != orders {
				t.Fatalf("%d expected notifications, want %d", len(expected), orders)
			}
			for _, b := range [][]genEvent{created, eta} {
				if err := pub.run(ctx, b, 0); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, time.Minute, func() error {
				if n := missing(expected, sink); n > 0 {
					return fmt.Errorf("%d of %d notifications not delivered", n, len(expected))
				}
				return nil
			})
			if m := sink.maxFlight.Load(); m < c.min || m > c.max {
				t.Errorf("%d requests at once at most, want %d..%d", m, c.min, c.max)
			}
			t.Logf("%s: at most %d requests at once", c.name, sink.maxFlight.Load())
		})
	}
}
