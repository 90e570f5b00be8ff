package tests

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/store"
)

// startPruning starts the daemon on the shop rules with extra config, a
// virtual clock and a pruning round every 20 ms, with its customers; count
// runs a count query on its store.
func startPruning(t *testing.T, extra string) (e *env, vc *clock.Virtual, count func(q string, args ...any) int) {
	vc = clock.NewVirtual(time.Now().UTC().Truncate(time.Second))
	e = startWith(t, testdata("shop"), shopConfig+extra, func(o *daemon.Options) {
		o.Clock = vc
		o.PruneEvery = 20 * time.Millisecond
	})
	seedCustomers(e)
	count = func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := e.d.Store().R.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return e, vc, count
}

// TestRetentionPrunesOldHistory runs the daemon with `retention: 7d` on a
// virtual clock: a parcel's decisions, its delivered notification and its
// attempts are kept while they are younger than seven days, and deleted
// once the clock is eight days on, while a newer parcel's stay; the
// metric and the log say what went.
func TestRetentionPrunesOldHistory(t *testing.T) {
	e, vc, count := startPruning(t, "retention: 7d\n")
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
	notify("p-1", 1)
	// A support contact forwarded late, stamped a year back: its age is
	// its arrival's, so it stays as long as p-2's things.
	late := time.Now().UTC().AddDate(-1, 0, 0).Format(time.RFC3339)
	e.publish("support.contacts", fmt.Sprintf(`{"customer":"c-ru","entity":{"type":"parcel","key":"p-1"},"topic":"wismo","status":"closed","time":%q}`, late), "")
	waitFor(t, 10*time.Second, func() error {
		if n := count(`SELECT count(*) FROM contacts`); n != 1 {
			return fmt.Errorf("%d contacts", n)
		}
		return nil
	})
	waitFor(t, 10*time.Second, func() error {
		if n := count(`SELECT count(*) FROM outbox WHERE ekey = 'p-1' AND status = 'sent'`); n != 1 {
			return fmt.Errorf("%d sent rows for p-1", n)
		}
		return nil
	})
	// p-1's events are in the journal, and a round marked them as arrived
	// now, before the clock moves on.
	waitFor(t, 5*time.Second, func() error {
		if ev, _, err := store.JournalEvents(context.Background(), e.d.Store().R, "parcel", "p-1", 10); err != nil || len(ev) != 2 {
			return fmt.Errorf("p-1's journal: %d events (%v), want 2", len(ev), err)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // five rounds at 20 ms
	// Six days on nothing is old enough yet, though both contacts carry a
	// time a year back: their age is their arrival's.
	vc.Advance(6 * 24 * time.Hour)
	e.publish("support.contacts", fmt.Sprintf(`{"customer":"c-ru","entity":{"type":"parcel","key":"p-2"},"topic":"wismo","status":"closed","time":%q}`, late), "")
	waitFor(t, 10*time.Second, func() error {
		if n := count(`SELECT count(*) FROM contacts`); n != 2 {
			return fmt.Errorf("%d contacts", n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // ten rounds at 20 ms
	if d := e.decisions("parcel-late parcel:p-1"); len(d) == 0 {
		t.Fatalf("p-1's decisions pruned before the retention: %v", e.decisions(""))
	}
	if n := count(`SELECT count(*) FROM contacts`); n != 2 {
		t.Fatalf("a contact that arrived six days ago was pruned (%d left): its age is its own time's", n)
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
		if n := count(`SELECT count(*) FROM contacts WHERE ekey = 'p-1'`); n != 0 {
			return fmt.Errorf("p-1's contact left")
		}
		if ev, _, err := store.JournalEvents(context.Background(), e.d.Store().R, "parcel", "p-1", 10); err != nil || len(ev) != 0 {
			return fmt.Errorf("p-1's journal: %d events (%v)", len(ev), err)
		}
		return nil
	})
	if n := count(`SELECT count(*) FROM decisions WHERE ekey = 'p-2'`); n == 0 {
		t.Errorf("p-2's decisions were pruned: %v", e.decisions(""))
	}
	if n := count(`SELECT count(*) FROM outbox WHERE ekey = 'p-2' AND status = 'sent'`); n != 1 {
		t.Errorf("p-2's notification: %d sent rows", n)
	}
	// An id is appended to seen_log and folded into seen_ids within a
	// second of the engine's clock; remembered is in either.
	if n := count(`SELECT (SELECT count(*) FROM seen_ids WHERE id = 'evt-p-2') + (SELECT count(*) FROM seen_log WHERE eid = 'evt-p-2')`); n != 1 {
		t.Errorf("p-2's event id forgotten")
	}
	if n := count(`SELECT count(*) FROM contacts WHERE ekey = 'p-2'`); n != 1 {
		t.Errorf("p-2's late-stamped contact was pruned")
	}
	// The journal is written beside intake (within about 100 ms).
	waitFor(t, 5*time.Second, func() error {
		if ev, _, err := store.JournalEvents(context.Background(), e.d.Store().R, "parcel", "p-2", 10); err != nil || len(ev) != 2 {
			return fmt.Errorf("p-2's journal: %d events (%v), want 2", len(ev), err)
		}
		return nil
	})
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

// TestRulesLookingBeyondRetentionAreLogged: a rule whose inhibit_window or
// own frequency cap looks back further than the history kept is named in
// a warning, at start and after a reload, with its place in the file.
func TestRulesLookingBeyondRetentionAreLogged(t *testing.T) {
	const rulesText = `
rules:
  - name: short
    on: logistics.parcel.late
    entity: parcel
    notify: { to: parcel.cust, template: note }
  - name: long-inhibit
    on: logistics.parcel.late
    entity: parcel
    inhibited_by: [short]
    inhibit_window: 30d
    notify: { to: parcel.cust, template: note }
`
	dir := rulesDir(t, map[string]string{"entities.yaml": reloadEntities, "rules.yaml": rulesText})
	e := startWith(t, dir, shopConfig+"retention: 7d\n", noWatch)
	warned := func(rule string) bool {
		return strings.Contains(e.logs.String(), "is longer than the history kept") && strings.Contains(e.logs.String(), "rule="+rule)
	}
	if !warned("long-inhibit") || warned("short") {
		t.Fatalf("start: want a warning for long-inhibit only:\n%s", e.logs.String())
	}
	writeRules(t, dir, "rules.yaml", rulesText+`  - name: long-cap
    on: logistics.parcel.late
    entity: parcel
    frequency_cap: { max: 1, per: 60d }
    notify: { to: parcel.cust, template: note }
`)
	if err := e.reload(); err != nil {
		t.Fatal(err)
	}
	if !warned("long-cap") || !strings.Contains(e.logs.String(), "rules.yaml:") {
		t.Fatalf("reload: want a warning for long-cap with its position:\n%s", e.logs.String())
	}
}

// TestEventIDWindow: with `intake: { id_window: 1d }` a producer's event
// id is remembered for a day of the daemon's clock, though the retention
// keeps history for thirty: a retry with the same id within the day has
// no effect; after it, the id is forgotten and the same id is a new
// event.
func TestEventIDWindow(t *testing.T) {
	e, vc, count := startPruning(t, "retention: 30d\nintake: { id_window: 1d }\n")
	// sentinel publishes a late ETA for a parcel of its own, without an
	// id, and waits for its notification: everything published before it
	// was taken in.
	sent := 0
	sentinel := func(parcel string) {
		t.Helper()
		e.publish("logistics.parcel.created", fmt.Sprintf(`{"parcel_ref":%q,"cust":"c-ru","promised":"2026-11-20T18:00:00Z"}`, parcel), "")
		e.publish("logistics.parcel.eta", fmt.Sprintf(`{"parcel_ref":%q,"eta":"2026-11-22T12:00:00Z"}`, parcel), "")
		sent++
		waitFor(t, 10*time.Second, func() error {
			if n := count(`SELECT count(*) FROM outbox WHERE ekey = '` + parcel + `'`); n != 1 {
				return fmt.Errorf("%d notifications for %s", n, parcel)
			}
			return nil
		})
	}
	// The ids are CloudEvents ids: a Nats-Msg-Id sent again within two
	// minutes is dropped by JetStream itself, before proactived sees it.
	etaWithID := func(eta string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":"evt-w","source":"/carrier","type":"eta","datacontenttype":"application/json","data":{"parcel_ref":"p-w","eta":%q}}`, eta)
	}
	e.publish("logistics.parcel.created", `{"parcel_ref":"p-w","cust":"c-ru","promised":"2026-11-20T18:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", etaWithID("2026-11-22T12:00:00Z"), "")
	// The same id again within the day, with another ETA: no effect.
	e.publish("logistics.parcel.eta", etaWithID("2026-11-23T12:00:00Z"), "")
	sentinel("s-1")
	if n := count(`SELECT count(*) FROM outbox WHERE ekey = 'p-w'`); n != 1 {
		t.Fatalf("%d notifications for p-w, want 1: the retry within the window was taken in", n)
	}
	vc.Advance(2 * 24 * time.Hour)
	sentinel("s-2") // a batch after the advance folds the id log
	waitFor(t, 10*time.Second, func() error {
		if n := count(`SELECT (SELECT count(*) FROM seen_ids WHERE id = 'evt-w') + (SELECT count(*) FROM seen_log WHERE eid = 'evt-w')`); n != 0 {
			return fmt.Errorf("evt-w still remembered two days on")
		}
		return nil
	})
	// The history stays: the retention is thirty days.
	if n := count(`SELECT count(*) FROM decisions WHERE ekey = 'p-w'`); n == 0 {
		t.Fatal("p-w's decisions were pruned with its event id")
	}
	// The same id after the window is a new event.
	e.publish("logistics.parcel.eta", etaWithID("2026-11-24T12:00:00Z"), "")
	waitFor(t, 10*time.Second, func() error {
		if n := count(`SELECT count(*) FROM outbox WHERE ekey = 'p-w'`); n != 2 {
			return fmt.Errorf("%d notifications for p-w, want 2", n)
		}
		return nil
	})
}
