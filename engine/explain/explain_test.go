package explain_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/outbox"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

const rulesYAML = `
entities:
  order:
    key: event.order_id
    subjects: ["orders.>"]
  customer:
    key: event.customer_id
    subjects: ["customers.>"]

rules:
  - name: late
    on: orders.eta
    entity: order
    if: order.status != "delivered" && date(order.eta) > date(order.promised_at) + duration("1h")
    notify: { to: order.customer_id, template: late, priority: high, vars: { eta: order.eta } }
    dedup: { key: order.order_id + "/" + order.eta }
    inhibited_by: [cancelled]

  - name: cancelled
    on: orders.cancelled
    entity: order
    notify: { to: order.customer_id, template: cancelled, priority: high }

  - name: feedback
    on: orders.cancelled
    entity: order
    holdout: 100%
    notify: { to: order.customer_id, template: cancelled }

  - name: weight
    on: orders.weighed
    entity: order
    if: order.weight_kg * 2 > 10
    notify: { to: order.customer_id, template: late }

  - name: not-dispatched
    on: orders.created
    entity: order
    expect: orders.dispatched
    within: 48h
    notify: { to: order.customer_id, template: late }

templates:
  late:
    en: { subject: "Order {{ .order.order_id }} is late", body: "New date: {{ .vars.eta }}" }
  cancelled:
    en: { subject: "Order {{ .order.order_id }} is cancelled", body: "Your refund is on its way." }
`

const configYAML = `
channels:
  email: { type: log, address_field: email }
  sms:   { type: log, address_field: phone }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "21:00", end: "09:00" }
  frequency_cap: { max: 100, per: 24h }
  retry: { attempts: 1, backoff: 1s, max_backoff: 1s, timeout: 2s }
`

// recorder is every channel: sms always fails for good (so delivery falls
// back to email), the others record.
type recorder struct {
	mu   sync.Mutex
	name string
	sent *[]notifiers.Notification
}

func (r *recorder) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	if r.name == "sms" {
		return false, errors.New("sms gateway: number unreachable")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.sent = append(*r.sent, *n)
	return false, nil
}

var start = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// world is a store filled by running the real engine and dispatcher on a
// virtual clock through one order's troubled life.
type world struct {
	st   *store.Store
	sent []notifiers.Notification
}

func run(t *testing.T) *world {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rulesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := config.Parse(cfg, "test.yaml", []byte(configYAML), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load(dir, rules.Options{Channels: cfg.ChannelNames(), DefaultLocale: "en", ExtraSubjects: []string{cfg.Support.Subject}})
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "proactived.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewVirtual(start)
	w := &world{st: st}
	chans := map[string]notifiers.Notifier{}
	for _, name := range cfg.ChannelNames() {
		chans[name] = &recorder{name: name, sent: &w.sent}
	}
	eng, err := engine.New(ctx, engine.Options{Store: st, Clock: clk, Config: cfg, Rules: set})
	if err != nil {
		t.Fatal(err)
	}
	disp := outbox.New(outbox.Options{Store: st, Clock: clk, Channels: chans, Retry: outbox.Retry{Attempts: 1, Backoff: time.Second, Timeout: 2 * time.Second}})
	settle := func() {
		t.Helper()
		for i := 0; i < 100; i++ {
			more, err := eng.Tick(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n, err := disp.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !more && n == 0 {
				return
			}
		}
		t.Fatal("engine did not settle")
	}
	seq := 0
	emit := func(after time.Duration, subject, body string) {
		t.Helper()
		clk.Set(start.Add(after))
		settle() // what fell due before the event (deferred releases)
		seq++
		ev, rej := event.Decode(event.Raw{Subject: subject, Body: []byte(body), MsgID: fmt.Sprintf("ev-%d", seq), Time: clk.Now()}, 0)
		if rej != nil {
			t.Fatalf("%s: %v", subject, rej)
		}
		p, rej := eng.Prepare(ev)
		if rej != nil {
			t.Fatalf("%s: %v", subject, rej)
		}
		if err := eng.HandleBatch(ctx, []*engine.Prepared{p}); err != nil {
			t.Fatal(err)
		}
		settle()
	}
	emit(0, "customers.updated", `{"customer_id":"c-1","email":"ann@example.com","phone":"+15550100","channels":["sms","email"],"timezone":"UTC","locale":"en"}`)
	emit(0, "orders.created", `{"order_id":"o-1","customer_id":"c-1","promised_at":"2026-11-22T18:00:00Z","status":"paid"}`)
	emit(1*time.Hour, "orders.eta", `{"order_id":"o-1","eta":"2026-11-23T12:00:00Z"}`) // sent: sms fails, falls back to email
	emit(2*time.Hour, "orders.eta", `{"order_id":"o-1","eta":"2026-11-23T12:00:00Z"}`) // deduped
	emit(3*time.Hour, "orders.weighed", `{"order_id":"o-1"}`)                          // error: weight_kg missing
	emit(4*time.Hour, "support.contacts", `{"customer":"c-1","entity":{"type":"order","key":"o-1"},"topic":"order_status","status":"opened","channel":"phone","id":"sc-7"}`)
	emit(5*time.Hour, "orders.eta", `{"order_id":"o-1","eta":"2026-11-23T15:00:00Z"}`) // inhibited: open contact
	emit(6*time.Hour, "support.contacts", `{"customer":"c-1","entity":{"type":"order","key":"o-1"},"topic":"order_status","status":"closed","channel":"phone","id":"sc-7"}`)
	emit(12*time.Hour, "orders.eta", `{"order_id":"o-1","eta":"2026-11-24T12:00:00Z"}`) // 22:00: deferred to 09:00
	emit(13*time.Hour, "orders.eta", `{"order_id":"o-1","eta":"2026-11-22T17:00:00Z"}`) // on time after all
	clk.Set(start.Add(23 * time.Hour))                                                  // 09:00: the deferral ends; the re-check supersedes it
	settle()
	emit(24*time.Hour, "orders.cancelled", `{"order_id":"o-1","status":"cancelled"}`)   // cancelled sent; feedback held out
	emit(25*time.Hour, "orders.eta", `{"order_id":"o-1","eta":"2026-11-25T12:00:00Z"}`) // inhibited by rule cancelled
	// What the engine holds (entity state, journal rows the journal's
	// writer has not committed yet) is written, as the API does first.
	if err := eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// eachIndexState runs f on a world whose decisions and journal rows are
// read from beyond their look-ups (not indexed yet, as right after they
// are made) and on one whose look-ups have caught up.
func eachIndexState(t *testing.T, f func(t *testing.T, w *world)) {
	t.Run("tail", func(t *testing.T) { f(t, run(t)) })
	t.Run("indexed", func(t *testing.T) {
		w := run(t)
		if err := w.st.Index.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := w.st.Journal.SyncIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		var last int64
		if err := w.st.R.QueryRow(`SELECT max(id) FROM decisions`).Scan(&last); err != nil || last == 0 || w.st.Index.Upto() != last {
			t.Fatalf("index covers up to %d of %d decisions (%v)", w.st.Index.Upto(), last, err)
		}
		f(t, w)
	})
}

func verdicts(tl *explain.Timeline) []string {
	var out []string
	for _, it := range tl.Items {
		if it.Kind == explain.KindDecision {
			out = append(out, it.Decision.Rule+" "+it.Decision.Verdict)
		}
	}
	return out
}

func TestEntityTimeline(t *testing.T) {
	eachIndexState(t, func(t *testing.T, w *world) {
		ctx := t.Context()
		tl, err := explain.Explain(ctx, w.st.R, explain.Ref{Type: "order", Key: "o-1"}, explain.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !tl.Known || tl.View != explain.ViewEntity || tl.State["status"] != "cancelled" || tl.State["eta"] != "2026-11-25T12:00:00Z" {
			t.Errorf("header: known %v view %s state %v", tl.Known, tl.View, tl.State)
		}
		want := []string{
			"not-dispatched armed",
			"late sent", "late fallback", "late delivered",
			"late deduped",
			"weight error",
			"late inhibited",
			"late deferred",
			"late superseded",
			"cancelled sent", "feedback held_out", "cancelled fallback", "cancelled delivered",
			"late inhibited",
		}
		if got := verdicts(tl); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("verdicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		// Items are in time order; each kind is present.
		kinds := map[string]int{}
		for i, it := range tl.Items {
			kinds[it.Kind]++
			if i > 0 && it.At.Before(tl.Items[i-1].At) {
				t.Errorf("item %d (%s at %s) before item %d (%s)", i, it.Kind, it.At, i-1, tl.Items[i-1].At)
			}
		}
		if kinds[explain.KindEvent] != 9 || kinds[explain.KindAttempt] != 4 || kinds[explain.KindContact] != 2 || kinds[explain.KindTimer] != 1 {
			t.Errorf("kinds: %v", kinds)
		}
		last := tl.Items[len(tl.Items)-1]
		if last.Kind != explain.KindTimer || last.Timer.Rule != "not-dispatched" || last.Timer.Kind != "absence" || !last.Timer.Due.Equal(start.Add(48*time.Hour)) {
			t.Errorf("last item should be the pending deadline: %+v %+v", last, last.Timer)
		}

		// Verdict details: deduped names the earlier notification, the
		// deferral says until when, the superseded one why.
		byVerdict := map[string][]*explain.Decision{}
		for _, it := range tl.Items {
			if it.Decision != nil {
				byVerdict[it.Decision.Verdict] = append(byVerdict[it.Decision.Verdict], it.Decision)
			}
		}
		first := byVerdict["sent"][0]
		if dd := byVerdict["deduped"][0]; dd.Notification != first.Notification || first.Notification == "" {
			t.Errorf("deduped names %q, want the first notification %q", dd.Notification, first.Notification)
		}
		if d := byVerdict["deferred"][0]; !strings.Contains(d.Reason, "deferred to 2026-11-21T09:00:00Z") {
			t.Errorf("deferred: %q", d.Reason)
		}
		if d := byVerdict["superseded"][0]; d.Notification != byVerdict["deferred"][0].Notification || !strings.Contains(d.Reason, "no longer true") {
			t.Errorf("superseded %+v", d)
		}
		if d := byVerdict["error"][0]; d.Rule != "weight" || d.Reason == "" {
			t.Errorf("error %+v", d)
		}

		// Notifications: newest first, with attempts (sms failed, email ok).
		if len(tl.Notifications) != 3 {
			t.Fatalf("%d notifications: %+v", len(tl.Notifications), tl.Notifications)
		}
		n := tl.Notifications[2]
		if n.ID != first.Notification || n.Status != "sent" || n.Channel != "email" || n.Address != "ann@example.com" ||
			n.Subject != "Order o-1 is late" || n.SentAt == nil || len(n.AttemptLog) != 2 {
			t.Errorf("first notification: %+v", n)
		}
		if a := n.AttemptLog[0]; a.Channel != "sms" || a.OK || !strings.Contains(a.Error, "unreachable") {
			t.Errorf("sms attempt: %+v", a)
		}
		if a := n.AttemptLog[1]; a.Channel != "email" || !a.OK {
			t.Errorf("email attempt: %+v", a)
		}
		if s := tl.Notifications[1]; s.Status != "superseded" || !strings.Contains(s.LastError, "no longer true") {
			t.Errorf("deferred notification: %+v", s)
		}
		if len(w.sent) != 2 {
			t.Errorf("%d delivered, want 2", len(w.sent))
		}

		// The terminal rendering says every reason.
		var buf bytes.Buffer
		if err := explain.WriteText(&buf, tl); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, s := range []string{
			"order:o-1  (entity timeline)",
			`state: {"customer_id":"c-1","eta":"2026-11-25T12:00:00Z"`,
			"TIME", "WHAT", "DETAIL",
			"ARMED", "waiting for orders.dispatched until 2026-11-22T10:00:00Z",
			"SENT", "queued for sms",
			"FALLBACK", "sms failed after 1 attempt(s): sms gateway: number unreachable; falling back to email",
			"DELIVERED", "via email, attempt 1",
			"DEDUPED", "same dedup key o-1/2026-11-23T12:00:00Z as notification " + first.Notification,
			"ERROR", "if: invalid operation",
			"INHIBITED", "open support contact sc-7", "inhibited by rule cancelled",
			"DEFERRED", "quiet hours; deferred to 2026-11-21T09:00:00Z",
			"2026-11-21T09:00:00Z  SUPERSEDED", "condition no longer true on re-check before sending",
			"HELD_OUT", "control group",
			"support contact opened via phone, topic order_status, about order:o-1 (id sc-7)",
			"failed (permanent)", "ok in ",
			"absence deadline: the rule fires at 2026-11-22T10:00:00Z",
			"2026-11-20T11:00:00Z",
			"NOTIFICATION", "SUPERSEDED", "Order o-1 is late",
		} {
			if !strings.Contains(out, s) {
				t.Errorf("text output lacks %q", s)
			}
		}
		for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.Contains(l, "\t") {
				t.Errorf("line %d has a tab: %q", i, l)
			}
		}
		if t.Failed() {
			t.Logf("text:\n%s", out)
		}

		// JSON round trip.
		raw, err := json.Marshal(tl)
		if err != nil {
			t.Fatal(err)
		}
		var back explain.Timeline
		if err := json.Unmarshal(raw, &back); err != nil || len(back.Items) != len(tl.Items) || back.Entity != tl.Entity {
			t.Errorf("json round trip: %v", err)
		}
	})
}

func TestCustomerView(t *testing.T) {
	eachIndexState(t, func(t *testing.T, w *world) {
		ctx := t.Context()
		tl, err := explain.Customer(ctx, w.st.R, "c-1", explain.Options{})
		if err != nil {
			t.Fatal(err)
		}
		// explain customer:KEY is the same view.
		same, err := explain.Explain(ctx, w.st.R, explain.Ref{Type: "customer", Key: "c-1"}, explain.Options{})
		if err != nil || len(same.Items) != len(tl.Items) || same.View != explain.ViewCustomer {
			t.Errorf("customer:c-1 view: %v", err)
		}
		if !tl.Known || tl.State["email"] != "ann@example.com" {
			t.Errorf("profile: %v", tl.State)
		}
		got := strings.Join(verdicts(tl), ",")
		// Every verdict addressed to the customer (arming a deadline names no
		// customer yet), the pending deadline of their order, their contacts.
		for _, v := range []string{"late sent", "late deduped", "late deferred", "late superseded", "late inhibited", "cancelled delivered", "feedback held_out"} {
			if !strings.Contains(got, v) {
				t.Errorf("customer view lacks %q: %s", v, got)
			}
		}
		kinds := map[string]int{}
		for _, it := range tl.Items {
			kinds[it.Kind]++
		}
		if kinds[explain.KindEvent] != 1 || kinds[explain.KindContact] != 2 || kinds[explain.KindTimer] != 1 || kinds[explain.KindAttempt] != 4 {
			t.Errorf("kinds %v", kinds)
		}
		if len(tl.Notifications) != 3 {
			t.Errorf("%d notifications", len(tl.Notifications))
		}
		var buf bytes.Buffer
		if err := explain.WriteText(&buf, tl); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"customer:c-1  (customer view", `profile: {"channels":["sms","email"]`, "ENTITY", "order:o-1", "customers.updated"} {
			if !strings.Contains(buf.String(), s) {
				t.Errorf("text lacks %q:\n%s", s, buf.String())
			}
		}
	})
}

func TestLimitAndNotFound(t *testing.T) {
	eachIndexState(t, func(t *testing.T, w *world) {
		ctx := t.Context()
		tl, err := explain.Explain(ctx, w.st.R, explain.Ref{Type: "order", Key: "o-1"}, explain.Options{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if !tl.Truncated {
			t.Error("limit 2 should truncate")
		}
		// The newest decisions are the ones kept.
		if v := verdicts(tl); len(v) != 2 || v[1] != "late inhibited" {
			t.Errorf("kept %v", v)
		}
		_, err = explain.Explain(ctx, w.st.R, explain.Ref{Type: "order", Key: "nope"}, explain.Options{})
		if !errors.Is(err, explain.ErrNotFound) || !strings.Contains(err.Error(), "order:nope") {
			t.Errorf("unknown entity: %v", err)
		}
		if _, err := explain.Customer(ctx, w.st.R, "nobody", explain.Options{}); !errors.Is(err, explain.ErrNotFound) {
			t.Errorf("unknown customer: %v", err)
		}
	})
}

func TestLists(t *testing.T) {
	eachIndexState(t, func(t *testing.T, w *world) {
		ctx := t.Context()
		db := w.st.R

		// Paging: newest first, the cursor walks to the oldest without gaps.
		var all []explain.Decision
		before := int64(0)
		for page := 0; ; page++ {
			p, err := explain.ListDecisions(ctx, db, explain.DecisionFilter{Rule: "late", Limit: 2, Before: before})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, p.Decisions...)
			if p.NextBefore == 0 {
				break
			}
			if page > 10 {
				t.Fatal("paging does not end")
			}
			before = p.NextBefore
		}
		if len(all) != 8 {
			t.Errorf("late: %d decisions over all pages, want 8", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID {
				t.Errorf("page order: %d after %d", all[i].ID, all[i-1].ID)
			}
		}
		p, err := explain.ListDecisions(ctx, db, explain.DecisionFilter{Verdict: "inhibited", Entity: explain.Ref{Type: "order", Key: "o-1"}, Customer: "c-1"})
		if err != nil || len(p.Decisions) != 2 || p.NextBefore != 0 {
			t.Errorf("inhibited: %+v %v", p, err)
		}
		p, err = explain.ListDecisions(ctx, db, explain.DecisionFilter{Since: start.Add(20 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Decisions {
			if d.At.Before(start.Add(20 * time.Hour)) {
				t.Errorf("since: %+v", d)
			}
		}
		if len(p.Decisions) != 6 { // superseded, cancelled sent+fallback+delivered, held_out, inhibited
			t.Errorf("since: %d decisions", len(p.Decisions))
		}

		np, err := explain.ListNotifications(ctx, db, explain.NotificationFilter{Channel: "email", Status: "sent"})
		if err != nil {
			t.Fatal(err)
		}
		if len(np.Notifications) != 2 || np.Notifications[0].Rule != "cancelled" || np.Notifications[1].Rule != "late" {
			t.Errorf("sent by email: %+v", np.Notifications)
		}
		np, err = explain.ListNotifications(ctx, db, explain.NotificationFilter{Customer: "c-1", Limit: 1, Attempts: true})
		if err != nil || len(np.Notifications) != 1 || np.NextBefore == "" || len(np.Notifications[0].AttemptLog) != 2 {
			t.Fatalf("page 1: %+v %v", np, err)
		}
		np2, err := explain.ListNotifications(ctx, db, explain.NotificationFilter{Customer: "c-1", Limit: 1, Before: np.NextBefore})
		if err != nil || len(np2.Notifications) != 1 || np2.Notifications[0].ID >= np.Notifications[0].ID {
			t.Errorf("page 2: %+v %v", np2, err)
		}
		np, err = explain.ListNotifications(ctx, db, explain.NotificationFilter{Channel: "sms"})
		if err != nil || len(np.Notifications) != 1 || np.Notifications[0].Status != "superseded" {
			t.Errorf("sms: %+v %v", np, err)
		}

		counts, err := explain.RuleCounts(ctx, db, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		late := counts["late"]
		// sent 1 + deduped 1 + inhibited 2 + deferred 1; not the follow-ups.
		if late == nil || late.Fired != 5 || late.Verdicts["superseded"] != 1 || late.Verdicts["delivered"] != 1 || late.Verdicts["fallback"] != 1 {
			t.Errorf("late counters: %+v", late)
		}
		if c := counts["not-dispatched"]; c == nil || c.Fired != 0 || c.Verdicts["armed"] != 1 {
			t.Errorf("not-dispatched counters: %+v", c)
		}
		if c := counts["feedback"]; c == nil || c.Fired != 1 || c.Verdicts["held_out"] != 1 {
			t.Errorf("feedback counters: %+v", c)
		}
		since, err := explain.RuleCounts(ctx, db, start.Add(20*time.Hour))
		if err != nil || since["late"].Fired != 1 || since["weight"] != nil {
			t.Errorf("since counters: %+v %v", since, err)
		}
	})
}

// OpenReadOnly reads beside a writer and refuses what is not a store.
func TestOpenReadOnly(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if _, err := explain.OpenReadOnly(ctx, filepath.Join(dir, "missing.db")); err == nil || !strings.Contains(err.Error(), "no database at") {
		t.Errorf("missing: %v", err)
	}
	w := run(t)
	db, err := explain.OpenReadOnly(ctx, w.st.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tl, err := explain.Explain(ctx, db, explain.Ref{Type: "order", Key: "o-1"}, explain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// It reads what the daemon's own read pool reads, the journal's events
	// included.
	same, err := explain.Explain(ctx, w.st.R, explain.Ref{Type: "order", Key: "o-1"}, explain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(tl)
	b, _ := json.Marshal(same)
	if events := strings.Count(string(a), `"kind":"event"`); events == 0 || string(a) != string(b) {
		t.Errorf("read-only (%d events):\n%s\nthe read pool:\n%s", events, a, b)
	}
	// The writer keeps writing while the reader is open, and the reader
	// sees the commit.
	if _, err := w.st.W.ExecContext(ctx, `INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event) VALUES (1, 'x', 'order', 'o-1', '', 'error', 'later', '', '')`); err != nil {
		t.Fatalf("writer blocked by reader: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE reason = 'later'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("reader: %d %v", n, err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM decisions`); err == nil {
		t.Error("read-only handle wrote")
	}
	other := filepath.Join(dir, "other.db")
	odb, err := sql.Open("sqlite3", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := odb.Exec(`CREATE TABLE x (a)`); err != nil {
		t.Fatal(err)
	}
	odb.Close()
	if _, err := explain.OpenReadOnly(ctx, other); err == nil || !strings.Contains(err.Error(), "not a proactived store") {
		t.Errorf("foreign db: %v", err)
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]string{"order:o-1": "order/o-1", "x:a:b": "x/a:b"} {
		r, err := explain.ParseRef(in)
		if err != nil || r.Type+"/"+r.Key != want {
			t.Errorf("%s: %+v %v", in, r, err)
		}
	}
	for _, bad := range []string{"", "order", ":o-1", "order:"} {
		if _, err := explain.ParseRef(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
