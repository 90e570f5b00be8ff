package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestTinyBench runs the whole bench end to end on a tiny workload and
// checks the report is complete and consistent. It asserts no timing.
func TestTinyBench(t *testing.T) {
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Rules: 20, Matching: 5, Events: 2000, Rate: 3000, LatencyFor: 200 * time.Millisecond,
		Dir: t.TempDir(), Progress: &progress})
	if err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s", err, progress.String())
	}
	if rep.Subjects != 4 || rep.Rules != 20 || rep.Matching != 5 || rep.Events != 2000 {
		t.Errorf("workload: %d subjects, %d rules, %d matching, %d events", rep.Subjects, rep.Rules, rep.Matching, rep.Events)
	}
	for name, v := range map[string]float64{"publish": rep.PublishRate, "raw": rep.RawRate, "engine": rep.EngineRate,
		"ratio": rep.Ratio, "outbox": rep.OutboxRate, "deliver": rep.DeliverRate, "rss": rep.PeakRSSMB} {
		if !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	if rep.AvgBytes < 200 || rep.AvgBytes > 400 {
		t.Errorf("average event is %d bytes, want ~300", rep.AvgBytes)
	}
	// About 40% of the events after the bootstrap fire a rule.
	total := rep.Events
	for _, l := range rep.Latency {
		total += l.Events
	}
	if share := float64(rep.FiringEvents) / float64(total); share < 0.2 || share > 0.5 {
		t.Errorf("%d of %d events fired (%.0f%%), want ~40%%", rep.FiringEvents, total, 100*share)
	}
	if rep.Expected == 0 || rep.Delivered != rep.Expected || rep.Unexpected != 0 {
		t.Errorf("notifications: %d expected, %d delivered, %d unexpected", rep.Expected, rep.Delivered, rep.Unexpected)
	}
	if rep.OutboxRows == 0 || rep.OutboxRows > rep.Expected {
		t.Errorf("outbox rows after the backlog = %d, want 1..%d", rep.OutboxRows, rep.Expected)
	}
	// The outbox run: 400 events (Events/5), each a new notification while
	// this small world has new rule-and-order pairs left; all written, and
	// delivered in the end (checked above).
	if b := rep.Burst; b.Events != 400 || b.Expected == 0 || b.Notifications != b.Expected || !(b.Rate > 0) || !(b.CPUus > 0) {
		t.Errorf("outbox run %+v, want the notifications the generator expected", b)
	}
	var names []string
	for _, l := range rep.Latency {
		names = append(names, l.Name)
		if l.Samples == 0 || l.P50ms <= 0 || l.P50ms > l.P95ms || l.P95ms > l.P99ms || l.P99ms > l.Maxms {
			t.Errorf("latency %s: %+v", l.Name, l)
		}
	}
	if strings.Join(names, ",") != "half,fixed,max" {
		t.Errorf("latency runs %v, want half,fixed,max", names)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 5 || rep.NotMeasured == "" {
		t.Errorf("targets %+v (not measured: %q), want the five a run at 3,000/s measures", rep.Targets, rep.NotMeasured)
	}
	for _, want := range []string{"raw JetStream consume", "engine / raw", "latency half", "outbox burst", "expected) from 400 events", "webhook deliveries", "peak RSS", "targets (SPEC.md", "engine events/s", "not measured here"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var back map[string]any
	b, _ := json.Marshal(rep)
	if err := json.Unmarshal(b, &back); err != nil || back["engine_to_raw_ratio"] == nil || back["raw_consume_events_per_sec"] == nil || back["targets"] == nil {
		t.Errorf("json report: %v %s", err, b)
	}
}

// TestWorldOracle checks the generator against itself: an event it says
// fires rule r carries one of r's reasons, and the bootstrap declares every
// customer and order before anything else.
func TestWorldOracle(t *testing.T) {
	w := newWorld(7, 100, 5, 50, 10, 0.4)
	now := time.Now()
	for i := 0; i < 60; i++ {
		ev := w.next(now)
		want := "customers.updated"
		if i >= 10 {
			want = "orders.created"
		}
		if ev.subject != want || ev.fires != -1 {
			t.Fatalf("bootstrap event %d: %s fires %d", i, ev.subject, ev.fires)
		}
	}
	fired := 0
	for i := 0; i < 5000; i++ {
		ev := w.next(now)
		if ev.fires < 0 {
			continue
		}
		fired++
		r := w.rules[ev.fires]
		if r.subject != ev.subject {
			t.Fatalf("rule %s on %s fired by %s", r.name, r.subject, ev.subject)
		}
		if !bytes.Contains(ev.body, []byte(`"reason":"`+r.reasons[0]+`"`)) && !bytes.Contains(ev.body, []byte(`"reason":"`+r.reasons[1]+`"`)) {
			t.Fatalf("event fires %s without its reason: %s", r.name, ev.body)
		}
	}
	if fired < 1500 || fired > 2500 {
		t.Errorf("%d of 5000 events fired, want ~40%%", fired)
	}
}

// TestTargetsVerdicts: each goal of SPEC.md is judged met exactly when the
// run's figure reaches it, and the 20,000 events/s latency goal only from
// a latency run at that rate.
func TestTargetsVerdicts(t *testing.T) {
	rep := &Report{EngineRate: 100_000, Ratio: 0.249, OutboxRate: 19_999, DeliverRate: 10_000,
		Latency: []Latency{
			{Name: "half", Target: 50_000, Samples: 10, P99ms: 20},
			{Name: "fixed", Target: 20_000, Samples: 10, P99ms: 5.1},
			{Name: "max", Target: 100_000, Samples: 10, P99ms: 1},
		}}
	got := map[string]bool{}
	for _, tg := range rep.targets() {
		got[tg.Name] = tg.Met
	}
	want := map[string]bool{
		"engine events/s":                        true,
		"engine / raw consume":                   false,
		"p99 event→decision at half the maximum": true,
		"p99 event→decision at 20,000 events/s":  false,
		"notifications/s into the outbox":        false,
		"notifications/s to a local webhook":     true,
	}
	if len(got) != len(want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	for name, met := range want {
		if v, ok := got[name]; !ok || v != met {
			t.Errorf("%s: met = %v (present %v), want %v", name, v, ok, met)
		}
	}
	// With an outbox run, its rate is the outbox's, not the drain's.
	rep.Burst = Burst{Events: 1000, Notifications: 990, Rate: 20_000}
	for _, tg := range rep.targets() {
		if tg.Name == "notifications/s into the outbox" && (!tg.Met || tg.Measured != 20_000) {
			t.Errorf("outbox judged on %+v, want the outbox run's 20,000/s", tg)
		}
	}
	// A fixed run at another rate says nothing about the 20,000/s goal.
	rep.Latency[1].Target = 10_000
	for _, tg := range rep.targets() {
		if tg.Name == "p99 event→decision at 20,000 events/s" {
			t.Errorf("a fixed run at 10,000/s was judged against the 20,000/s goal: %+v", tg)
		}
	}
}

// TestBenchWithEventIDs: with --ids every event carries a Nats-Msg-Id, all
// different, so the engine (which drops a repeated id) still produces
// every notification the generator expects.
func TestBenchWithEventIDs(t *testing.T) {
	seen := map[string]bool{}
	for i := range 100_000 {
		id := eventID(i)
		if len(id) != 36 || id[8] != '-' || id[14] != '4' || seen[id] {
			t.Fatalf("event %d: id %q is not a new UUID-shaped id", i, id)
		}
		seen[id] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := Run(ctx, Options{Rules: 20, Matching: 5, Events: 2000, Rate: -1, LatencyFor: 200 * time.Millisecond, Burst: -1,
		IDs: true, Dir: t.TempDir(), Progress: &progress})
	if err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s", err, progress.String())
	}
	if !rep.IDs || rep.Expected == 0 || rep.Delivered != rep.Expected || rep.Unexpected != 0 {
		t.Errorf("ids %v; notifications: %d expected, %d delivered, %d unexpected", rep.IDs, rep.Expected, rep.Delivered, rep.Unexpected)
	}
}
