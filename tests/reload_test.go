package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/daemon"
)

// Reload tests: the rule set is swapped under a running daemon, by
// Daemon.Reload (what SIGHUP and the API call) and by the file watcher.

const reloadEntities = `
entities:
  parcel:
    key: event.parcel_ref
    subjects: ["logistics.parcel.>"]
  customer:
    key: event.cust
    subjects: ["crm.customer.>"]

templates:
  note:
    en: { subject: "{{ .rule }} {{ .parcel.parcel_ref }}", body: "v1 {{ .rule }}" }
`

// rulesDir writes files (name → text) into a fresh directory.
func rulesDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		writeRules(t, dir, name, text)
	}
	return dir
}

// writeRules replaces dir/name the way editors save: write a temporary
// file beside it, then rename it over the original.
func writeRules(t *testing.T, dir, name, text string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// noWatch turns the file watcher off, so only explicit Reload calls reload.
func noWatch(o *daemon.Options) { o.WatchDebounce = -1 }

func (e *env) reload() error {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.d.Reload(ctx)
}

// timers returns "rule etype:ekey kind" of every armed timer.
func (e *env) timers() []string {
	e.t.Helper()
	rows, err := e.d.Store().R.Query(`SELECT rule, etype || ':' || ekey, kind, due FROM timers ORDER BY rule, ekey`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r, ent, kind string
		var due int64
		if err := rows.Scan(&r, &ent, &kind, &due); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %s @%d", r, ent, kind, due))
	}
	return out
}

// TestReloadWhileEventsFlow: a reload swaps the rule set while events
// stream in. Every event is processed exactly once, by the old set or the
// new one, and the first event after Reload returns sees the new set.
func TestReloadWhileEventsFlow(t *testing.T) {
	const v1 = `
rules:
  - name: seen-v1
    on: logistics.parcel.scanned
    entity: parcel
    mode: shadow
    notify: { channel: email, template: note }
`
	const v2 = `
rules:
  - name: seen-v2
    on: logistics.parcel.scanned
    entity: parcel
    mode: shadow
    notify: { channel: email, template: note }
`
	dir := rulesDir(t, map[string]string{"entities.yaml": reloadEntities, "rules.yaml": v1})
	e := startWith(t, dir, shopConfig, noWatch)

	// The publisher runs until told to stop, then sends a few more: those
	// follow Reload's return and must all meet the new set.
	const maxEvents, tail = 5000, 20
	stop := make(chan struct{})
	var n, firstAfter int // set by the publisher before wg.Done
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		js, err := e.nc.JetStream()
		if err != nil {
			t.Error(err)
			return
		}
		firstAfter = -1
		for n < maxEvents && (firstAfter < 0 || n < firstAfter+tail) {
			if firstAfter < 0 {
				select {
				case <-stop:
					firstAfter = n
				default:
				}
			}
			if _, err := js.Publish("logistics.parcel.scanned", fmt.Appendf(nil, `{"parcel_ref":"f-%04d"}`, n)); err != nil {
				t.Errorf("publish %d: %v", n, err)
				return
			}
			n++
		}
	}()
	// Reload once the old set has decided something, while events flow.
	waitFor(t, 10*time.Second, func() error {
		if len(e.decisions("seen-v1")) == 0 {
			return errors.New("no event decided by v1 yet")
		}
		return nil
	})
	writeRules(t, dir, "rules.yaml", v2)
	if err := e.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	close(stop)
	wg.Wait()
	if firstAfter < 0 {
		t.Fatalf("publisher stopped after %d events, before the reload finished", n)
	}

	waitFor(t, 20*time.Second, func() error {
		if got := len(e.decisions("seen-v1")) + len(e.decisions("seen-v2")); got != n {
			return fmt.Errorf("%d decisions for %d events", got, n)
		}
		return nil
	})
	perParcel := map[string][]string{}
	for _, d := range append(e.decisions("seen-v1"), e.decisions("seen-v2")...) {
		f := strings.Fields(d) // rule parcel:key verdict — reason
		perParcel[f[1]] = append(perParcel[f[1]], f[0])
	}
	for i := range n {
		key := fmt.Sprintf("parcel:f-%04d", i)
		got := perParcel[key]
		switch {
		case len(got) != 1:
			t.Errorf("%s decided by %v, want exactly one rule", key, got)
		case i >= firstAfter && got[0] != "seen-v2":
			t.Errorf("%s, published after the reload returned, decided by %s", key, got[0])
		}
	}
	t.Logf("%d events: %d under v1, %d under v2 (%d published after the reload)",
		n, len(e.decisions("seen-v1")), len(e.decisions("seen-v2")), n-firstAfter)
	var parcels int
	// Entity state may still wait in memory (intake.state_flush).
	if err := e.d.Engine().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Store().R.QueryRow(`SELECT count(*) FROM entities WHERE type = 'parcel'`).Scan(&parcels); err != nil || parcels != n {
		t.Errorf("%d parcels stored (%v), want %d", parcels, err, n)
	}
	st := e.d.LastReload()
	if !st.OK || st.Rules != 1 || st.At.IsZero() || len(st.Errors) != 0 {
		t.Errorf("LastReload = %+v", st)
	}
	if got := e.metric(`proactived_reloads_total{result="ok"}`); got != 1 {
		t.Errorf("reloads_total{ok} = %v", got)
	}
	// Nothing left unacked: the consumer caught up.
	waitFor(t, 5*time.Second, func() error {
		p, err := e.d.Intake().Pending(context.Background())
		if err != nil || p != 0 {
			return fmt.Errorf("pending %d, %v", p, err)
		}
		return nil
	})
}

const reloadLive = `
rules:
  - name: ping
    on: logistics.parcel.ping
    entity: parcel
    notify: { to: parcel.cust, template: note }
`

// TestReloadBadRulesKeepOldSet: a broken file fails the reload with every
// problem's position; the old rules keep working and the failure is
// counted and kept for the API.
func TestReloadBadRulesKeepOldSet(t *testing.T) {
	dir := rulesDir(t, map[string]string{"entities.yaml": reloadEntities, "rules.yaml": reloadLive})
	e := startWith(t, dir, shopConfig, noWatch)
	seedCustomers(e)

	writeRules(t, dir, "rules.yaml", reloadLive+`
  - name: broken
    on: logistics.parcel.ping
    entity: parcel
    if: parcel.weight >
    notify: { to: parcel.cust, template: missing-template }
`)
	err := e.reload()
	if err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	file := filepath.Join(dir, "rules.yaml")
	st := e.d.LastReload()
	if st.OK || st.At.IsZero() || st.Rules != 1 {
		t.Errorf("LastReload = %+v, want a failure with the old rule count", st)
	}
	// Both problems, each with file:line:col.
	var ifErr, tmplErr bool
	for _, p := range st.Errors {
		ifErr = ifErr || strings.HasPrefix(p, file+":11:") && strings.Contains(p, "if")
		tmplErr = tmplErr || strings.HasPrefix(p, file+":12:") && strings.Contains(p, "missing-template")
	}
	if !ifErr || !tmplErr || len(st.Errors) < 2 {
		t.Errorf("problems do not name both lines of %s:\n%s", file, strings.Join(st.Errors, "\n"))
	}
	if !strings.Contains(err.Error(), file+":11:") {
		t.Errorf("error does not name the line: %v", err)
	}
	if !strings.Contains(e.logs.String(), "reload failed; keeping the old rules") {
		t.Error("failed reload not logged")
	}
	if got := e.metric(`proactived_reloads_total{result="error"}`); got != 1 {
		t.Errorf(`reloads_total{result="error"} = %v, want 1`, got)
	}
	if got := e.metric(`proactived_reloads_total{result="ok"}`); got != 0 {
		t.Errorf(`reloads_total{result="ok"} = %v, want 0`, got)
	}
	if got := e.metric(`proactived_rules_loaded`); got != 1 {
		t.Errorf("rules_loaded = %v, want 1 (the old set)", got)
	}

	// The old rule still works.
	e.publish("logistics.parcel.created", `{"parcel_ref":"b-1","cust":"c-ru"}`, "")
	e.publish("logistics.parcel.ping", `{"parcel_ref":"b-1"}`, "")
	waitFor(t, 10*time.Second, func() error {
		if got := e.sink.all(); len(got) != 1 || got[0].Doc.Rule != "ping" {
			return fmt.Errorf("%d notifications", len(got))
		}
		return nil
	})
	if d := e.decisions("broken"); len(d) != 0 {
		t.Errorf("the broken rule ran: %v", d)
	}

	// Fixing the file makes the next reload succeed.
	writeRules(t, dir, "rules.yaml", reloadLive)
	if err := e.reload(); err != nil {
		t.Fatalf("reload after the fix: %v", err)
	}
	if st := e.d.LastReload(); !st.OK || len(st.Errors) != 0 {
		t.Errorf("LastReload after the fix = %+v", st)
	}
	if got := e.metric(`proactived_reloads_total{result="ok"}`); got != 1 {
		t.Errorf(`reloads_total{result="ok"} = %v, want 1`, got)
	}
}

// TestReloadRemovedRuleDropsTimers: removing a rule cancels its armed
// deadlines and hold-downs at once, each recorded; the timers of rules that
// stay are untouched.
func TestReloadRemovedRuleDropsTimers(t *testing.T) {
	const timed = `
rules:
  - name: not-delivered
    on: logistics.parcel.created
    entity: parcel
    expect: logistics.parcel.delivered
    within: 48h
    notify: { to: parcel.cust, template: note }

  - name: late-hold
    on: logistics.parcel.eta
    entity: parcel
    if: event.late == true
    for: 1h
    notify: { to: parcel.cust, template: note }

  - name: stays
    on: logistics.parcel.eta
    entity: parcel
    if: event.late == true
    for: 2h
    notify: { to: parcel.cust, template: note }
`
	dir := rulesDir(t, map[string]string{"entities.yaml": reloadEntities, "rules.yaml": timed})
	e := startWith(t, dir, shopConfig, noWatch)
	e.publish("logistics.parcel.created", `{"parcel_ref":"t-1","cust":"c-ru"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"t-2","cust":"c-ru","late":true}`, "")
	waitFor(t, 10*time.Second, func() error {
		if got := e.timers(); len(got) != 3 {
			return fmt.Errorf("timers: %v", got)
		}
		return nil
	})
	var stays string
	for _, tm := range e.timers() {
		if strings.HasPrefix(tm, "stays ") {
			stays = tm
		}
	}

	// Only "stays" remains.
	writeRules(t, dir, "rules.yaml", "rules:\n"+timed[strings.Index(timed, "  - name: stays"):])
	if err := e.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := e.timers(); !slices.Equal(got, []string{stays}) {
		t.Errorf("timers after removing two rules: %v, want only %q", got, stays)
	}
	for _, want := range []string{
		"not-delivered parcel:t-1 cancelled — rule removed by reload; absence timer dropped",
		"late-hold parcel:t-2 cancelled — rule removed by reload; for timer dropped",
	} {
		if d := e.decisions(strings.SplitN(want, " —", 2)[0]); !slices.Contains(d, want) {
			t.Errorf("missing decision %q; have %v", want, d)
		}
	}
	if st := e.d.LastReload(); !st.OK || st.DroppedTimers != 2 || st.Rules != 1 {
		t.Errorf("LastReload = %+v, want 2 dropped timers", st)
	}
	if got := e.metric(`proactived_decisions_total{mode="live",rule="late-hold",verdict="cancelled"}`); got != 1 {
		t.Errorf("cancelled decision of the removed rule counted %v times, want 1", got)
	}
}

// TestReloadNewSubject: a reload whose rules need a subject the stream
// lacks updates the stream (proactived created it), and an event on that
// subject is processed.
func TestReloadNewSubject(t *testing.T) {
	dir := rulesDir(t, map[string]string{"entities.yaml": reloadEntities, "rules.yaml": reloadLive})
	e := startWith(t, dir, shopConfig, noWatch)
	seedCustomers(e)
	e.publish("logistics.parcel.created", `{"parcel_ref":"s-1","cust":"c-ru"}`, "")

	js, err := e.nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	// Nothing captures the subject yet.
	if _, err := js.Publish("warehouse.incident.damaged", []byte(`{"parcel_ref":"s-1"}`)); !errors.Is(err, nats.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("publish to an uncaptured subject: %v, want no stream", err)
	}

	writeRules(t, dir, "incident.yaml", `
rules:
  - name: damaged
    on: warehouse.incident.damaged
    entity: parcel
    notify: { to: parcel.cust, template: note }
`)
	if err := e.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	info, err := js.StreamInfo(e.cfg.NATS.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Config.Subjects, "warehouse.incident.damaged") {
		t.Fatalf("stream subjects after reload: %v", info.Config.Subjects)
	}
	e.publish("warehouse.incident.damaged", `{"parcel_ref":"s-1"}`, "")
	waitFor(t, 10*time.Second, func() error {
		got := e.sink.all()
		if len(got) != 1 || got[0].Doc.Rule != "damaged" || got[0].Doc.Entity.Key != "s-1" {
			return fmt.Errorf("notifications: %d", len(got))
		}
		return nil
	})

	// Removing the rule again narrows the stream back.
	if err := os.Remove(filepath.Join(dir, "incident.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := e.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	info, err = js.StreamInfo(e.cfg.NATS.Stream)
	if err != nil || slices.Contains(info.Config.Subjects, "warehouse.incident.damaged") {
		t.Errorf("stream subjects after removing the rule: %v (%v)", info.Config.Subjects, err)
	}
}

// TestReloadCarriesState: a pending for: hold-down, its timer and dedup
// marks of rules that still exist survive a reload; the hold-down then
// fires with the new template, on its original schedule.
func TestReloadCarriesState(t *testing.T) {
	v1 := `
rules:
  - name: late-hold
    on: logistics.parcel.eta
    entity: parcel
    if: event.late == true
    for: 1h
    notify: { to: parcel.cust, template: note }
` + reloadLive[len("\nrules:"):]
	v2 := v1 + `
  - name: extra
    on: logistics.parcel.other
    entity: parcel
    notify: { to: parcel.cust, template: note }
`
	vc := clock.NewVirtual(time.Now().UTC().Truncate(time.Second))
	dir := rulesDir(t, map[string]string{"entities.yaml": reloadEntities, "rules.yaml": v1})
	e := startWith(t, dir, shopConfig, noWatch, func(o *daemon.Options) { o.Clock = vc })
	seedCustomers(e)
	e.publish("logistics.parcel.created", `{"parcel_ref":"c-1","cust":"c-ru"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"c-1","late":true}`, "")
	e.publish("logistics.parcel.ping", `{"parcel_ref":"c-1"}`, "")
	waitFor(t, 10*time.Second, func() error {
		if len(e.decisions("late-hold parcel:c-1 pending")) != 1 || len(e.sink.all()) != 1 {
			return fmt.Errorf("decisions %v, %d sent", e.decisions(""), len(e.sink.all()))
		}
		return nil
	})
	before := e.timers()
	if len(before) != 1 {
		t.Fatalf("timers: %v", before)
	}

	writeRules(t, dir, "rules.yaml", v2)
	writeRules(t, dir, "entities.yaml", strings.Replace(reloadEntities, "v1 ", "v2 ", 1))
	if err := e.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if after := e.timers(); !slices.Equal(after, before) {
		t.Errorf("timers changed across the reload: %v → %v", before, after)
	}
	// Dedup: the same entity again is a repeat under the new set too.
	e.publish("logistics.parcel.ping", `{"parcel_ref":"c-1"}`, "")
	waitFor(t, 10*time.Second, func() error {
		if d := e.decisions("ping parcel:c-1 deduped"); len(d) != 1 {
			return fmt.Errorf("ping decisions: %v", e.decisions("ping"))
		}
		return nil
	})
	// Still pending 59 minutes in; fires once the hour is up.
	vc.Advance(59 * time.Minute)
	time.Sleep(400 * time.Millisecond) // more than one intake tick: a wrong early fire would show
	if got := e.sink.all(); len(got) != 1 {
		t.Fatalf("hold-down fired early: %d notifications", len(got))
	}
	vc.Advance(2 * time.Minute)
	waitFor(t, 10*time.Second, func() error {
		got := e.sink.all()
		if len(got) != 2 {
			return fmt.Errorf("%d notifications", len(got))
		}
		if d := got[1].Doc; d.Rule != "late-hold" || d.Entity.Key != "c-1" || d.Body != "v2 late-hold" {
			return fmt.Errorf("second notification: %+v", d)
		}
		return nil
	})
	if got := e.timers(); len(got) != 0 {
		t.Errorf("timers left after the hold-down fired: %v", got)
	}
}

// TestReloadOnFileChange: the watcher reloads after editors' atomic saves,
// new files in new subdirectories and removals — once per burst — and a
// broken save keeps the old rules.
func TestReloadOnFileChange(t *testing.T) {
	dir := rulesDir(t, map[string]string{"entities.yaml": reloadEntities, "rules.yaml": reloadLive})
	e := startWith(t, dir, shopConfig, func(o *daemon.Options) { o.WatchDebounce = 200 * time.Millisecond })
	ruleNames := func() []string {
		var out []string
		for _, r := range e.d.Engine().Rules().Rules {
			out = append(out, r.Name)
		}
		slices.Sort(out)
		return out
	}
	waitRules := func(want ...string) {
		t.Helper()
		waitFor(t, 10*time.Second, func() error {
			if got := ruleNames(); !slices.Equal(got, want) {
				return fmt.Errorf("rules %v, want %v", got, want)
			}
			return nil
		})
	}
	reloads := func() float64 { return e.metric(`proactived_reloads_total{result="ok"}`) }

	// A burst of saves: one reload.
	for i := range 5 {
		writeRules(t, dir, "rules.yaml", reloadLive+fmt.Sprintf(`
  - name: burst
    on: logistics.parcel.ping
    entity: parcel
    notify: { to: parcel.cust, template: note }
    description: save %d
`, i))
	}
	waitRules("burst", "ping")
	waitFor(t, 5*time.Second, func() error {
		if st := e.d.LastReload(); !st.OK || st.Rules != 2 {
			return fmt.Errorf("LastReload %+v", st)
		}
		return nil
	})
	time.Sleep(400 * time.Millisecond) // longer than the debounce: a second reload would show
	if got := reloads(); got != 1 {
		t.Errorf("%v reloads for one burst of saves, want 1", got)
	}

	// A new file in a new subdirectory.
	writeRules(t, dir, "team/more/extra.yaml", `
rules:
  - name: extra
    on: logistics.parcel.ping
    entity: parcel
    notify: { to: parcel.cust, template: note }
`)
	waitRules("burst", "extra", "ping")

	// Files the loader ignores do not reload.
	n := reloads()
	for _, f := range []string{"notes.txt", ".rules.yaml.swp", "tests/x_test.yaml", "a_test.yaml"} {
		writeRules(t, dir, f, "not: rules")
	}
	time.Sleep(500 * time.Millisecond)
	if got := reloads(); got != n {
		t.Errorf("ignored files caused %v reloads", got-n)
	}

	// A broken save keeps the old set; the next good one applies.
	writeRules(t, dir, "team/more/extra.yaml", "rules:\n  - name: extra\n    on: [\n")
	waitFor(t, 10*time.Second, func() error {
		if st := e.d.LastReload(); st.OK {
			return errors.New("no failed reload yet")
		}
		return nil
	})
	if st := e.d.LastReload(); len(st.Errors) == 0 || !strings.Contains(st.Errors[0], "extra.yaml:") {
		t.Errorf("failed reload does not name the file: %+v", st)
	}
	if got := ruleNames(); !slices.Equal(got, []string{"burst", "extra", "ping"}) {
		t.Errorf("rules after a broken save: %v", got)
	}
	// Removing the whole subdirectory.
	if err := os.RemoveAll(filepath.Join(dir, "team")); err != nil {
		t.Fatal(err)
	}
	waitRules("burst", "ping")
	if st := e.d.LastReload(); !st.OK {
		t.Errorf("LastReload after removing the broken file: %+v", st)
	}
}
