package rules

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
)

func testOptions() Options {
	return Options{Channels: []string{"email", "sms", "push", "ops-slack"}}
}

func mustLoad(t *testing.T, path string, opts Options) *Set {
	t.Helper()
	s, err := Load(path, opts)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return s
}

func run(t *testing.T, p *vm.Program, env map[string]any) any {
	t.Helper()
	if p == nil {
		t.Fatal("program not compiled")
	}
	var m vm.VM
	out, err := m.Run(p, env)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return out
}

func names(rs []*Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestGoodFilesLoad(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s := mustLoad(t, f, testOptions())
			if !slices.Equal(s.Files, []string{f}) {
				t.Errorf("Files = %v", s.Files)
			}
		})
	}
}

func TestShop(t *testing.T) {
	s := mustLoad(t, "testdata/shop.good.yaml", testOptions())

	if got := keysOf(s.Entities); !slices.Equal(got, []string{"customer", "order"}) {
		t.Fatalf("entities = %v", got)
	}
	order := s.Entities["order"]
	if order.TTL != 60*24*time.Hour || order.KeySrc != "event.order_id" || !slices.Equal(order.Subjects, []string{"orders.>", "shipments.>"}) {
		t.Errorf("order = %+v", order)
	}
	if got := run(t, order.Key, map[string]any{"event": map[string]any{"order_id": "o-1"}}); got != "o-1" {
		t.Errorf("order key = %v", got)
	}
	if s.Entities["customer"].TTL != 0 {
		t.Errorf("customer ttl = %v", s.Entities["customer"].TTL)
	}

	wantRules := []string{"delivery-delayed", "not-dispatched-in-time", "stockout-offer-alternative", "arriving-today", "vip-repeated-delay-to-agent", "order-cancelled"}
	if got := names(s.Rules); !slices.Equal(got, wantRules) {
		t.Fatalf("rules = %v", got)
	}
	for _, n := range wantRules {
		if s.ByName[n] == nil || s.ByName[n].Name != n {
			t.Errorf("ByName[%q] = %v", n, s.ByName[n])
		}
	}

	dd := s.ByName["delivery-delayed"]
	if dd.Kind != KindEvent || dd.On != "shipments.eta_updated" || dd.Entity != "order" || dd.For != 15*time.Minute ||
		dd.Holdout != 0.05 || dd.Mode != "live" || dd.Notify.Priority != PriorityHigh || dd.Notify.Template != "delivery-delayed" ||
		dd.Notify.ToSrc != "order.customer_id" || dd.Dedup.Window != 72*time.Hour || dd.Dedup.Key == nil ||
		dd.Description != "Tell the customer the parcel is late before they ask." {
		t.Errorf("delivery-delayed = %+v", dd)
	}
	if dd.Pos != (Pos{File: "testdata/shop.good.yaml", Line: 12, Col: 5}) {
		t.Errorf("delivery-delayed pos = %v", dd.Pos)
	}
	if len(dd.Notify.Vars) != 1 || dd.Notify.Vars[0].Name != "new_eta" || dd.Notify.Vars[0].Src != "event.eta" || dd.Notify.Vars[0].Expr == nil {
		t.Errorf("vars = %+v", dd.Notify.Vars)
	}
	if dd.Promise == nil || *dd.Promise != (Promise{NextUpdateWithin: 24 * time.Hour, Template: "delivery-update"}) {
		t.Errorf("promise = %+v", dd.Promise)
	}
	env := NewEnv(keysOf(s.Entities), Funcs{})
	env["event"] = map[string]any{"order_id": "o-1", "eta": "2026-11-23T12:00:00Z"}
	env["order"] = map[string]any{"order_id": "o-1", "status": "paid", "promised_at": "2026-11-22T18:00:00Z", "customer_id": "c-1"}
	if got := run(t, dd.If, env); got != true {
		t.Errorf("delivery-delayed if = %v, want true", got)
	}
	if got := run(t, dd.Notify.To, env); got != "c-1" {
		t.Errorf("to = %v", got)
	}
	if got := run(t, dd.Dedup.Key, env); got != "o-1/2026-11-23T12:00:00Z" {
		t.Errorf("dedup key = %v", got)
	}
	env["event"] = map[string]any{"order_id": "o-1", "eta": "2026-11-22T18:30:00Z"}
	if got := run(t, dd.If, env); got != false {
		t.Errorf("delivery-delayed if (30 min late) = %v, want false", got)
	}

	nd := s.ByName["not-dispatched-in-time"]
	if nd.Kind != KindAbsence || nd.Expect != "shipments.dispatched" || nd.Within != 48*time.Hour || nd.Rearm != RearmKeep || nd.Deadline != nil || nd.If != nil {
		t.Errorf("not-dispatched-in-time = %+v", nd)
	}

	so := s.ByName["stockout-offer-alternative"]
	if so.Kind != KindFanout || so.ForEach != "order" || so.Entity != "" || len(so.Where) != 1 || so.Where[0].Field != "skus" ||
		!slices.Equal(so.InhibitedBy, []string{"order-cancelled"}) || so.InhibitFor != 7*24*time.Hour {
		t.Errorf("stockout-offer-alternative = %+v", so)
	}
	if got := run(t, so.Where[0].Value, map[string]any{"event": map[string]any{"sku": "sku-9"}}); got != "sku-9" {
		t.Errorf("where = %v", got)
	}
	env["event"] = map[string]any{"sku": "sku-9"}
	env["order"] = map[string]any{"skus": []any{"sku-1", "sku-9"}, "status": "paid"}
	if got := run(t, so.If, env); got != true {
		t.Errorf("stockout if = %v", got)
	}

	at := s.ByName["arriving-today"]
	if at.Kind != KindSchedule || at.On != "" || at.Schedule != "0 9 * * *" || at.Timezone.String() != "Europe/Moscow" ||
		at.Notify.Priority != PriorityLow || at.Cap == nil || *at.Cap != (Cap{Max: 1, Per: 24 * time.Hour}) {
		t.Errorf("arriving-today = %+v", at)
	}
	// 09:00 in Moscow is 06:00 UTC, whatever the location of the time given.
	next := at.ScheduleSpec.Next(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next = %v, want %v", next, want)
	}
	fixed := NewEnv(keysOf(s.Entities), Funcs{Now: func() time.Time { return time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC) }})
	fixed["order"] = map[string]any{"status": "in_transit", "eta": "2026-11-21T15:00:00Z"}
	if got := run(t, at.If, fixed); got != true {
		t.Errorf("arriving-today if = %v (now() must be the env's clock)", got)
	}

	vip := s.ByName["vip-repeated-delay-to-agent"]
	if vip.Kind != KindEvent || vip.Notify.To != nil || vip.Notify.ToSrc != "" || vip.Notify.Channel != "ops-slack" || vip.Notify.Priority != PriorityCritical {
		t.Errorf("vip = %+v", vip)
	}
	counted := NewEnv(keysOf(s.Entities), Funcs{CountSent: func(rule, key string) int {
		if rule == "delivery-delayed" && key == "o-1" {
			return 2
		}
		return 0
	}})
	counted["order"] = map[string]any{"order_id": "o-1", "total": 60000}
	if got := run(t, vip.If, counted); got != true {
		t.Errorf("vip if = %v", got)
	}

	oc := s.ByName["order-cancelled"]
	if oc.Mode != "shadow" || oc.Notify.Channel != "email" || oc.Notify.To == nil {
		t.Errorf("order-cancelled = %+v", oc)
	}

	if got := keysOf(s.Templates); !slices.Equal(got, []string{"arriving-today", "delivery-delayed", "delivery-update", "dispatch-late", "order-cancelled", "stockout-alternative", "vip-escalation"}) {
		t.Errorf("templates = %v", got)
	}
	ddt := s.Templates["delivery-delayed"]
	if !slices.Equal(ddt.Order, []string{"ru", "en"}) || ddt.Locales["ru"].HTML != nil || ddt.Locales["en"].Subject == nil {
		t.Errorf("delivery-delayed template = %+v", ddt)
	}
	if s.Templates["dispatch-late"].Locales["en"].HTML == nil {
		t.Error("dispatch-late has no html")
	}

	if got, want := s.Subjects(), []string{"customers.>", "inventory.stockout", "orders.>", "shipments.>"}; !slices.Equal(got, want) {
		t.Errorf("Subjects() = %v, want %v", got, want)
	}
	if got := names(s.Schedules()); !slices.Equal(got, []string{"arriving-today"}) {
		t.Errorf("Schedules() = %v", got)
	}
	if s.DefaultLocale != "en" {
		t.Errorf("DefaultLocale = %q", s.DefaultLocale)
	}

	ix := s.Index
	for _, c := range []struct {
		subject          string
		rules, expecting []string
		entities         []string
	}{
		{"shipments.eta_updated", []string{"delivery-delayed", "vip-repeated-delay-to-agent"}, nil, []string{"order"}},
		{"orders.created", []string{"not-dispatched-in-time"}, nil, []string{"order"}},
		{"shipments.dispatched", nil, []string{"not-dispatched-in-time"}, []string{"order"}},
		{"inventory.stockout", []string{"stockout-offer-alternative"}, nil, nil},
		{"customers.updated", nil, nil, []string{"customer"}},
		{"orders.cancelled", []string{"order-cancelled"}, nil, []string{"order"}},
		{"payments.failed", nil, nil, nil},
	} {
		var ents []string
		for _, e := range ix.Entities(c.subject) {
			ents = append(ents, e.Name)
		}
		if got := names(ix.Rules(c.subject)); !slices.Equal(got, c.rules) {
			t.Errorf("Rules(%s) = %v, want %v", c.subject, got, c.rules)
		}
		if got := names(ix.Expecting(c.subject)); !slices.Equal(got, c.expecting) {
			t.Errorf("Expecting(%s) = %v, want %v", c.subject, got, c.expecting)
		}
		if !slices.Equal(ents, c.entities) {
			t.Errorf("Entities(%s) = %v, want %v", c.subject, ents, c.entities)
		}
	}

	r, err := ddt.Render("ru-RU", s.DefaultLocale, map[string]any{
		"order": map[string]any{"order_id": "o-1"},
		"vars":  map[string]any{"new_eta": "23 ноября"},
	})
	if err != nil || r.Locale != "ru" || r.Subject != "Заказ o-1 задерживается" || !strings.HasPrefix(r.Body, "Новая дата доставки: 23 ноября.") {
		t.Errorf("Render = %+v, %v", r, err)
	}
}

func TestFeatures(t *testing.T) {
	s := mustLoad(t, "testdata/features.good.yaml", testOptions())
	lost := s.ByName["parcel.lost"]
	if lost.Kind != KindAbsence || lost.Deadline == nil || lost.Within != 0 || lost.Rearm != RearmReset || lost.Holdout != 0.125 ||
		lost.Mode != "shadow" || lost.Dedup.Key != nil || lost.Cap == nil || *lost.Cap != (Cap{Max: 2, Per: 36 * time.Hour}) {
		t.Errorf("parcel.lost = %+v", lost)
	}
	if want := "The carrier stopped scanning the parcel: tell the customer we are looking for it.\n"; lost.Description != want {
		t.Errorf("description = %q", lost.Description)
	}
	env := NewEnv(keysOf(s.Entities), Funcs{})
	env["event"] = map[string]any{"handed_over_at": "2026-11-20T10:00:00Z"}
	if got := run(t, lost.Deadline, env); got != time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC) {
		t.Errorf("deadline = %v", got)
	}
	if e := s.Entities["parcel"]; e.TTL != 9*24*time.Hour {
		t.Errorf("parcel ttl = %v", e.TTL)
	}
	// The notify map merged from an anchor, with its own for:.
	del := s.ByName["parcel.delivered"]
	if del.Notify.ToSrc != "parcel.customer_id" || del.Notify.Template != "parcel-lost" || del.Notify.Priority != PriorityHigh || del.For != 90*time.Second {
		t.Errorf("parcel.delivered = %+v", del)
	}
	env["parcel"] = map[string]any{"status": "delivered"}
	if got := run(t, del.If, env); got != true {
		t.Errorf("multi-line if = %v", got)
	}
	sweep := s.ByName["nightly_sweep"]
	next := sweep.ScheduleSpec.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 1, 1, 18, 0, 30, 0, time.UTC); !next.Equal(want) { // 03:00:30 in Tokyo
		t.Errorf("six-field schedule next = %v, want %v", next, want)
	}
	if got := []string{sweep.Notify.Vars[0].Name, sweep.Notify.Vars[1].Name}; !slices.Equal(got, []string{"age", "id"}) {
		t.Errorf("vars in file order = %v", got)
	}
	hourly := s.ByName["hourly"]
	if next := hourly.ScheduleSpec.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !next.Equal(time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)) {
		t.Errorf("@every next = %v", next)
	}
	if got := s.Subjects(); !slices.Equal(got, []string{"carriers.*.scan", "customers.>", "parcels.>"}) {
		t.Errorf("Subjects() = %v", got)
	}
	if got := names(s.Index.Expecting("carriers.dhl.scan")); !slices.Equal(got, []string{"parcel.lost"}) {
		t.Errorf("Expecting = %v", got)
	}
	if got := s.Templates["parcel-lost"].Order; !slices.Equal(got, []string{"en-US", "pt_BR"}) {
		t.Errorf("locales = %v", got)
	}
}

func TestEmptyFile(t *testing.T) {
	s := mustLoad(t, "testdata/empty.good.yaml", Options{})
	if len(s.Rules)+len(s.Entities)+len(s.Templates) != 0 || len(s.Subjects()) != 0 {
		t.Errorf("empty file declared something: %+v", s)
	}
}

// TestBadFiles loads each bad file (or directory) and expects exactly these
// problems, in this order.
func TestBadFiles(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"bad_cron.bad.yaml", []string{
			`testdata/bad_cron.bad.yaml:5:15: rule "bad-field": schedule: invalid cron spec "61 * * * *": end of range (61) above maximum (59): 61`,
			`testdata/bad_cron.bad.yaml:9:15: rule "too-few": schedule: invalid cron spec "0 9 * *": expected 5 to 6 fields, found 4: [0 9 * *]`,
			`testdata/bad_cron.bad.yaml:13:15: rule "never": schedule: cron spec "0 0 30 2 *" never fires`,
			`testdata/bad_cron.bad.yaml:18:15: rule "bad-zone": timezone: unknown time zone "Mars/Olympus_Mons"`,
			`testdata/bad_cron.bad.yaml:23:15: rule "local-zone": timezone: unknown time zone "Local"`,
			`testdata/bad_cron.bad.yaml:27:15: rule "tz-in-spec": schedule: set the time zone with timezone, not in the spec`,
		}},
		{"bad_duration.bad.yaml", []string{
			`testdata/bad_duration.bad.yaml:2:62: entity "order": ttl: duration "-1h" must not be negative`,
			`testdata/bad_duration.bad.yaml:8:10: rule "x": for: invalid duration "15x"`,
			`testdata/bad_duration.bad.yaml:10:22: rule "x": dedup.window: invalid duration "abc"`,
			`testdata/bad_duration.bad.yaml:12:21: rule "x": inhibit_window: invalid duration "1d2"`,
			`testdata/bad_duration.bad.yaml:17:13: rule "y": within: duration "0s" must be positive`,
			`testdata/bad_duration.bad.yaml:19:35: rule "y": frequency_cap.per: invalid duration ""`,
			`testdata/bad_duration.bad.yaml:20:36: rule "y": promise.next_update_within: invalid duration "1.5.h"`,
		}},
		{"bad_expr.bad.yaml", []string{
			`testdata/bad_expr.bad.yaml:3:10: entity "order": key: unknown name order`,
			`testdata/bad_expr.bad.yaml:10:9: rule "unknown-name": if: unknown name ordr`,
			`testdata/bad_expr.bad.yaml:11:71: rule "unknown-name": notify.vars.when: unknown name evnt`,
			`testdata/bad_expr.bad.yaml:15:22: rule "syntax": if: unexpected token EOF`,
			`testdata/bad_expr.bad.yaml:17:35: rule "syntax": dedup.key: unexpected token EOF`,
			`testdata/bad_expr.bad.yaml:23:9: rule "block": if: unknown name shipment`,
			`testdata/bad_expr.bad.yaml:28:9: rule "not-bool": if: expected bool, but got int`,
			`testdata/bad_expr.bad.yaml:29:19: rule "not-bool": notify.to: empty expression`,
			`testdata/bad_expr.bad.yaml:33:20: rule "fanout": where.skus: unknown name order`,
			`testdata/bad_expr.bad.yaml:39:15: rule "deadline-not-a-time": deadline: expected a time, got int`,
		}},
		{"bad_subject.bad.yaml", []string{
			`testdata/bad_subject.bad.yaml:4:16: entity "order": subjects: invalid subject "orders..x": empty token`,
			`testdata/bad_subject.bad.yaml:4:29: entity "order": subjects: invalid subject "orders.>.x": ">" must be the last token`,
			`testdata/bad_subject.bad.yaml:4:43: entity "order": subjects: invalid subject "orders.cre*": "*" and ">" must be whole tokens`,
			`testdata/bad_subject.bad.yaml:4:58: entity "order": subjects: invalid subject "*.created": must start with a literal token`,
			`testdata/bad_subject.bad.yaml:4:71: entity "order": subjects: invalid subject ">": must start with a literal token`,
			`testdata/bad_subject.bad.yaml:4:76: entity "order": subjects: invalid subject "has space": contains whitespace`,
			`testdata/bad_subject.bad.yaml:4:89: entity "order": subjects: invalid subject "$JS.API.>": $-subjects are reserved by NATS`,
			`testdata/bad_subject.bad.yaml:4:102: entity "order": subjects: empty subject`,
			`testdata/bad_subject.bad.yaml:10:13: rule "a": expect: invalid subject "shipments. dispatched": contains whitespace`,
		}},
		{"enums.bad.yaml", []string{
			`testdata/enums.bad.yaml:9:12: rule "x": rearm: unknown value "later" (want keep or reset)`,
			`testdata/enums.bad.yaml:10:56: rule "x": notify.priority: unknown priority "urgent" (want low, normal, high or critical)`,
			`testdata/enums.bad.yaml:11:11: rule "x": mode: unknown mode "dry-run" (want live or shadow)`,
			`testdata/enums.bad.yaml:12:20: rule "x": frequency_cap: missing per`,
			`testdata/enums.bad.yaml:12:27: rule "x": frequency_cap.max: want a whole number of at least 1, got "0"`,
			`testdata/enums.bad.yaml:13:47: rule "x": dedup: unknown key "scope"`,
			`testdata/enums.bad.yaml:18:27: rule "y": frequency_cap.max: want a whole number of at least 1, got "lots"`,
			`testdata/enums.bad.yaml:19:14: rule "y": promise: missing next_update_within`,
			`testdata/enums.bad.yaml:20:5: rule "y": duplicate key "on"`,
		}},
		{"holdout.bad.yaml", []string{
			`testdata/holdout.bad.yaml:9:5: rule "critical-holdout": critical rules may not hold out`,
			`testdata/holdout.bad.yaml:14:14: rule "too-much": holdout: invalid percentage "150%" (want 0 to 100, e.g. 5%)`,
			`testdata/holdout.bad.yaml:19:14: rule "not-a-number": holdout: invalid percentage "some" (want 0 to 100, e.g. 5%)`,
		}},
		{"kinds.bad.yaml", []string{
			`testdata/kinds.bad.yaml:4:5: rule "neither": missing on or schedule`,
			`testdata/kinds.bad.yaml:9:5: rule "both-triggers": schedule and on are mutually exclusive`,
			`testdata/kinds.bad.yaml:14:5: rule "schedule-entity": entity is not allowed with schedule (use for_each)`,
			`testdata/kinds.bad.yaml:17:5: rule "schedule-alone": schedule needs for_each`,
			`testdata/kinds.bad.yaml:20:5: rule "on-alone": on needs entity or for_each`,
			`testdata/kinds.bad.yaml:25:5: rule "entity-and-for-each": entity and for_each are mutually exclusive`,
			`testdata/kinds.bad.yaml:30:5: rule "fanout-with-expect-and-for": expect needs entity, not for_each`,
			`testdata/kinds.bad.yaml:32:5: rule "fanout-with-expect-and-for": for is only allowed on event rules (on + entity)`,
			`testdata/kinds.bad.yaml:37:5: rule "absence-without-within": expect needs within or deadline`,
			`testdata/kinds.bad.yaml:45:5: rule "absence-with-both": within and deadline are mutually exclusive`,
			`testdata/kinds.bad.yaml:46:5: rule "absence-with-both": for is only allowed on event rules (on + entity)`,
			`testdata/kinds.bad.yaml:51:5: rule "strays": within needs expect`,
			`testdata/kinds.bad.yaml:52:5: rule "strays": rearm needs expect`,
			`testdata/kinds.bad.yaml:53:5: rule "strays": timezone needs schedule`,
			`testdata/kinds.bad.yaml:54:5: rule "strays": where is only allowed on fan-out rules (on + for_each)`,
			`testdata/kinds.bad.yaml:55:5: rule "strays": inhibit_window needs inhibited_by`,
		}},
		{"merge.bad.yaml", []string{
			`testdata/merge.bad.yaml:2:65: entity "order": unknown key "tl" (did you mean "ttl"?)`,
			`testdata/merge.bad.yaml:2:65: entity "parcel": unknown key "tl" (did you mean "ttl"?)`,
			`testdata/merge.bad.yaml:11:11: rule "a": notify: merge (<<) needs a map or a list of maps, got a string`,
			`testdata/merge.bad.yaml:18:34: rule "b": notify: merge (<<) needs a map or a list of maps, got a list`,
		}},
		{"missing.bad.yaml", []string{
			`testdata/missing.bad.yaml:3:5: entity "order": missing key`,
			`testdata/missing.bad.yaml:5:5: entity "shipment": missing subjects`,
			`testdata/missing.bad.yaml:7:5: rule #1: missing name`,
			`testdata/missing.bad.yaml:10:5: rule "no-notify": missing notify`,
			`testdata/missing.bad.yaml:16:13: rule "notify-empty": notify: needs to (a customer) or channel (an internal hand-off)`,
			`testdata/missing.bad.yaml:16:13: rule "notify-empty": notify: missing template`,
			`testdata/missing.bad.yaml:20:19: rule "needs-customer": notify.to: needs a "customer" entity (it holds the contact data), and none is declared`,
		}},
		{"names.bad.yaml", []string{
			`testdata/names.bad.yaml:2:3: entity "event": invalid name: "event" is reserved`,
			`testdata/names.bad.yaml:3:3: entity "line-item": invalid name: use a-z, 0-9 and _, not starting with a digit (expressions use it as a name)`,
			`testdata/names.bad.yaml:4:3: entity "Order": invalid name: use a-z, 0-9 and _, not starting with a digit (expressions use it as a name)`,
			`testdata/names.bad.yaml:5:3: entity "len": invalid name: "len" is reserved`,
			`testdata/names.bad.yaml:7:11: rule "Delivery Delayed": invalid name: use a-z, 0-9, '_', '.' and '-', starting with a letter or digit`,
			`testdata/names.bad.yaml:10:56: rule "Delivery Delayed": notify.vars: invalid name "new-eta": use letters, digits and _`,
			`testdata/names.bad.yaml:12:3: template "T_1": invalid name: use a-z, 0-9, '_', '.' and '-', starting with a letter or digit`,
		}},
		{"second_doc.bad.yaml", []string{
			`testdata/second_doc.bad.yaml:4:1: a second document (---) is not allowed: one document per file`,
		}},
		{"syntax.bad.yaml", []string{
			`testdata/syntax.bad.yaml:2:1: found a tab character that violates indentation`,
		}},
		{"template.bad.yaml", []string{
			`testdata/template.bad.yaml:4:16: template "unclosed": en.subject: unclosed action`,
			`testdata/template.bad.yaml:7:9: template "unclosed": en.body: unexpected EOF`,
			`testdata/template.bad.yaml:10:13: template "unknown-func": en.body: function "shout" not defined`,
			`testdata/template.bad.yaml:13:7: template "missing-body": en: missing body`,
			`testdata/template.bad.yaml:15:5: template "bad-locale": invalid locale "english!" (want e.g. en, ru-RU)`,
			`testdata/template.bad.yaml:17:5: template "bad-locale": locale "EN" repeats "en"`,
			`testdata/template.bad.yaml:18:15: template "no-locales": no locales`,
		}},
		{"unknown_key.bad.yaml", []string{
			`testdata/unknown_key.bad.yaml:5:5: entity "order": unknown key "tll" (did you mean "ttl"?)`,
			`testdata/unknown_key.bad.yaml:7:1: unknown key "rule" (did you mean "rules"?)`,
			`testdata/unknown_key.bad.yaml:13:5: rule "late": unknown key "iff" (did you mean "if"?)`,
			`testdata/unknown_key.bad.yaml:14:54: rule "late": notify: unknown key "prio"`,
			`testdata/unknown_key.bad.yaml:17:25: template "late": en: unknown key "footer"`,
		}},
		{"unknown_refs.bad.yaml", []string{
			`testdata/unknown_refs.bad.yaml:7:13: rule "delivery-delayed": unknown entity "ordr" (did you mean "order"?)`,
			`testdata/unknown_refs.bad.yaml:8:20: rule "delivery-delayed": inhibited_by: unknown rule "order-canceled" (did you mean "order-cancelled"?)`,
			`testdata/unknown_refs.bad.yaml:9:48: rule "delivery-delayed": unknown template "late"`,
			`testdata/unknown_refs.bad.yaml:9:63: rule "delivery-delayed": unknown channel "ops-slak" (did you mean "ops-slack"?)`,
			`testdata/unknown_refs.bad.yaml:10:51: rule "delivery-delayed": unknown template "follow-up"`,
			`testdata/unknown_refs.bad.yaml:13:15: rule "sweep": unknown entity "shipment"`,
			`testdata/unknown_refs.bad.yaml:14:24: rule "sweep": unknown channel "pager"`,
		}},
		{"wrong_type.bad.yaml", []string{
			`testdata/wrong_type.bad.yaml:2:3: entities: expected a map, got a list`,
			`testdata/wrong_type.bad.yaml:4:3: rules: expected a list, got a map`,
			`testdata/wrong_type.bad.yaml:8:9: template "t": en: expected a map, got a list`,
			`testdata/wrong_type.bad.yaml:9:6: template "u": expected a map, got a string`,
		}},
		{"wrong_type2.bad.yaml", []string{
			`testdata/wrong_type2.bad.yaml:2:17: entity "order": key: expected a string, got a list`,
			`testdata/wrong_type2.bad.yaml:2:45: entity "order": subjects: expected a list, got a string`,
			`testdata/wrong_type2.bad.yaml:3:49: entity "customer": subjects: empty list`,
			`testdata/wrong_type2.bad.yaml:5:5: rule #1: expected a map, got a string`,
			`testdata/wrong_type2.bad.yaml:7:9: rule "x": on: expected a string, got a list`,
			`testdata/wrong_type2.bad.yaml:9:13: rule "x": notify: expected a map, got a list`,
			`testdata/wrong_type2.bad.yaml:10:19: rule "x": inhibited_by: expected a list, got a string`,
			`testdata/wrong_type2.bad.yaml:11:5: rule "x": where is only allowed on fan-out rules (on + for_each)`,
			`testdata/wrong_type2.bad.yaml:11:12: rule "x": where: expected a map, got a list`,
			`testdata/wrong_type2.bad.yaml:14:17: template "t": en.body: expected a string, got a map`,
		}},
		{"dup", []string{
			`testdata/dup/b.yaml:2:3: entity "order": duplicate entity name, first defined at testdata/dup/a.yaml:2:3`,
			`testdata/dup/b.yaml:4:11: rule "late": duplicate rule name, first defined at testdata/dup/a.yaml:5:11`,
			`testdata/dup/b.yaml:9:3: template "late": duplicate template name, first defined at testdata/dup/a.yaml:10:3`,
		}},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.file] = true
		t.Run(c.file, func(t *testing.T) {
			s, err := Load(filepath.Join("testdata", c.file), testOptions())
			if s != nil {
				t.Error("a set was returned with errors")
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T %v, want *ErrorList", err, err)
			}
			if got := list.Strings(); !slices.Equal(got, c.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if err.Error() != strings.Join(c.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no expected errors in the table", f)
		}
	}
}

func TestLoadDir(t *testing.T) {
	s := mustLoad(t, "testdata/dir", testOptions())
	want := []string{"testdata/dir/a.yaml", "testdata/dir/sub/b.yaml"}
	if !slices.Equal(s.Files, want) {
		t.Errorf("Files = %v, want %v (tests/, *_test.yaml, hidden and non-.yaml files skipped)", s.Files, want)
	}
	if got := names(s.Rules); !slices.Equal(got, []string{"from-subdir"}) {
		t.Errorf("rules = %v", got)
	}
}

func TestLoadSymlinksAndEmptyDir(t *testing.T) {
	dir := t.TempDir()
	s := mustLoad(t, dir, Options{})
	if len(s.Files) != 0 || len(s.Rules) != 0 {
		t.Errorf("empty dir: %+v", s)
	}
	src, err := filepath.Abs("testdata/dir/a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(src, filepath.Join(dir, "linked.yaml")); err != nil {
		t.Skipf("no symlinks: %v", err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "loop.yaml")); err != nil { // a directory: not followed
		t.Fatal(err)
	}
	s = mustLoad(t, dir, Options{})
	if want := []string{filepath.Join(dir, "linked.yaml")}; !slices.Equal(s.Files, want) {
		t.Errorf("Files = %v, want %v", s.Files, want)
	}
	if s.Entities["order"] == nil {
		t.Error("symlinked file not loaded")
	}
}

func TestLoadMissingDir(t *testing.T) {
	_, err := Load("testdata/no-such-dir", Options{})
	if err == nil || err.Error() != "testdata/no-such-dir: no such file or directory" {
		t.Errorf("err = %v", err)
	}
}

func TestLoadFilesOrderAndCrossFileReferences(t *testing.T) {
	// b.yaml uses the entity and template of a.yaml; the order given does
	// not matter.
	s, err := LoadFiles([]string{"testdata/dir/sub/b.yaml", "testdata/dir/a.yaml", "testdata/dir/a.yaml"}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"testdata/dir/a.yaml", "testdata/dir/sub/b.yaml"}; !slices.Equal(s.Files, want) {
		t.Errorf("Files = %v", s.Files)
	}
	// Alone, b.yaml refers to things that do not exist.
	_, err = LoadFiles([]string{"testdata/dir/sub/b.yaml"}, testOptions())
	want := []string{
		`testdata/dir/sub/b.yaml:4:13: rule "from-subdir": unknown entity "order"`,
		`testdata/dir/sub/b.yaml:5:19: rule "from-subdir": notify.to: unknown name order`,
		`testdata/dir/sub/b.yaml:5:19: rule "from-subdir": notify.to: needs a "customer" entity (it holds the contact data), and none is declared`,
		`testdata/dir/sub/b.yaml:5:48: rule "from-subdir": unknown template "t"`,
	}
	var list *ErrorList
	if !errors.As(err, &list) || !slices.Equal(list.Strings(), want) {
		t.Errorf("err = %v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestSyntaxErrorSkipsCrossFileChecks(t *testing.T) {
	// A file that is not YAML may hold the entities and templates the
	// others use: reporting them all as unknown would only bury the real
	// problem.
	_, err := LoadFiles([]string{"testdata/dir/sub/b.yaml", "testdata/syntax.bad.yaml"}, testOptions())
	want := `testdata/syntax.bad.yaml:2:1: found a tab character that violates indentation`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "r.yaml")
	src := `entities:
  order: { key: event.order_id, subjects: ["orders.>"] }
rules:
  - name: r
    on: orders.paid
    entity: order
    notify: { channel: console, template: t }
templates:
  t:
    de: { body: "x" }
`
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// console is always known, even with no channels configured.
	s, err := Load(f, Options{DefaultLocale: "de", ExtraSubjects: []string{"support.contacts", "orders.paid"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.DefaultLocale != "de" {
		t.Errorf("DefaultLocale = %q", s.DefaultLocale)
	}
	if got := s.Subjects(); !slices.Equal(got, []string{"orders.>", "support.contacts"}) {
		t.Errorf("Subjects() = %v", got)
	}
	_, err = Load(f, Options{ExtraSubjects: []string{"support..contacts"}})
	if err == nil || err.Error() != `extra subject: invalid subject "support..contacts": empty token` {
		t.Errorf("err = %v", err)
	}
}

func TestSetIsReadOnlyThroughAccessors(t *testing.T) {
	s := mustLoad(t, "testdata/shop.good.yaml", testOptions())
	sub := s.Subjects()
	sub[0] = "changed"
	sch := s.Schedules()
	sch[0] = nil
	if s.Subjects()[0] == "changed" || s.Schedules()[0] == nil {
		t.Error("accessors return the set's own slices")
	}
}

func TestErrorFormat(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{Pos{"a.yaml", 3, 5}, "boom"}, "a.yaml:3:5: boom"},
		{Error{Pos{"a.yaml", 0, 0}, "boom"}, "a.yaml: boom"},
		{Error{Pos{}, "boom"}, "boom"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%#v.Error() = %q, want %q", c.e, got, c.want)
		}
	}
	l := &ErrorList{Errors: []Error{
		{Pos{"b.yaml", 1, 1}, "b"},
		{Pos{"a.yaml", 10, 1}, "a10"},
		{Pos{"a.yaml", 2, 7}, "a2-7"},
		{Pos{"a.yaml", 2, 3}, "a2-3"},
		{Pos{"a.yaml", 2, 3}, "a2-3"},
		{Pos{"a.yaml", 2, 3}, "a2-3 second"},
	}}
	l.sort()
	want := "a.yaml:2:3: a2-3\na.yaml:2:3: a2-3 second\na.yaml:2:7: a2-7\na.yaml:10:1: a10\nb.yaml:1:1: b"
	if got := l.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90s", 90 * time.Second, false},
		{"15m", 15 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"1.5h", 90 * time.Minute, false},
		{"60d", 60 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"1w2d3h4m5s", (9*24+3)*time.Hour + 4*time.Minute + 5*time.Second, false},
		{"0.5d", 12 * time.Hour, false},
		{"500ms", 500 * time.Millisecond, false},
		{"10us", 10 * time.Microsecond, false},
		{"10µs", 10 * time.Microsecond, false},
		{"3ns", 3, false},
		{"0", 0, false},
		{"0s", 0, false},
		{"-1h", -time.Hour, false},
		{"+2d", 48 * time.Hour, false},
		{"", 0, true},
		{"15x", 0, true},
		{"d", 0, true},
		{"1", 0, true},
		{"1d2", 0, true},
		{"1.5.h", 0, true},
		{".h", 0, true},
		{" 1h", 0, true},
		{"1 h", 0, true},
		{"1y", 0, true},
		{"99999999999999999999d", 0, true},
		{"15251w", 0, true}, // just over time.Duration's 292 years
		{"15000w", 15000 * 7 * 24 * time.Hour, false},
	} {
		got, err := ParseDuration(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.err)
		}
		if err != nil && err.Error() != `invalid duration "`+c.in+`"` {
			t.Errorf("ParseDuration(%q) error = %q", c.in, err)
		}
	}
	// Agrees with time.ParseDuration where both apply.
	for _, s := range []string{"1h2m3.5s", "2562047h", "1.000000001s", "0.1ms", "7m0.25s"} {
		want, _ := time.ParseDuration(s)
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
}

func TestPriorityAndKindStrings(t *testing.T) {
	for _, p := range []Priority{PriorityLow, PriorityNormal, PriorityHigh, PriorityCritical} {
		if q, ok := ParsePriority(p.String()); !ok || q != p {
			t.Errorf("ParsePriority(%q) = %v, %v", p.String(), q, ok)
		}
	}
	if got := []string{KindEvent.String(), KindAbsence.String(), KindFanout.String(), KindSchedule.String()}; !reflect.DeepEqual(got, []string{"event", "absence", "fanout", "schedule"}) {
		t.Errorf("kinds = %v", got)
	}
}
