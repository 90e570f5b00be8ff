package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/backtest"
	"github.com/proactived/proactived/engine/daemon"
)

const backtestConfig = `
channels:
  email: { type: webhook, url: "{{SINK}}/email", address_field: email }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "00:00", end: "00:00" }
  frequency_cap: { max: 2, per: 24h }
  retry: { attempts: 3, backoff: 50ms, max_backoff: 200ms, timeout: 2s }
`

// TestBacktest runs the live rules over a week of CloudEvents (their `time`
// a week back), then backtests a candidate set — one threshold lowered, one
// absence rule added, one rule removed — over the same stream, and checks
// every count and diff, and that the backtest sent nothing and wrote
// nothing live.
//
// Live, the daemon handles the whole week within a second of wall time, so
// the contact budget (2 per 24h) bites hard; the backtest follows the
// events' own times, so the same budget spreads over the week, and the
// 48h deadlines of the new rule fire at their virtual times.
func TestBacktest(t *testing.T) {
	e := start(t, testdata("backtest/live"), backtestConfig)
	base := time.Now().UTC().Add(-7 * 24 * time.Hour).Truncate(time.Hour)
	day := 24 * time.Hour
	n := 0
	ce := func(at time.Duration, subject, data string) {
		n++
		e.publish(subject, fmt.Sprintf(`{"specversion":"1.0","id":"bt-%d","source":"test","type":%q,"time":%q,"data":%s}`,
			n, subject, base.Add(at).Format(time.RFC3339), data), "")
	}
	order := func(at time.Duration, id, cust string, total int) {
		ce(at, "orders.created", fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"total":%d}`, id, cust, total))
	}
	ce(0, "customers.updated", `{"customer_id":"c-1","email":"c1@example.com","channels":["email"]}`)
	ce(0, "customers.updated", `{"customer_id":"c-2","email":"c2@example.com","channels":["email"]}`)
	ce(0, "customers.updated", `{"customer_id":"c-3","channels":["email"]}`) // no address
	ce(0, "customers.updated", `{"customer_id":"c-4","email":"c4@example.com","opt_out":"all"}`)
	order(time.Hour, "o-1", "c-1", 60)
	order(day+2*time.Hour, "o-2", "c-1", 150)
	order(day+2*time.Hour+time.Minute, "o-3", "c-1", 200)
	order(day+2*time.Hour+2*time.Minute, "o-4", "c-1", 300)
	order(2*day, "o-5", "c-2", 120)
	order(2*day+time.Minute, "o-6", "c-3", 500)
	// Two events every replay rejects, as the daemon dead-letters them.
	e.publish("orders.created", `not json`, "")
	e.publish("orders.created", `{"customer_id":"c-1","total":5}`, "")
	n += 2
	order(3*day, "o-7", "c-4", 500)
	order(3*day+time.Minute, "o-8", "c-2", 1500)
	ce(3*day+12*time.Hour, "orders.shipped", `{"order_id":"o-5"}`)
	ce(4*day, "orders.shipped", `{"order_id":"o-1"}`)
	ce(4*day, "orders.shipped", `{"order_id":"o-2"}`)
	ce(5*day+6*time.Hour, "orders.cancelled", `{"order_id":"o-3"}`)
	ce(5*day+6*time.Hour+time.Minute, "orders.cancelled", `{"order_id":"o-3"}`)
	order(6*day, "o-9", "c-2", 80)

	// Let the live rules finish: every event committed, nothing queued.
	ctx := context.Background()
	waitFor(t, 10*time.Second, func() error {
		if seq := e.d.Engine().LastSeq(); seq < uint64(n) {
			return fmt.Errorf("committed up to seq %d of %d", seq, n)
		}
		var queued int
		if err := e.d.Store().R.QueryRow(`SELECT count(*) FROM outbox WHERE status NOT IN ('sent', 'failed', 'capped', 'superseded')`).Scan(&queued); err != nil {
			return err
		}
		if got := len(e.sink.all()); queued > 0 || got != 5 {
			return fmt.Errorf("%d queued, %d delivered", queued, got)
		}
		return nil
	})
	liveDecisions := func() int {
		var c int
		if err := e.d.Store().R.QueryRow(`SELECT count(*) FROM decisions`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	decisionsBefore, sentBefore := liveDecisions(), len(e.sink.all())
	consumersBefore := consumerNames(t, e)

	liveSet, err := daemon.LoadRules(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cand := *e.cfg
	cand.Rules = testdata("backtest/candidate")
	set, err := daemon.LoadRules(&cand)
	if err != nil {
		t.Fatal(err)
	}
	var progress []backtest.Progress
	rep, err := backtest.Run(ctx, backtest.Options{
		Conn: e.nc, Config: e.cfg, Rules: set, RulesDir: cand.Rules, LiveRules: liveSet,
		LiveDB: filepath.Join(e.cfg.Data, "proactived.db"),
		Since:  time.Now().Add(-time.Hour), MaxWait: 5 * time.Second,
		Progress: func(p backtest.Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatalf("backtest: %v", err)
	}

	// Nothing sent, nothing written live, no consumer left behind.
	// (The dispatcher waits for its sends, so any would be in by now.)
	if got := len(e.sink.all()); got != sentBefore {
		t.Errorf("the sink received %d notifications during the backtest", got-sentBefore)
	}
	if got := liveDecisions(); got != decisionsBefore {
		t.Errorf("live decisions %d → %d during the backtest", decisionsBefore, got)
	}
	if got := consumerNames(t, e); !reflect.DeepEqual(got, consumersBefore) {
		t.Errorf("consumers %v → %v", consumersBefore, got)
	}

	if rep.Events != n || rep.Replayed != n-2 || rep.Rejected != 2 || rep.Ignored != 0 || rep.Reordered != 0 {
		t.Errorf("events %d replayed %d rejected %d ignored %d reordered %d; want %d, %d, 2, 0, 0",
			rep.Events, rep.Replayed, rep.Rejected, rep.Ignored, rep.Reordered, n, n-2)
	}
	if want := map[string]int{"not_json": 1, "missing_key": 1}; !reflect.DeepEqual(rep.RejectedBy, want) {
		t.Errorf("rejected by %v, want %v", rep.RejectedBy, want)
	}
	if !rep.VirtualStart.Equal(base) || rep.VirtualEnd.Before(base.Add(7*day)) {
		t.Errorf("virtual clock %s .. %s, want from %s to at least a week later", rep.VirtualStart, rep.VirtualEnd, base)
	}
	if len(progress) == 0 || progress[len(progress)-1].Done != uint64(n) || progress[len(progress)-1].Total != uint64(n) {
		t.Errorf("progress %+v, want a last report of %d / %d", progress, n, n)
	}

	type counts struct {
		Change, Mode          string
		Would, Customers      int
		Suppressed            map[string]int
		LiveSent, LiveCust    int
		LiveSuppressed        map[string]int
		Diff                  int
		Armed, Cancelled      int
		InCandidate, HaveLive bool
	}
	pick := func(v map[string]int, keys ...string) map[string]int {
		out := map[string]int{}
		for _, k := range keys {
			if v[k] > 0 {
				out[k] = v[k]
			}
		}
		return out
	}
	sup := backtest.Suppressions
	got := map[string]counts{}
	var names []string
	for _, r := range rep.Rules {
		names = append(names, r.Name)
		c := counts{Change: r.Change, Mode: r.Mode, Would: r.WouldSend, Customers: r.Customers, Suppressed: pick(r.Verdicts, sup...),
			Diff: r.Diff, Armed: r.Verdicts["armed"], Cancelled: r.Verdicts["cancelled"], InCandidate: r.InCandidate, HaveLive: r.Live != nil}
		if r.Live != nil {
			c.LiveSent, c.LiveCust, c.LiveSuppressed = r.Live.Sent, r.Live.Customers, pick(r.Live.Verdicts, sup...)
		}
		got[r.Name] = c
	}
	want := map[string]counts{
		// Live: o-2, o-3, o-5 (o-4 and o-8 over budget). Backtest: o-1 too
		// (threshold 50), o-8 and o-9 (the budget renewed over the days).
		"big-order": {Change: "changed", Mode: "live", Would: 6, Customers: 2,
			Suppressed: map[string]int{"capped": 1, "no_channel": 1, "opted_out": 1},
			LiveSent:   3, LiveCust: 2, LiveSuppressed: map[string]int{"capped": 2, "no_channel": 1, "opted_out": 1},
			Diff: 3, InCandidate: true, HaveLive: true},
		// o-1, o-2 shipped late; o-3, o-4, o-6, o-7, o-8 never; o-5 in
		// time; o-9's deadline is after the window.
		"not-shipped": {Change: "new", Mode: "live", Would: 3, Customers: 2,
			Suppressed:     map[string]int{"capped": 2, "no_channel": 1, "opted_out": 1},
			LiveSuppressed: map[string]int{}, Diff: 3, Armed: 9, Cancelled: 1, InCandidate: true, HaveLive: true},
		"order-cancelled": {Mode: "live", Would: 1, Customers: 1, Suppressed: map[string]int{"deduped": 1},
			LiveSent: 1, LiveCust: 1, LiveSuppressed: map[string]int{"deduped": 1}, InCandidate: true, HaveLive: true},
		"legacy-big": {Change: "removed", Suppressed: map[string]int{}, LiveSent: 1, LiveCust: 1,
			LiveSuppressed: map[string]int{}, Diff: -1, HaveLive: true},
	}
	if !reflect.DeepEqual(got, want) {
		for name := range want {
			if !reflect.DeepEqual(got[name], want[name]) {
				t.Errorf("%s:\n got %+v\nwant %+v", name, got[name], want[name])
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("unexpected rule line %s: %+v", name, got[name])
			}
		}
	}
	if want := []string{"big-order", "not-shipped", "order-cancelled", "legacy-big"}; !reflect.DeepEqual(names, want) {
		t.Errorf("rule order %v, want %v", names, want)
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	table := `RULE                  WOULD SEND  CUSTOMERS  LIVE SENT  DIFF  NOT SENT, BY VERDICT
big-order (changed)            6          2          3    +3  opted_out 1, no_channel 1, capped 1
not-shipped (new)              3          2          -    +3  opted_out 1, no_channel 1, capped 2
order-cancelled                1          1          1     0  deduped 1
legacy-big (removed)           -          -          1    -1  -

total: would send 10, live sent 5 (+5)
2 events rejected (dead letters): missing_key 1, not_json 1
`
	if !strings.Contains(text.String(), table) {
		t.Errorf("text report:\n%s\nwant it to contain:\n%s", text.String(), table)
	}
	var doc map[string]any
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("json report: %v\n%s", err, js.String())
	}
	if doc["events"] != float64(n) || len(doc["rules"].([]any)) != 4 {
		t.Errorf("json report: %s", js.String())
	}
	t.Logf("backtest: %d events in %s (%.0f events/s)\n%s", rep.Events, rep.Took, rep.EventsPerSec, text.String())
}

func consumerNames(t *testing.T, e *env) []string {
	t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, e.cfg.NATS.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	l := s.ConsumerNames(ctx)
	for name := range l.Name() {
		names = append(names, name)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}
