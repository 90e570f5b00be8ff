package metrics

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/store"
)

// value reads one series from the registry; -1 if it does not exist.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range s.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue()
			case s.Gauge != nil:
				return s.GetGauge().GetValue()
			case s.Histogram != nil:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func TestObservers(t *testing.T) {
	m := New()
	m.Evaluated("r", true, false)
	m.Evaluated("r", false, true)
	m.Evaluated("r", false, false)
	m.Decided("r", "sent", "live")
	m.Decided("r", "shadow", "shadow")
	m.Decided("r", "sent", "live")
	m.Consumed(5)
	m.Consumed(2)
	m.DeadLettered("not_json")
	m.Pending(42)
	m.Attempt("sms", true, 10*time.Millisecond)
	m.Attempt("sms", false, 2*time.Second)
	m.Reloaded(true, 7)
	m.Reloaded(false, 0)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"proactived_rule_evaluations_total", map[string]string{"rule": "r"}, 3},
		{"proactived_rule_fires_total", map[string]string{"rule": "r"}, 1},
		{"proactived_rule_errors_total", map[string]string{"rule": "r"}, 1},
		{"proactived_decisions_total", map[string]string{"rule": "r", "verdict": "sent", "mode": "live"}, 2},
		{"proactived_decisions_total", map[string]string{"rule": "r", "verdict": "shadow", "mode": "shadow"}, 1},
		{"proactived_events_consumed_total", nil, 7},
		{"proactived_events_dead_lettered_total", map[string]string{"reason": "not_json"}, 1},
		{"proactived_consumer_pending", nil, 42},
		{"proactived_delivery_attempts_total", map[string]string{"channel": "sms", "result": "ok"}, 1},
		{"proactived_delivery_attempts_total", map[string]string{"channel": "sms", "result": "error"}, 1},
		{"proactived_delivery_duration_seconds", map[string]string{"channel": "sms"}, 2},
		{"proactived_reloads_total", map[string]string{"result": "ok"}, 1},
		{"proactived_reloads_total", map[string]string{"result": "error"}, 1},
		{"proactived_rules_loaded", nil, 7},
	} {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Two daemons in one process keep separate counts.
	if got := value(t, New(), "proactived_events_consumed_total", nil); got != 0 {
		t.Errorf("a new Metrics starts at %v", got)
	}
}

// The engine reports on its hot path: once a rule's series exist, an
// observation must not allocate.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New()
	rule, verdict, mode := "delivery-delayed", "sent", "live"
	m.Evaluated(rule, true, false)
	m.Decided(rule, verdict, mode)
	m.Attempt("email", true, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() {
		m.Evaluated(rule, true, false)
		m.Decided(rule, verdict, mode)
		m.Consumed(1)
		m.Attempt("email", true, time.Millisecond)
	}); n != 0 {
		t.Errorf("%v allocations per observation", n)
	}
}

// tempStore is a new store in a temporary directory, closed after the test.
func tempStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestSampleStore(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	ins := func(id, status string) {
		t.Helper()
		if _, err := st.W.ExecContext(ctx, `INSERT INTO outbox (id, idem_key, rule, etype, ekey, customer, priority, status, candidates, next_at, doc, created_at, updated_at)
			VALUES (?, ?, 'r', 'order', 'o', 'c', 1, ?, '[]', 0, '{}', 0, 0)`, id, id, status); err != nil {
			t.Fatal(err)
		}
	}
	ins("1", "sent")
	ins("2", "sent")
	ins("3", "retry")
	ins("4", "odd-status")
	if _, err := st.W.ExecContext(ctx, `INSERT INTO timers (rule, etype, ekey, kind, due, armed_at) VALUES ('r', 'order', 'o', 'for', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	m := New()
	if err := m.SampleStore(ctx, st.R); err != nil {
		t.Fatal(err)
	}
	depth := func(s string) float64 { return value(t, m, "proactived_outbox_depth", map[string]string{"status": s}) }
	if depth("sent") != 2 || depth("retry") != 1 || depth("odd-status") != 1 || depth("failed") != 0 {
		t.Errorf("depth sent %v retry %v odd %v failed %v", depth("sent"), depth("retry"), depth("odd-status"), depth("failed"))
	}
	if got := value(t, m, "proactived_timers_pending", nil); got != 1 {
		t.Errorf("timers_pending = %v", got)
	}
	// A waiting status that empties reads 0 on the next sample; the final
	// ones (and unknown ones) are counted again every fullSampleEvery-th.
	if _, err := st.W.ExecContext(ctx, `UPDATE outbox SET status = 'sent' WHERE status IN ('retry', 'odd-status')`); err != nil {
		t.Fatal(err)
	}
	ins("5", "pending")
	for i := 1; i < fullSampleEvery; i++ {
		if err := m.SampleStore(ctx, st.R); err != nil {
			t.Fatal(err)
		}
		if depth("retry") != 0 || depth("pending") != 1 || depth("sent") != 2 || depth("odd-status") != 1 {
			t.Fatalf("sample %d: retry %v pending %v sent %v odd %v, want 0 1 and the final ones as counted before (2 1)",
				i+1, depth("retry"), depth("pending"), depth("sent"), depth("odd-status"))
		}
	}
	if err := m.SampleStore(ctx, st.R); err != nil {
		t.Fatal(err)
	}
	if depth("sent") != 4 || depth("retry") != 0 || depth("odd-status") != 0 || depth("pending") != 1 {
		t.Errorf("at the full sample: sent %v retry %v odd %v pending %v", depth("sent"), depth("retry"), depth("odd-status"), depth("pending"))
	}
}

// TestSampleStoreReadsOnlyWaitingRows: between full samples the depth
// query reads the status index's ranges of the waiting statuses only, not
// the final rows of the outbox's history.
func TestSampleStoreReadsOnlyWaitingRows(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	var plan []string
	rows, err := st.R.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT status, count(*) FROM outbox WHERE status IN `+store.WaitingStatuses+` GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	rows.Close()
	joined := strings.Join(plan, "; ")
	if !strings.Contains(joined, "SEARCH outbox USING COVERING INDEX") || !strings.Contains(joined, "status=?") {
		t.Fatalf("the waiting-status count does not search the status index: %s", joined)
	}
}
