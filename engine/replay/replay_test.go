package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

const testRules = `
entities:
  order:    { key: event.order_id, subjects: ["orders.>"] }
  customer: { key: event.customer_id, subjects: ["customers.>"] }
rules:
  - name: late
    on: orders.eta
    entity: order
    if: event.late
    for: 15m
    notify: { to: order.customer_id, template: t }
  - name: not-shipped
    on: orders.created
    entity: order
    expect: orders.shipped
    within: 1h
    notify: { to: order.customer_id, template: t }
  - name: hello
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: t }
templates:
  t:
    en: { subject: "{{ .rule }} {{ .order.order_id }}", body: "b" }
`

type rec struct {
	mu   sync.Mutex
	clk  clock.Clock
	sent []string
}

func (r *rec) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, fmt.Sprintf("%s %s %s", r.clk.Now().Format("15:04:05"), n.Rule, n.Entity.Key))
	return false, nil
}

// run replays the events (offsets from 10:00) until 12:00 with the given
// sweep and returns what was sent, by time.
func run(t *testing.T, sweep time.Duration, evs []Event) []string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(testRules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Policy.QuietHours = config.QuietHours{}
	cfg.Policy.FrequencyCap.Max = 0
	set, err := rules.Load(dir, rules.Options{Channels: cfg.ChannelNames()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	clk := clock.NewVirtual(start)
	r := &rec{clk: clk}
	d, err := New(ctx, Options{Store: st, Config: cfg, Rules: set, Clock: clk, Sweep: sweep,
		Channels: map[string]notifiers.Notifier{"console": r}})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	src := func(context.Context) (Event, bool, error) {
		if i >= len(evs) {
			return Event{}, false, nil
		}
		ev := evs[i]
		i++
		e := *ev.P.Ev
		e.Time = start.Add(ev.At.Sub(time.Time{}))
		p, rej := d.Engine.Prepare(&e)
		if rej != nil {
			return Event{}, false, rej
		}
		return Event{At: e.Time, P: p}, true, nil
	}
	if err := d.Run(ctx, src, start.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := d.Clock.Now(); !got.Equal(start.Add(2 * time.Hour)) {
		t.Errorf("clock ends at %s, want 12:00", got)
	}
	sort.Strings(r.sent)
	return r.sent
}

// ev builds an event at an offset from the start; the Prepared only
// carries it until run prepares it with the driver's engine.
func ev(at time.Duration, subject, data string) Event {
	m := map[string]any{}
	for _, kv := range strings.Split(data, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch v {
		case "true", "false":
			m[k] = v == "true"
		default:
			m[k] = v
		}
	}
	return Event{At: time.Time{}.Add(at), P: &engine.Prepared{Ev: &event.Event{Subject: subject, ID: fmt.Sprint(subject, at), Data: m}}}
}

// TestRunFiresAtVirtualTimes: events at their times, the for: hold-down
// and the absence deadline at theirs — identical with and without the
// lazy sweep the backtest uses.
func TestRunFiresAtVirtualTimes(t *testing.T) {
	evs := []Event{
		ev(0, "orders.created", "order_id=o-1,customer_id=c-1"),
		ev(0, "orders.created", "order_id=o-2,customer_id=c-1"), // same instant: one batch
		ev(10*time.Minute, "orders.eta", "order_id=o-1,late=true"),
		ev(20*time.Minute, "orders.shipped", "order_id=o-2"),
		ev(50*time.Minute, "orders.eta", "order_id=o-2,late=true"),
		ev(55*time.Minute, "orders.eta", "order_id=o-2,late=false"), // flaps back: no "late" for o-2
	}
	want := []string{
		"10:00:00 hello o-1",
		"10:00:00 hello o-2",
		"10:25:00 late o-1",
		"11:00:00 not-shipped o-1",
	}
	for _, sweep := range []time.Duration{0, 10 * time.Minute} {
		got := run(t, sweep, evs)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("sweep %s: sent\n%s\nwant\n%s", sweep, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
