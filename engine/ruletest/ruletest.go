// Package ruletest runs rule unit tests (`proactived test`): *_test.yaml
// files that seed entities, publish timed events and say which
// notifications must (and must not) go out. They run the real engine and
// outbox dispatcher — the same packages as the daemon — on a virtual clock
// that jumps from one due moment to the next, so a 72-hour scenario with
// deadlines, `for:` hold-downs, schedules and quiet hours takes
// milliseconds. Channels are recorded, never called.
package ruletest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/replay"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
)

// File is one test file. Besides the SPEC form (one scenario at the top
// level), a file may hold `tests:`, a list of named scenarios sharing the
// file's rules.
type File struct {
	Rules      string                               `yaml:"rules"`
	Start      time.Time                            `yaml:"start"`
	Tolerance  string                               `yaml:"tolerance"`
	Entities   map[string]map[string]map[string]any `yaml:"entities"`
	Events     []Event                              `yaml:"events"`
	RunUntil   string                               `yaml:"run_until"`
	Expect     []Expect                             `yaml:"expect"`
	ExpectNone []Expect                             `yaml:"expect_none"`
	Tests      []Scenario                           `yaml:"tests"`
	Name       string                               `yaml:"name"`
	Fail       []string                             `yaml:"fail_channels"`
}

// Scenario is one named test in a `tests:` list.
type Scenario struct {
	Name       string                               `yaml:"name"`
	Start      time.Time                            `yaml:"start"`
	Tolerance  string                               `yaml:"tolerance"`
	Entities   map[string]map[string]map[string]any `yaml:"entities"`
	Events     []Event                              `yaml:"events"`
	RunUntil   string                               `yaml:"run_until"`
	Expect     []Expect                             `yaml:"expect"`
	ExpectNone []Expect                             `yaml:"expect_none"`
	Fail       []string                             `yaml:"fail_channels"`
}

// Event is a timed event.
type Event struct {
	At      string         `yaml:"at"`
	Subject string         `yaml:"subject"`
	Data    map[string]any `yaml:"data"`
	ID      string         `yaml:"id"`
}

// Expect describes a notification. Empty fields match anything.
type Expect struct {
	Rule            string `yaml:"rule"`
	To              string `yaml:"to"`
	Channel         string `yaml:"channel"`
	At              string `yaml:"at"`
	BodyContains    string `yaml:"body_contains"`
	SubjectContains string `yaml:"subject_contains"`
	Locale          string `yaml:"locale"`
	Priority        string `yaml:"priority"`
	Entity          string `yaml:"entity"` // "type:key" or "key"
}

// Sent is a recorded notification.
type Sent struct {
	N  notifiers.Notification
	At time.Time
}

// Result is one scenario's outcome.
type Result struct {
	File     string
	Name     string
	Failures []string
	Sent     []Sent
	Took     time.Duration
	Start    time.Time
}

// Passed reports success.
func (r Result) Passed() bool { return len(r.Failures) == 0 }

// Discover expands paths (files or directories) into *_test.yaml files.
func Discover(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("test path: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(d.Name(), "_test.yaml") {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no *_test.yaml files under %s", strings.Join(paths, ", "))
	}
	return out, nil
}

// RunFile runs every scenario of one file with the daemon's config.
func RunFile(ctx context.Context, path string, cfg *config.Config) ([]Result, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read test: %w", err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rulesDir := f.Rules
	if rulesDir == "" {
		rulesDir = ".."
	}
	if !filepath.IsAbs(rulesDir) {
		rulesDir = filepath.Join(filepath.Dir(path), rulesDir)
	}
	var extra []string
	if cfg.Support.Subject != "" {
		extra = append(extra, cfg.Support.Subject)
	}
	set, err := rules.Load(rulesDir, rules.Options{Channels: cfg.ChannelNames(), DefaultLocale: cfg.Defaults.Locale, ExtraSubjects: extra})
	if err != nil {
		return nil, fmt.Errorf("%s: rules %s:\n%w", path, rulesDir, err)
	}
	scenarios := f.Tests
	if len(f.Events) > 0 || len(f.Expect) > 0 || len(f.ExpectNone) > 0 || len(scenarios) == 0 {
		scenarios = append([]Scenario{{
			Name: f.Name, Start: f.Start, Tolerance: f.Tolerance, Entities: f.Entities, Events: f.Events,
			RunUntil: f.RunUntil, Expect: f.Expect, ExpectNone: f.ExpectNone, Fail: f.Fail,
		}}, scenarios...)
	}
	var out []Result
	for i, sc := range scenarios {
		if sc.Name == "" {
			sc.Name = fmt.Sprintf("scenario %d", i+1)
			if len(scenarios) == 1 {
				sc.Name = filepath.Base(path)
			}
		}
		if sc.Start.IsZero() {
			sc.Start = f.Start
		}
		if sc.Tolerance == "" {
			sc.Tolerance = f.Tolerance
		}
		res, err := runScenario(ctx, set, cfg, sc)
		if err != nil {
			res.Failures = append(res.Failures, err.Error())
		}
		res.File, res.Name = path, sc.Name
		out = append(out, res)
	}
	return out, nil
}

// recorder is the channel every configured channel name maps to.
type recorder struct {
	mu   sync.Mutex
	clk  clock.Clock
	sent *[]Sent
	fail bool
}

func (r *recorder) Notify(_ context.Context, n *notifiers.Notification) (bool, error) {
	if r.fail {
		return false, errors.New("channel configured to fail in this test (fail_channels)")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.sent = append(*r.sent, Sent{N: *n, At: r.clk.Now()})
	return false, nil
}

func runScenario(ctx context.Context, set *rules.Set, cfg *config.Config, sc Scenario) (res Result, err error) {
	began := time.Now()
	defer func() { res.Took = time.Since(began) }()
	if sc.Start.IsZero() {
		return res, errors.New("start: missing (e.g. start: 2026-11-20T10:00:00Z)")
	}
	tol := time.Minute
	if sc.Tolerance != "" {
		if tol, err = rules.ParseDuration(sc.Tolerance); err != nil {
			return res, fmt.Errorf("tolerance: %w", err)
		}
	}
	runUntil := 24 * time.Hour
	if sc.RunUntil != "" {
		if runUntil, err = rules.ParseDuration(sc.RunUntil); err != nil {
			return res, fmt.Errorf("run_until: %w", err)
		}
	}
	type timed struct {
		at time.Time
		ev Event
		i  int
	}
	var evs []timed
	for i, ev := range sc.Events {
		d, err := rules.ParseDuration(ev.At)
		if err != nil {
			return res, fmt.Errorf("events[%d].at: %w", i, err)
		}
		if ev.Subject == "" {
			return res, fmt.Errorf("events[%d]: missing subject", i)
		}
		evs = append(evs, timed{at: sc.Start.Add(d), ev: ev, i: i})
	}
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].at.Before(evs[b].at) })
	end := sc.Start.Add(runUntil)
	if n := len(evs); n > 0 && evs[n-1].at.After(end) {
		end = evs[n-1].at
	}

	dir, err := os.MkdirTemp("", "proactived-test-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, filepath.Join(dir, "test.db"))
	if err != nil {
		return res, err
	}
	defer st.Close()
	clk := clock.NewVirtual(sc.Start)
	var sent []Sent
	chans := map[string]notifiers.Notifier{}
	for name := range cfg.Channels {
		chans[name] = &recorder{clk: clk, sent: &sent, fail: contains(sc.Fail, name)}
	}
	drv, err := replay.New(ctx, replay.Options{Store: st, Clock: clk, Config: cfg, Rules: set, Channels: chans})
	if err != nil {
		return res, err
	}
	eng := drv.Engine
	for typ, byKey := range sc.Entities {
		if _, ok := set.Entities[typ]; !ok {
			return res, fmt.Errorf("entities: unknown entity type %q", typ)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := eng.PutEntity(ctx, typ, k, byKey[k]); err != nil {
				return res, err
			}
		}
	}
	next := 0
	src := func(context.Context) (replay.Event, bool, error) {
		if next >= len(evs) {
			return replay.Event{}, false, nil
		}
		te := evs[next]
		next++
		data := te.ev.Data
		if data == nil {
			data = map[string]any{}
		}
		event.Normalize(data)
		id := te.ev.ID
		if id == "" {
			id = fmt.Sprintf("test-%d", te.i)
		}
		p, rej := eng.Prepare(&event.Event{Subject: te.ev.Subject, ID: id, Time: te.at, Data: normalizeYAML(data).(map[string]any)})
		if rej != nil {
			return replay.Event{}, false, fmt.Errorf("events[%d] (%s) rejected: %s", te.i, te.ev.Subject, rej.Error())
		}
		return replay.Event{At: te.at, P: p}, true, nil
	}
	if err := drv.Run(ctx, src, end); err != nil {
		return res, err
	}
	res.Sent, res.Start = sent, sc.Start
	res.Failures = append(res.Failures, match(sc, sent, tol)...)
	if len(res.Failures) > 0 {
		res.Failures = append(res.Failures, decisionsOf(ctx, st, sc)...)
	}
	return res, nil
}

// decisionsOf lists the recorded verdicts of the rules a failing scenario
// names, so the output says what happened instead.
func decisionsOf(ctx context.Context, st *store.Store, sc Scenario) []string {
	names := map[string]bool{}
	for _, x := range append(append([]Expect{}, sc.Expect...), sc.ExpectNone...) {
		if x.Rule != "" {
			names[x.Rule] = true
		}
	}
	rows, err := st.W.QueryContext(ctx, `SELECT at, rule, etype, ekey, verdict, reason FROM decisions ORDER BY id`)
	if err != nil {
		return []string{"decisions: " + err.Error()}
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var at int64
		var rule, etype, ekey, verdict, reason string
		if err := rows.Scan(&at, &rule, &etype, &ekey, &verdict, &reason); err != nil {
			break
		}
		if len(names) > 0 && !names[rule] {
			continue
		}
		lines = append(lines, fmt.Sprintf("      +%s %s %s:%s %s: %s", store.FromMillis(at).Sub(sc.Start), rule, etype, ekey, verdict, reason))
	}
	if len(lines) == 0 {
		return []string{"decisions of these rules: none (the rules never fired)"}
	}
	return []string{"decisions of these rules:\n" + strings.Join(lines, "\n")}
}

// normalizeYAML turns YAML-decoded values into the JSON shapes events have
// (map[string]any, []any, int, float64, string, bool, time as RFC 3339).
func normalizeYAML(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeYAML(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalizeYAML(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalizeYAML(e)
		}
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case int64:
		return int(x)
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (x Expect) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+": "+v)
		}
	}
	add("rule", x.Rule)
	add("to", x.To)
	add("channel", x.Channel)
	add("at", x.At)
	add("entity", x.Entity)
	add("locale", x.Locale)
	add("priority", x.Priority)
	add("subject_contains", fmt.Sprintf("%q", x.SubjectContains))
	add("body_contains", fmt.Sprintf("%q", x.BodyContains))
	out := "{" + strings.Join(parts, ", ") + "}"
	return strings.ReplaceAll(strings.ReplaceAll(out, `, subject_contains: ""`, ""), `, body_contains: ""`, "")
}

func (x Expect) matches(s Sent, start time.Time, tol time.Duration) (bool, error) {
	n := s.N
	if x.Rule != "" && x.Rule != n.Rule {
		return false, nil
	}
	if x.To != "" && x.To != n.To.Customer && x.To != n.To.Address {
		return false, nil
	}
	if x.Channel != "" && x.Channel != n.Channel {
		return false, nil
	}
	if x.Locale != "" && x.Locale != n.Locale {
		return false, nil
	}
	if x.Priority != "" && x.Priority != n.Priority {
		return false, nil
	}
	if x.Entity != "" && x.Entity != n.Entity.Key && x.Entity != n.Entity.Type+":"+n.Entity.Key {
		return false, nil
	}
	if x.BodyContains != "" && !strings.Contains(n.Body, x.BodyContains) {
		return false, nil
	}
	if x.SubjectContains != "" && !strings.Contains(n.Subject, x.SubjectContains) {
		return false, nil
	}
	if x.At != "" {
		d, err := rules.ParseDuration(x.At)
		if err != nil {
			return false, fmt.Errorf("at: %w", err)
		}
		diff := s.At.Sub(start.Add(d))
		if diff < -tol || diff > tol {
			return false, nil
		}
	}
	return true, nil
}

func describe(s Sent, start time.Time) string {
	n := s.N
	return fmt.Sprintf("%s to %s via %s at %s (locale %s): %q / %q", n.Rule, orDash(n.To.Customer), n.Channel, s.At.Sub(start), n.Locale, n.Subject, n.Body)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// match assigns each expectation a distinct notification.
func match(sc Scenario, sent []Sent, tol time.Duration) []string {
	var fails []string
	used := make([]bool, len(sent))
	for i, x := range sc.Expect {
		found := false
		for j, s := range sent {
			if used[j] {
				continue
			}
			ok, err := x.matches(s, sc.Start, tol)
			if err != nil {
				fails = append(fails, fmt.Sprintf("expect[%d] %s: %v", i, x, err))
				found = true
				break
			}
			if ok {
				used[j] = true
				found = true
				break
			}
		}
		if !found {
			msg := fmt.Sprintf("expect[%d] %s: no matching notification", i, x)
			var same []string
			for _, s := range sent {
				if x.Rule == "" || s.N.Rule == x.Rule {
					same = append(same, "      "+describe(s, sc.Start))
				}
			}
			if len(same) == 0 {
				msg += "\n      got: no notification of this rule (" + fmt.Sprint(len(sent)) + " in all)"
			} else {
				msg += "\n      got:\n" + strings.Join(same, "\n")
			}
			fails = append(fails, msg)
		}
	}
	for i, x := range sc.ExpectNone {
		for _, s := range sent {
			ok, err := x.matches(s, sc.Start, tol)
			if err != nil {
				fails = append(fails, fmt.Sprintf("expect_none[%d] %s: %v", i, x, err))
				break
			}
			if ok {
				fails = append(fails, fmt.Sprintf("expect_none[%d] %s: matched\n      got: %s", i, x, describe(s, sc.Start)))
				break
			}
		}
	}
	return fails
}
