package tests

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/daemon"
)

// TestRetentionPrunesOldHistory runs the daemon with `retention: 7d` on a
// virtual clock: a parcel's decisions, its delivered notification and its
// attempts are kept while they are younger than seven days, and deleted
// once the clock is eight days on, while a newer parcel's stay; the
// metric and the log say what went.
func TestRetentionPrunesOldHistory(t *testing.T) {
	vc := clock.NewVirtual(time.Now().UTC().Truncate(time.Second))
	e := startWith(t, testdata("shop"), shopConfig+"retention: 7d\n", func(o *daemon.Options) {
		o.Clock = vc
		o.PruneEvery = 20 * time.Millisecond
	})
	seedCustomers(e)
	notify := func(parcel string, want int) {
		t.Helper()
		e.publish("logistics.parcel.created", fmt.Sprintf(`{"parcel_ref":%q,"cust":"c-ru","promised":"2026-11-20T18:00:00Z"}`, parcel), "")
		e.publish("logistics.parcel.eta", fmt.Sprintf(`{"parcel_ref":%q,"eta":"2026-11-22T12:00:00Z"}`, parcel), "evt-"+parcel)
		waitFor(t, 10*time.Second, func() error {
			if n := len(e.sink.all()); n != want {
				return fmt.Errorf("%d notifications, want %d", n, want)
			}
			return nil
		})
	}
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := e.d.Store().R.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	notify("p-1", 1)
	waitFor(t, 10*time.Second, func() error {
		if n := count(`SELECT count(*) FROM outbox WHERE ekey = 'p-1' AND status = 'sent'`); n != 1 {
			return fmt.Errorf("%d sent rows for p-1", n)
		}
		return nil
	})
	// Six days on, nothing is old enough yet (many rounds run meanwhile).
	vc.Advance(6 * 24 * time.Hour)
	time.Sleep(200 * time.Millisecond)
	if d := e.decisions("parcel-late parcel:p-1"); len(d) == 0 {
		t.Fatalf("p-1's decisions pruned before the retention: %v", e.decisions(""))
	}

	vc.Advance(2 * 24 * time.Hour)
	notify("p-2", 2)
	waitFor(t, 10*time.Second, func() error {
		if n := count(`SELECT count(*) FROM decisions WHERE ekey = 'p-1'`); n != 0 {
			return fmt.Errorf("%d decisions of p-1 left", n)
		}
		if n := count(`SELECT count(*) FROM outbox WHERE ekey = 'p-1'`); n != 0 {
			return fmt.Errorf("%d notifications of p-1 left", n)
		}
		if n := count(`SELECT count(*) FROM attempts a WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = a.notification)`); n != 0 {
			return fmt.Errorf("%d attempts of pruned notifications left", n)
		}
		if n := count(`SELECT count(*) FROM seen_ids WHERE id = 'evt-p-1'`); n != 0 {
			return fmt.Errorf("p-1's event id still remembered")
		}
		return nil
	})
	if n := count(`SELECT count(*) FROM decisions WHERE ekey = 'p-2'`); n == 0 {
		t.Errorf("p-2's decisions were pruned: %v", e.decisions(""))
	}
	if n := count(`SELECT count(*) FROM outbox WHERE ekey = 'p-2' AND status = 'sent'`); n != 1 {
		t.Errorf("p-2's notification: %d sent rows", n)
	}
	if n := count(`SELECT count(*) FROM seen_ids WHERE id = 'evt-p-2'`); n != 1 {
		t.Errorf("p-2's event id forgotten")
	}
	resp := e.api("/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `proactived_history_pruned_rows_total{table="decisions"}`) {
		t.Errorf("no pruned-rows metric for decisions in /metrics")
	}
	waitFor(t, 5*time.Second, func() error {
		if !strings.Contains(e.logs.String(), "pruned old history") {
			return fmt.Errorf("no log line says what was pruned")
		}
		return nil
	})
}
