package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRecoveredChannelGetsItsRetriesAtOnce: with a ten-minute backoff,
// notifications that failed while the webhook was down are delivered
// within seconds of its return. The dispatcher counts the channel as down
// after failures of several notifications, tries one waiting
// notification every `policy.retry.probe` (one at a time, not the whole
// queue), and at the first success makes the others due at once.
func TestRecoveredChannelGetsItsRetriesAtOnce(t *testing.T) {
	const probe = 300 * time.Millisecond
	primary, fallback := newKeySink(t), newKeySink(t)
	cfg := robustConfig(primary.srv.URL, fallback.srv.URL, 8, "10m", "1h")
	cfg = strings.Replace(cfg, "max_backoff: 1h, timeout: 2s }", "max_backoff: 1h, timeout: 2s, probe: 300ms }", 1)
	if !strings.Contains(cfg, "probe: 300ms") {
		t.Fatalf("config lacks the probe:\n%s", cfg)
	}
	e := startRobust(t, "", cfg)
	pub := newPublisher(t, e.cfg.NATS.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const customers, orders = 10, 20
	if err := pub.run(ctx, genWorkload(0, customers, 1).events, 0); err != nil {
		t.Fatal(err)
	}
	primary.mode.Store(sinkDown)
	down := time.Now()
	created, eta, expected := lateOrders("p", orders, customers)
	for _, b := range [][]genEvent{created, eta} {
		if err := pub.run(ctx, b, 0); err != nil {
			t.Fatal(err)
		}
	}
	db := e.d.Store().R
	waitFor(t, 30*time.Second, func() error {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM outbox WHERE status = 'retry' AND attempts >= 1`).Scan(&n); err != nil {
			return err
		}
		if n != orders {
			return fmt.Errorf("%d of %d notifications failed once and wait to retry", n, orders)
		}
		return nil
	})
	// Down for a while longer: probes, one at a time.
	waitFor(t, 5*time.Second, func() error { return channelDownIs(e, "email", 1) })
	time.Sleep(time.Until(down.Add(3 * time.Second)))
	primary.mode.Store(sinkUp)
	up := time.Now()
	var whileDown int
	if err := db.QueryRow(`SELECT count(*) FROM attempts WHERE ok = 0`).Scan(&whileDown); err != nil {
		t.Fatal(err)
	}
	// First attempts, plus at most one probe per interval (and one in
	// flight as the sink came up).
	if most := orders + int(up.Sub(down)/probe) + 2; whileDown > most {
		t.Errorf("%d failed attempts in %s of outage, want at most %d: probes must go one at a time", whileDown, up.Sub(down).Round(time.Millisecond), most)
	}
	if whileDown <= orders {
		t.Errorf("%d failed attempts in %s of outage: the down channel was never probed", whileDown, up.Sub(down).Round(time.Millisecond))
	}

	// Delivered within seconds, though each waits a 10-minute backoff.
	waitFor(t, 15*time.Second, func() error {
		if n := missing(expected, primary); n > 0 {
			return fmt.Errorf("%d of %d notifications still missing %s after the channel came back", n, orders, time.Since(up).Round(time.Millisecond))
		}
		return nil
	})
	waitFor(t, 5*time.Second, func() error { return channelDownIs(e, "email", 0) })
	t.Logf("all %d delivered %s after the channel came back (backoff 10m, probe %s, %d failed attempts while down)",
		orders, time.Since(up).Round(time.Millisecond), probe, whileDown)
	if probs := checkDelivery(expected, primary, fallback).problems(-1); len(probs) > 0 {
		t.Errorf("delivery:\n  %s", strings.Join(probs, "\n  "))
	}
	for k := range expected {
		if got := fallback.snapshot()[k]; len(got) > 0 {
			t.Errorf("%s went to the fallback channel: %v", k, got)
		}
	}
}

// channelDownIs checks proactived_channel_down{channel} on /metrics (the
// series appears only once the channel was first found down).
func channelDownIs(e *env, channel string, want int) error {
	line := fmt.Sprintf(`proactived_channel_down{channel=%q} %d`, channel, want)
	if !strings.Contains(e.scrape()+"\n", line+"\n") {
		return fmt.Errorf("/metrics lacks %q", line)
	}
	return nil
}
