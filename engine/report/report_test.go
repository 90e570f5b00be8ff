package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/store"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// db is a real store with rows written as the engine writes them.
type db struct {
	t  *testing.T
	st *store.Store
}

func newDB(t *testing.T) *db {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return &db{t: t, st: st}
}

func (d *db) exec(q string, args ...any) {
	d.t.Helper()
	if _, err := d.st.W.Exec(q, args...); err != nil {
		d.t.Fatal(err)
	}
}

func (d *db) decision(at time.Time, rule, key, customer, verdict, mode string) {
	d.exec(`INSERT INTO decisions (at, rule, etype, ekey, customer, verdict, reason, notification, event, mode) VALUES (?, ?, 'order', ?, ?, ?, '', '', '', ?)`,
		store.Millis(at), rule, key, customer, verdict, mode)
}

func (d *db) contact(at time.Time, customer, etype, key, topic, status, id string) {
	d.exec(`INSERT INTO contacts (at, customer, etype, ekey, topic, channel, status, contact_id) VALUES (?, ?, ?, ?, ?, 'phone', ?, ?)`,
		store.Millis(at), customer, etype, key, topic, status, id)
}

func (d *db) entity(typ, key string, created time.Time, state string) {
	d.exec(`INSERT INTO entities (type, key, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		typ, key, []byte(state), store.Millis(created), store.Millis(created))
}

func (d *db) compute(o report.Options) *report.Report {
	d.t.Helper()
	if o.Clock == nil {
		o.Clock = clock.NewVirtual(t0.Add(30 * 24 * time.Hour))
	}
	r, err := report.Compute(context.Background(), d.st.R, o)
	if err != nil {
		d.t.Fatal(err)
	}
	return r
}

func ruleOf(t *testing.T, r *report.Report, name string) report.Rule {
	t.Helper()
	for _, rr := range r.Rules {
		if rr.Rule == name {
			return rr
		}
	}
	t.Fatalf("rule %s not in report (rules: %+v)", name, r.Rules)
	return report.Rule{}
}

// arms fills a rule with n treated entities of which ct contacted about
// their order within the window, and m held out of which cc contacted.
func (d *db) arms(rule string, n, ct, m, cc int) {
	for i := range n + m {
		key, cust := fmt.Sprintf("%s-o%d", rule, i), fmt.Sprintf("%s-c%d", rule, i)
		at := t0.Add(time.Duration(i) * time.Minute)
		verdict, contacted := "sent", i < ct
		if i >= n {
			verdict, contacted = "held_out", i-n < cc
		}
		d.decision(at, rule, key, cust, verdict, "live")
		if contacted {
			d.contact(at.Add(time.Hour), cust, "order", key, "order_status", "opened", "k-"+key)
		}
	}
}

func TestComputeMatchesNewcombe(t *testing.T) {
	d := newDB(t)
	// 48/80 notified and 56/70 held out contacted: Newcombe's example
	// with the arms in report order (control − treated).
	d.arms("late", 80, 48, 70, 56)
	r := ruleOf(t, d.compute(report.Options{}), "late")
	if r.Treated.N != 80 || r.Treated.Contacted != 48 || r.Control.N != 70 || r.Control.Contacted != 56 {
		t.Fatalf("arms: %+v / %+v", r.Treated, r.Control)
	}
	a := r.AbsoluteReduction
	if !near(a.Value, 0.2) || !near(a.Low, 0.0524) || !near(a.High, 0.3339) {
		t.Fatalf("absolute reduction %v (%v to %v), want 0.2000 (0.0524 to 0.3339)", a.Value, a.Low, a.High)
	}
	if !near(r.ContactsAvoided.Value, 16) || !near(r.ContactsAvoided.Low, 80*float64(a.Low)) || !near(r.ContactsAvoided.High, 80*float64(a.High)) {
		t.Fatalf("contacts avoided %+v", r.ContactsAvoided)
	}
	// 1 − 0.6/0.8 = 0.25; the ratio interval of 48/80 over 56/70 mapped.
	rel := r.RelativeReduction
	if !near(rel.Value, 0.25) || !(rel.Low < 0.25 && rel.High > 0.25 && rel.Low > 0 && rel.High < 1) {
		t.Fatalf("relative reduction %+v", rel)
	}
	if r.VerdictCode != report.CodeReduces || r.Verdict != "cuts repeat contacts" {
		t.Fatalf("verdict %q (%s)", r.Verdict, r.VerdictCode)
	}
	if !near(r.Treated.Rate.Value, 0.6) || !near(r.Treated.Rate.Low, 0.4905) {
		t.Fatalf("treated rate %+v", r.Treated.Rate) // Wilson 48/80: 0.4905 to 0.7007
	}
}

func near(n report.Num, want float64) bool { return math.Abs(float64(n)-want) < 0.00006 }

func TestComputeCountsOnlyContactsInTheWindow(t *testing.T) {
	d := newDB(t)
	fire := t0
	d.decision(fire, "late", "o-1", "c-1", "sent", "live")
	d.decision(fire.Add(time.Hour), "late", "o-1", "c-1", "sent", "live") // second notice: same entity, fire time stays
	d.decision(fire, "late", "o-2", "c-2", "held_out", "live")
	d.decision(fire, "late", "o-3", "c-3", "shadow", "shadow")   // shadow: not an arm
	d.decision(fire, "late", "o-4", "c-4", "held_out", "shadow") // backtest rows
	d.decision(fire, "late", "o-5", "c-5", "deferred", "live")   // quiet hours: treated from the decision
	d.decision(fire, "late", "o-6", "c-6", "capped", "live")     // neither arm

	d.contact(fire.Add(-time.Minute), "c-1", "order", "o-1", "order_status", "opened", "before")  // before the fire
	d.contact(fire.Add(8*24*time.Hour), "c-1", "order", "o-1", "order_status", "opened", "after") // after 7d
	d.contact(fire.Add(time.Hour), "c-1", "order", "o-9", "returns", "opened", "other-order")     // by customer only
	d.contact(fire.Add(2*time.Hour), "c-2", "", "", "order_status", "opened", "no-entity")        // c-2 names no entity
	d.contact(fire.Add(3*time.Hour), "c-2", "", "", "order_status", "closed", "no-entity")        // its close: same contact
	d.contact(fire.Add(time.Hour), "c-5", "order", "o-5", "returns", "closed", "closed-only")     // reported when closed
	d.contact(fire.Add(2*time.Hour), "c-6", "order", "o-6", "order_status", "opened", "c6")

	r := ruleOf(t, d.compute(report.Options{}), "late")
	if r.Treated.N != 2 || r.Control.N != 1 {
		t.Fatalf("arms: treated %+v control %+v", r.Treated, r.Control)
	}
	if r.Treated.Contacted != 1 || r.Treated.Contacts != 1 { // o-5's closed-only contact
		t.Fatalf("treated contacts %+v", r.Treated)
	}
	if r.Control.Contacted != 1 || r.Control.Contacts != 1 { // c-2's entity-less contact, opened and closed = one
		t.Fatalf("control contacts %+v", r.Control)
	}
	if r.VerdictCode != report.CodeNotEnoughData || !strings.Contains(r.Why, "at least 30") {
		t.Fatalf("verdict %s %q", r.VerdictCode, r.Why)
	}

	// A topic filter drops the returns contact.
	r = ruleOf(t, d.compute(report.Options{Topic: "order_status"}), "late")
	if r.Treated.Contacted != 0 || r.Control.Contacted != 1 {
		t.Fatalf("topic order_status: treated %+v control %+v", r.Treated, r.Control)
	}
	// By customer: c-1's contact about another order counts for o-1.
	r = ruleOf(t, d.compute(report.Options{By: report.ByCustomer}), "late")
	if r.Treated.Contacted != 2 || r.Control.Contacted != 1 {
		t.Fatalf("by customer: treated %+v control %+v", r.Treated, r.Control)
	}
	// A shorter window; a period that excludes the fires.
	r = ruleOf(t, d.compute(report.Options{Window: 90 * time.Minute}), "late")
	if r.Treated.Contacted != 1 || r.Control.Contacted != 0 {
		t.Fatalf("window 90m: treated %+v control %+v", r.Treated, r.Control)
	}
	if rep := d.compute(report.Options{Since: fire.Add(2 * time.Hour)}); len(rep.Rules) != 0 {
		t.Fatalf("fires before since counted: %+v", rep.Rules)
	}
	if rep := d.compute(report.Options{Rule: "other"}); len(rep.Rules) != 0 {
		t.Fatalf("rule filter: %+v", rep.Rules)
	}
	// The rule's own filter (read through the decision index) keeps its
	// arms whole.
	if r := ruleOf(t, d.compute(report.Options{Rule: "late"}), "late"); r.Treated.N != 2 || r.Control.N != 1 {
		t.Fatalf("rule filter late: treated %+v control %+v", r.Treated, r.Control)
	}
}

// A held-out entity whose customer has an open contact at fire time would
// have been inhibited had it been treated; it is left out of the control
// arm as its treated twins are left out of the treated one.
func TestControlMirrorsInhibitionByOpenContact(t *testing.T) {
	d := newDB(t)
	d.contact(t0.Add(-time.Hour), "c-1", "order", "o-1", "order_status", "opened", "a") // still open at the fire
	d.contact(t0.Add(-time.Hour), "c-2", "", "", "order_status", "opened", "b")         // open, about nothing in particular
	d.contact(t0.Add(-time.Hour), "c-3", "order", "o-3", "order_status", "opened", "c")
	d.contact(t0.Add(-time.Minute), "c-3", "order", "o-3", "order_status", "closed", "c") // closed before the fire
	d.contact(t0.Add(time.Hour), "c-4", "order", "o-4", "order_status", "opened", "d")    // after the fire: counts
	for i := 1; i <= 4; i++ {
		d.decision(t0, "late", fmt.Sprintf("o-%d", i), fmt.Sprintf("c-%d", i), "held_out", "live")
	}
	r := ruleOf(t, d.compute(report.Options{}), "late")
	if r.Control.N != 2 || r.ControlInhibited != 2 || r.Control.Contacted != 1 {
		t.Fatalf("control %+v, inhibited %d; want o-3 and o-4 in, o-4 contacted, two left out", r.Control, r.ControlInhibited)
	}
}

func TestVerdicts(t *testing.T) {
	d := newDB(t)
	d.arms("good", 300, 30, 100, 30)   // 10% vs 30%
	d.arms("bad", 300, 90, 100, 10)    // 30% vs 10%
	d.arms("flat", 300, 60, 100, 20)   // 20% vs 20%
	d.arms("tiny", 29, 3, 29, 9)       // below 30 per arm
	d.arms("rare", 300, 1, 100, 1)     // 2 contacts in all: expected counts too small
	d.arms("noholdout", 300, 30, 0, 0) // no control group
	r := d.compute(report.Options{})
	for rule, want := range map[string]string{
		"good": report.CodeReduces, "bad": report.CodeIncreases, "flat": report.CodeNoEffect,
		"tiny": report.CodeNotEnoughData, "rare": report.CodeNotEnoughData, "noholdout": report.CodeNotEnoughData,
	} {
		rr := ruleOf(t, r, rule)
		if rr.VerdictCode != want {
			t.Errorf("%s: verdict %s (%s), want %s; reduction %+v", rule, rr.VerdictCode, rr.Why, want, rr.AbsoluteReduction)
		}
	}
	if why := ruleOf(t, r, "rare").Why; !strings.Contains(why, "expected") {
		t.Errorf("rare: why %q", why)
	}
	if why := ruleOf(t, r, "noholdout").Why; !strings.Contains(why, "holdout") {
		t.Errorf("noholdout: why %q", why)
	}

	// Numbers that do not exist are null in JSON, and the JSON round-trips.
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"absolute_reduction":{"value":null,"low":null,"high":null}`) {
		t.Fatalf("no-holdout rule should have null reductions: %s", buf.String())
	}
	var back report.Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rules) != len(r.Rules) || back.Rules[0].Rule != r.Rules[0].Rule {
		t.Fatalf("round trip lost rules: %+v", back.Rules)
	}

	// CSV: a header and a row per rule, empty cells for missing numbers.
	buf.Reset()
	if err := report.WriteCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(r.Rules) || recs[0][0] != "rule" {
		t.Fatalf("csv: %q", recs)
	}
	for _, rec := range recs[1:] {
		if rec[0] == "noholdout" && rec[9] != "" {
			t.Fatalf("csv abs_reduction of a rule without control: %q", rec)
		}
		if rec[0] == "good" && (rec[9] != "0.2" || rec[18] != "cuts repeat contacts") {
			t.Fatalf("csv row: %q", rec)
		}
	}

	// Text: one table per rule with the verdict.
	buf.Reset()
	if err := report.WriteText(&buf, r); err != nil {
		t.Fatal(err)
	}
	txt := buf.String()
	for _, want := range []string{"good\n", "held out (control)", "cuts repeat contacts", "increases contacts", "no measurable effect",
		"not enough data yet", "20.0 points (95% CI 11.0 to 30.0)", "Overall"} {
		if !strings.Contains(txt, want) {
			t.Errorf("text output lacks %q:\n%s", want, txt)
		}
	}
}

func TestOverallNotifiedVersusNot(t *testing.T) {
	d := newDB(t)
	// o-1 notified (one contact after), o-2 held out (customer from the
	// decision, an entity-less contact), o-3 and o-4 only had events
	// (customer from state), o-5 created before the period.
	for i, st := range []string{`{"customer_id":"c-1"}`, `{"customer_id":"c-2"}`, `{"customer_id":"c-3"}`, `{"customer":"c-4"}`} {
		d.entity("order", fmt.Sprintf("o-%d", i+1), t0, st)
	}
	d.entity("order", "o-5", t0.Add(-48*time.Hour), `{"customer_id":"c-5"}`)
	d.entity("customer", "c-1", t0, `{}`)
	d.decision(t0.Add(time.Hour), "late", "o-1", "c-1", "sent", "live")
	d.decision(t0.Add(time.Hour), "late", "o-2", "c-2", "held_out", "live")
	d.contact(t0.Add(2*time.Hour), "c-1", "order", "o-1", "order_status", "opened", "1")
	d.contact(t0.Add(3*time.Hour), "c-2", "", "", "order_status", "opened", "2")
	d.contact(t0.Add(3*time.Hour), "c-4", "", "", "order_status", "opened", "4")
	d.contact(t0.Add(4*time.Hour), "c-4", "", "", "payment", "opened", "4b")
	d.contact(t0.Add(-47*time.Hour), "c-5", "order", "o-5", "order_status", "opened", "5")

	r := d.compute(report.Options{Since: t0})
	n, nn := r.Overall.Notified, r.Overall.NotNotified
	if n.Entities != 1 || n.Contacted != 1 || n.Contacts != 1 || float64(n.Per100) != 100 {
		t.Fatalf("notified %+v", n)
	}
	if nn.Entities != 3 || nn.Contacted != 2 || nn.Contacts != 3 || float64(nn.Per100) != 100 {
		t.Fatalf("not notified %+v", nn)
	}
}

func TestComputeRejectsBadOptions(t *testing.T) {
	d := newDB(t)
	for _, o := range []report.Options{
		{By: "order"},
		{Window: -time.Hour},
		{Since: t0, Until: t0.Add(-time.Hour)},
	} {
		if _, err := report.Compute(context.Background(), d.st.R, o); err == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
}
