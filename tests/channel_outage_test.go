package tests

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/daemon"
)

// depthSample is the outbox depth (rows waiting to be delivered) at one
// moment, from the store and from /metrics (-1: no metric).
type depthSample struct {
	at            time.Time
	store, metric int
}

// scrapeDepth reads proactived_outbox_depth from /metrics and returns the
// rows waiting (pending, retry, sending, deferred); ok is false when the
// daemon exposes no such metric.
func scrapeDepth(url string) (int, bool) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, false
	}
	st := map[string]int{}
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `proactived_outbox_depth{status="`)
		if !ok {
			continue
		}
		status, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		st[status] = int(f)
		found = true
	}
	return waiting(st), found
}

// TestChannelOutage takes the primary webhook down — 503 for the first
// half of the outage, dropped connections for the second — while
// notifications keep coming. Those created at the start exhaust their
// bounded attempts (with exponential backoff) and fall back to the
// customer's second channel; those created near the end are retried until
// the channel is back; all are delivered exactly once, and the outbox
// depth (store and /metrics) rises during the outage and drains after.
// PROACTIVED_LONG=1 makes the outage 60 s.
func TestChannelOutage(t *testing.T) {
	outage, attempts := 10*time.Second, 6
	if longRun() {
		outage, attempts = 60*time.Second, 25
	}
	const backoff, maxBackoff = 200 * time.Millisecond, 2 * time.Second
	primary, fallback := newKeySink(t), newKeySink(t)
	// Probes off: this test checks the gaps between one notification's
	// attempts against the backoff, and a probe of a down channel
	// (TestRecoveredChannelGetsItsRetriesAtOnce) may try it early.
	cfg := strings.Replace(robustConfig(primary.srv.URL, fallback.srv.URL, attempts, "200ms", "2s"),
		"max_backoff: 2s, timeout: 2s }", "max_backoff: 2s, timeout: 2s, probe: 0s }", 1)
	if !strings.Contains(cfg, "probe: 0s") {
		t.Fatalf("config lacks probe: 0s:\n%s", cfg)
	}
	e := startRobust(t, "", cfg,
		func(o *daemon.Options) { o.SampleEvery = 100 * time.Millisecond })
	pub := newPublisher(t, e.cfg.NATS.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(batches ...[]genEvent) {
		t.Helper()
		for _, b := range batches {
			if err := pub.run(ctx, b, 0); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
	}
	const customers = 20
	publish(genWorkload(0, customers, 1).events) // customers only: email first, then sms
	expected := map[string]bool{}
	wave := func(name string, n int) map[string]bool {
		created, eta, exp := lateOrders(name, n, customers)
		publish(created, eta)
		for k := range exp {
			expected[k] = true
		}
		return exp
	}
	warm := wave("warm", 20)
	waitFor(t, 30*time.Second, func() error {
		if n := missing(warm, primary); n > 0 {
			return fmt.Errorf("%d warm-up notifications missing", n)
		}
		return nil
	})

	// Sample the depth through the whole outage and recovery.
	metricsURL := "http://" + e.d.HTTPAddr() + "/metrics"
	var (
		mu      sync.Mutex
		samples []depthSample
	)
	sampleStop, sampleDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampleDone)
		for {
			s := depthSample{at: time.Now(), store: -1, metric: -1}
			if st, err := outboxStatus(ctx, e.d.Store().R); err == nil {
				s.store = waiting(st)
			}
			if n, ok := scrapeDepth(metricsURL); ok {
				s.metric = n
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			select {
			case <-sampleStop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// The outage: elapsed time is the scenario, so these waits sleep.
	down := time.Now()
	primary.mode.Store(sinkDown)
	waveA := wave("a", 60)
	time.Sleep(time.Until(down.Add(outage / 2)))
	primary.mode.Store(sinkDrop)
	time.Sleep(time.Until(down.Add(outage - 2500*time.Millisecond)))
	waveB := wave("b", 60)
	time.Sleep(time.Until(down.Add(outage)))
	primary.mode.Store(sinkUp)
	up := time.Now()
	waveC := wave("c", 60)
	t.Logf("outage %s: primary answered 503 %d times and dropped %d connections", up.Sub(down).Round(100*time.Millisecond),
		primary.answered503.Load(), primary.dropped.Load())

	waitFor(t, 2*time.Minute, func() error {
		if n := missing(expected, primary, fallback); n > 0 {
			return fmt.Errorf("%d of %d notifications missing", n, len(expected))
		}
		st, err := outboxStatus(ctx, e.d.Store().R)
		if err != nil {
			return err
		}
		if n := waiting(st); n > 0 {
			return fmt.Errorf("%d outbox rows waiting: %v", n, st)
		}
		return nil
	})
	drained := time.Now()
	// The metric is sampled: wait for it to read the drained outbox too.
	metricFinal := -1
	if _, ok := scrapeDepth(metricsURL); ok {
		waitFor(t, 10*time.Second, func() error {
			n, _ := scrapeDepth(metricsURL)
			if metricFinal = n; n != 0 {
				return fmt.Errorf("proactived_outbox_depth still says %d waiting", n)
			}
			return nil
		})
	}
	close(sampleStop)
	<-sampleDone

	// Delivered exactly once each, on the expected channel.
	d := checkDelivery(expected, primary, fallback)
	if probs := d.problems(-1); len(probs) > 0 {
		t.Errorf("delivery across the outage:\n  %s", strings.Join(probs, "\n  "))
	}
	onPrimary, onFallback := primary.snapshot(), fallback.snapshot()
	for name, set := range map[string]map[string]bool{"warm": warm, "b": waveB, "c": waveC} {
		for k := range set {
			if len(onFallback[k]) > 0 || len(onPrimary[k]) != 1 || onPrimary[k][0].Path != "/email" {
				t.Errorf("wave %s: %s went to primary %v, fallback %v; want primary /email once", name, k, onPrimary[k], onFallback[k])
			}
		}
	}
	for k := range waveA {
		if len(onPrimary[k]) > 0 || len(onFallback[k]) != 1 || onFallback[k][0].Path != "/sms" {
			t.Errorf("wave a: %s went to primary %v, fallback %v; want the sms fallback once", k, onPrimary[k], onFallback[k])
		}
	}
	if primary.answered503.Load() == 0 || primary.dropped.Load() == 0 {
		t.Errorf("the outage did not exercise both failure modes: %d 503s, %d dropped", primary.answered503.Load(), primary.dropped.Load())
	}

	// Bounded attempts with exponential backoff, then fallback.
	db := e.d.Store().R
	var maxAttempt, fallbacks, retriedB int
	if err := db.QueryRow(`SELECT max(attempt) FROM attempts`).Scan(&maxAttempt); err != nil || maxAttempt > attempts {
		t.Errorf("max attempt %d (%v), the cap is %d", maxAttempt, err, attempts)
	}
	if err := db.QueryRow(`SELECT count(*) FROM decisions WHERE verdict = 'fallback' AND ekey LIKE 'a-%'`).Scan(&fallbacks); err != nil || fallbacks != len(waveA) {
		t.Errorf("%d fallback decisions for wave a (%v), want %d", fallbacks, err, len(waveA))
	}
	if err := db.QueryRow(`SELECT count(*) FROM outbox WHERE ekey LIKE 'b-%' AND status = 'sent' AND hop = 0 AND attempts > 1`).Scan(&retriedB); err != nil || retriedB != len(waveB) {
		t.Errorf("%d wave b notifications delivered on email after retries (%v), want %d", retriedB, err, len(waveB))
	}
	rows, err := db.Query(`SELECT a.at FROM attempts a JOIN outbox o ON o.id = a.notification
		WHERE o.ekey = 'a-0000' AND a.channel = 'email' ORDER BY a.attempt`)
	if err != nil {
		t.Fatal(err)
	}
	var ats []int64
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			t.Fatal(err)
		}
		ats = append(ats, at)
	}
	rows.Close()
	if len(ats) != attempts {
		t.Errorf("a-0000 had %d attempts on email, want %d", len(ats), attempts)
	}
	var gaps []string
	for i := 1; i < len(ats); i++ {
		gap := time.Duration(ats[i]-ats[i-1]) * time.Millisecond
		want := min(backoff<<(i-1), maxBackoff)
		gaps = append(gaps, gap.String())
		if gap < want*8/10-5*time.Millisecond { // jitter takes up to 20% off
			t.Errorf("a-0000: attempt %d came %s after the previous one; the backoff is %s", i+1, gap, want)
		}
	}

	// The depth wave: it rose to at least the first wave during the
	// outage and was back at zero after.
	mu.Lock()
	defer mu.Unlock()
	maxStore, maxMetric := 0, -1
	var timeline []string
	lastSec := -1
	for _, s := range samples {
		if s.at.Before(up) {
			maxStore = max(maxStore, s.store)
			maxMetric = max(maxMetric, s.metric)
		}
		if sec := int(s.at.Sub(down).Seconds()); sec != lastSec {
			lastSec = sec
			timeline = append(timeline, fmt.Sprintf("%+ds:%d/%d", sec, s.store, s.metric))
		}
	}
	if maxStore < len(waveA) {
		t.Errorf("outbox depth peaked at %d during the outage, want ≥ %d", maxStore, len(waveA))
	}
	if maxMetric == -1 {
		t.Errorf("no proactived_outbox_depth on %s", metricsURL)
	} else if maxMetric < len(waveA) {
		t.Errorf("proactived_outbox_depth peaked at %d during the outage, want ≥ %d", maxMetric, len(waveA))
	}
	t.Logf("RESULT channel outage: %s down (503 then dropped connections), attempts %d, backoff %s..%s; %d notifications: %d fell back to sms, %d retried onto email, %d after; depth peak store %d / metric %d, drained %s after the channel came back (metric %d); a-0000 attempt gaps %v",
		up.Sub(down).Round(100*time.Millisecond), attempts, backoff, maxBackoff, len(expected), fallbacks, retriedB, len(waveC),
		maxStore, maxMetric, drained.Sub(up).Round(100*time.Millisecond), metricFinal, gaps)
	t.Logf("depth timeline (s since outage: store/metric): %s", strings.Join(timeline, " "))
}
