// Package browser drives the ops console in a real headless Chromium
// (Debian's `chromium` package, through chromedp; no browser download)
// against the real daemon, fed by the demo's simulated shop: the rule
// table and the report chart must show the numbers of the JSON API, an
// entity link must lead to its timeline, the pages must read without
// JavaScript and fit a phone, and the script must refresh the counters.
//
// Without a chromium binary the test is skipped, loudly; with CI=true it
// fails instead. Screenshots go to $CONSOLE_SCREENSHOT_DIR when set (the
// repository's docs/console.png comes from there), else to a temp dir:
//
//	CONSOLE_SCREENSHOT_DIR=$PWD/docs CONSOLE_WEEK=1 go test ./tests/browser -run Console -v
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/demo"
	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/all"
	"github.com/proactived/proactived/notifiers/logchan"
)

const token = "console-e2e-token"

// chromiumPath finds the browser: $CHROMIUM when set (and then only it),
// else chromium or chromium-browser on the PATH, else Debian's
// /usr/bin/chromium.
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{"chromium", "chromium-browser", "/usr/bin/chromium"}
	if env := os.Getenv("CHROMIUM"); env != "" {
		candidates = []string{env}
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no chromium binary found (looked for %s): the console's browser test needs Debian's chromium package (apt-get install chromium)",
		strings.Join(candidates, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI=true, so a missing browser is a failure, not a skip", msg)
	}
	fmt.Fprintf(os.Stderr, "\n!!! SKIPPED %s: %s\n\n", t.Name(), msg)
	t.Skip("SKIPPED: " + msg)
	return ""
}

// env is the daemon under test with its console.
type env struct {
	base string // http://127.0.0.1:port
	d    *daemon.Daemon
}

// api GETs a JSON endpoint with the bearer token.
func (e *env) api(t *testing.T, path string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// start fills a data dir with the compressed demo (days of shop time on
// the real engine), then runs the daemon on it — embedded NATS, HTTP with
// a token, every channel a log channel — and publishes a live burst of
// the same shop through NATS on top.
func start(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	cfg, err := config.Load("../../proactived.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = "../../rules.d"
	cfg.Data = t.TempDir()
	set, err := daemon.LoadRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(cfg.Data, "proactived.db"))
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC()
	span, orders := 72*time.Hour, 1500
	if os.Getenv("CONSOLE_WEEK") != "" {
		span, orders = 7*24*time.Hour, 850*7 // what `proactived demo --simulate 7d` plays
	}
	res, err := demo.Compressed(ctx, demo.CompressedOptions{Store: st, Config: cfg, Rules: set, Shop: demo.Shop(1, end.Add(-span), span, orders), End: end})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("simulated %s of the shop in %s: %d events, %d notifications", span, res.Took.Round(time.Millisecond), res.Events, res.Sent)

	cfg.NATS.URL, cfg.NATS.Listen = "", "127.0.0.1:-1"
	cfg.HTTP.Addr, cfg.HTTP.Token = "127.0.0.1:0", config.Secret(token)
	cfg.Intake.MaxWait = config.Duration(5 * time.Millisecond)
	quiet := slog.New(slog.DiscardHandler)
	chans := map[string]notifiers.Notifier{}
	for _, name := range cfg.ChannelNames() {
		if chans[name], err = logchan.New(name, nil, notifiers.Deps{Logger: quiet}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: quiet, Registry: all.Registry(), Channels: chans, DispatchEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Stop(sctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	nc, err := nats.Connect(d.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	live, err := demo.Live(ctx, demo.LiveOptions{JS: js, DB: d.Store().R, Shop: demo.LiveShop(2, time.Now().UTC(), 1000, time.Second, "live-"),
		InformedBy: demo.InformedBy(set), Rate: 1000, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !live.CaughtUp || live.Events == 0 {
		t.Fatalf("live burst: %d events, caught up %v", live.Events, live.CaughtUp)
	}
	return &env{base: "http://" + d.HTTPAddr(), d: d}
}

// browser starts headless Chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1366, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// eval runs a JavaScript expression that returns JSON text, into v.
func eval(t *testing.T, ctx context.Context, js string, v any) {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("evaluate: %v\n%s", err, js)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("evaluate: %v: %s", err, s)
	}
}

// eventually retries check (which reports a mismatch as an error) for a
// while: the daemon is live, and a timer may fall due between the page
// and the API answer.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

type apiRule struct {
	Name     string         `json:"name"`
	Counters explain.Counts `json:"counters"`
}

const rulesJS = `JSON.stringify([...document.querySelectorAll('#rules tbody tr')].map(tr => ({
  name: tr.dataset.rule,
  counts: Object.fromEntries([...tr.querySelectorAll('[data-count]')].map(td => [td.dataset.count, Number(td.textContent.trim())])),
  chips: Object.fromEntries([...tr.querySelectorAll('.chip')].map(c => [c.dataset.verdict, Number(c.querySelector('b').textContent)]))
})))`

type pageRule struct {
	Name   string           `json:"name"`
	Counts map[string]int64 `json:"counts"`
	Chips  map[string]int64 `json:"chips"`
}

func compareRules(page []pageRule, api []apiRule) error {
	if len(page) != len(api) || len(api) == 0 {
		return fmt.Errorf("%d rule rows on the page, %d rules in the API", len(page), len(api))
	}
	for i, a := range api {
		p := page[i]
		v := a.Counters.Verdicts
		want := map[string]int64{"fired": a.Counters.Fired, "sent": v["sent"], "deferred": v["deferred"], "suppressed": a.Counters.Fired - v["sent"] - v["deferred"]}
		if p.Name != a.Name {
			return fmt.Errorf("row %d is %s, the API's rule %d is %s", i, p.Name, i, a.Name)
		}
		for k, n := range want {
			if p.Counts[k] != n {
				return fmt.Errorf("rule %s: %s %d on the page, %d in the API", a.Name, k, p.Counts[k], n)
			}
		}
		for verdict, n := range p.Chips {
			if v[verdict] != n {
				return fmt.Errorf("rule %s: %s chip %d, API %d", a.Name, verdict, n, v[verdict])
			}
		}
		for _, verdict := range []string{"deduped", "held_out", "inhibited", "capped", "pending", "armed"} {
			if v[verdict] > 0 && p.Chips[verdict] == 0 {
				return fmt.Errorf("rule %s: no %s chip, API %d", a.Name, verdict, v[verdict])
			}
		}
	}
	return nil
}

const reportJS = `JSON.stringify([...document.querySelectorAll('article.rcard')].map(a => ({
  data: Object.assign({}, a.dataset),
  vals: [...a.querySelectorAll('svg text.val')].map(t => t.textContent.trim()),
  bars: [...a.querySelectorAll('svg rect.bar')].map(r => r.getBoundingClientRect().width),
  whiskers: a.querySelectorAll('svg line.ci').length,
  verdict: a.querySelector('[data-field=verdict]').textContent.trim(),
  abs: (a.querySelector('[data-field=abs]') || {textContent: ''}).textContent.trim(),
  avoided: (a.querySelector('[data-field=avoided]') || {textContent: ''}).textContent.trim()
})))`

type pageCard struct {
	Data     map[string]string `json:"data"`
	Vals     []string          `json:"vals"`
	Bars     []float64         `json:"bars"`
	Whiskers int               `json:"whiskers"`
	Verdict  string            `json:"verdict"`
	Abs      string            `json:"abs"`
	Avoided  string            `json:"avoided"`
}

func pct(n report.Num) string { return fmt.Sprintf("%.1f%%", 100*float64(n)) }

// minus prints like the console: a real minus sign, no "-0".
func minus(s string) string {
	if strings.Trim(s, "-0.") == "" {
		return strings.TrimPrefix(s, "-")
	}
	return strings.Replace(s, "-", "−", 1)
}

func compareReport(cards []pageCard, rep report.Report) (measured int, err error) {
	if len(cards) != len(rep.Rules) || len(cards) == 0 {
		return 0, fmt.Errorf("%d report cards, %d rules in the report", len(cards), len(rep.Rules))
	}
	byRule := map[string]pageCard{}
	for _, c := range cards {
		byRule[c.Data["rule"]] = c
	}
	for _, r := range rep.Rules {
		c, ok := byRule[r.Rule]
		if !ok {
			return 0, fmt.Errorf("no card for %s", r.Rule)
		}
		for k, want := range map[string]string{
			"treatedN": strconv.Itoa(r.Treated.N), "treatedContacted": strconv.Itoa(r.Treated.Contacted),
			"controlN": strconv.Itoa(r.Control.N), "controlContacted": strconv.Itoa(r.Control.Contacted), "verdictCode": r.VerdictCode,
		} {
			if c.Data[k] != want {
				return 0, fmt.Errorf("%s: %s %q on the page, %q in the API", r.Rule, k, c.Data[k], want)
			}
		}
		if c.Verdict != r.Verdict {
			return 0, fmt.Errorf("%s: verdict %q, API %q", r.Rule, c.Verdict, r.Verdict)
		}
		// The printed rates are the report's, one per arm.
		want := []string{"no data", "no data"}
		for i, a := range []report.Arm{r.Treated, r.Control} {
			if a.N > 0 {
				want[i] = pct(a.Rate.Value)
			}
		}
		if strings.Join(c.Vals, "|") != strings.Join(want, "|") {
			return 0, fmt.Errorf("%s: chart values %v, report %v", r.Rule, c.Vals, want)
		}
		if r.Control.N == 0 {
			continue
		}
		measured++
		if got, want := c.Abs, minus(fmt.Sprintf("%.1f", 100*float64(r.AbsoluteReduction.Value))); got != want {
			return 0, fmt.Errorf("%s: reduction %q, report %q", r.Rule, got, want)
		}
		if got, want := c.Avoided, minus(fmt.Sprintf("%.0f", float64(r.ContactsAvoided.Value))); got != want {
			return 0, fmt.Errorf("%s: contacts avoided %q, report %q", r.Rule, got, want)
		}
		// Drawn to scale: two bars whose lengths keep the ratio of the
		// rates, each with its interval whisker (a line and two caps).
		if r.Treated.Rate.Value > 0 && r.Control.Rate.Value > 0 {
			if len(c.Bars) != 2 || c.Whiskers != 6 {
				return 0, fmt.Errorf("%s: %d bars and %d whisker lines drawn, want 2 and 6", r.Rule, len(c.Bars), c.Whiskers)
			}
			got, want := c.Bars[0]/c.Bars[1], float64(r.Treated.Rate.Value)/float64(r.Control.Rate.Value)
			if math.Abs(got/want-1) > 0.03 {
				return 0, fmt.Errorf("%s: bars %.1fpx and %.1fpx (ratio %.3f), rates ratio %.3f", r.Rule, c.Bars[0], c.Bars[1], got, want)
			}
		}
	}
	return measured, nil
}

func screenshot(t *testing.T, ctx context.Context, dir, name string, width int64) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", name, err)
	}
	if w := img.Bounds().Dx(); int64(w) != width || img.Bounds().Dy() < 400 {
		t.Fatalf("%s: %dx%d, want %d wide", name, w, img.Bounds().Dy(), width)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%dx%d)", p, img.Bounds().Dx(), img.Bounds().Dy())
}

// TestConsoleInChromium is the console's end-to-end test in a real browser.
func TestConsoleInChromium(t *testing.T) {
	ctx := browser(t)
	e := start(t)
	shots := os.Getenv("CONSOLE_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}

	// A browser gets in with ?token= once: the cookie replaces it, and the
	// token leaves the address bar.
	do(t, ctx, chromedp.EmulateViewport(1366, 900), chromedp.Navigate(e.base+"/?token="+token), chromedp.WaitVisible(chromedp.CSS("#rules")))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if loc != e.base+"/" {
		t.Fatalf("after ?token= the browser is at %s, want %s/", loc, e.base)
	}

	// The rule table: the API's counters, row by row.
	eventually(t, "rule table", func() error {
		do(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#rules")))
		var page []pageRule
		eval(t, ctx, rulesJS, &page)
		var api struct {
			Rules []apiRule `json:"rules"`
		}
		e.api(t, "/api/v1/rules", &api)
		return compareRules(page, api.Rules)
	})
	screenshot(t, ctx, shots, "console.png", 1366)

	// The report chart: the numbers of GET /api/v1/report (the console
	// and the API both call report.Compute with the same defaults), drawn
	// to scale.
	do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/report"]`)), chromedp.WaitVisible(chromedp.CSS("#overall")))
	eventually(t, "report chart", func() error {
		var cards []pageCard
		eval(t, ctx, reportJS, &cards)
		var rep report.Report
		e.api(t, "/api/v1/report", &rep)
		measured, err := compareReport(cards, rep)
		if err == nil && measured == 0 {
			err = fmt.Errorf("no rule with a control group in the report: the chart compares nothing")
		}
		if err != nil {
			do(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#overall")))
		}
		return err
	})
	screenshot(t, ctx, shots, "console-report.png", 1366)

	// Follow an entity from the notifications list to its timeline.
	do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/notifications"]`)), chromedp.WaitVisible(chromedp.CSS("table.notes")))
	link := `table.notes tbody tr:first-child td:nth-child(3) a`
	ref, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(link)))
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, chromedp.Click(chromedp.CSS(link)), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	r, err := explain.ParseRef(strings.TrimSpace(ref))
	if err != nil {
		t.Fatal(err)
	}
	var tl explain.Timeline
	e.api(t, "/api/v1/explain/"+r.Type+"/"+r.Key, &tl)
	var shown struct {
		Entity string   `json:"entity"`
		Kinds  []string `json:"kinds"`
	}
	eval(t, ctx, `JSON.stringify({entity: document.querySelector('#timeline').dataset.entity,
		kinds: [...document.querySelectorAll('#timeline li.item')].map(li => li.dataset.kind)})`, &shown)
	if shown.Entity != r.String() || len(shown.Kinds) != len(tl.Items) || len(tl.Items) == 0 {
		t.Fatalf("timeline of %s shows %d items, the API %d", shown.Entity, len(shown.Kinds), len(tl.Items))
	}
	for i, it := range tl.Items {
		if shown.Kinds[i] != it.Kind {
			t.Fatalf("item %d is a %s on the page, a %s in the API", i, shown.Kinds[i], it.Kind)
		}
	}

	// Phones: nothing wider than the screen, the chart still drawn.
	do(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS("#rules")))
	var fit struct {
		Scroll, Inner float64
		Bars          int
	}
	eval(t, ctx, `JSON.stringify({Scroll: document.documentElement.scrollWidth, Inner: window.innerWidth,
		Bars: document.querySelectorAll('svg.chart rect.bar').length})`, &fit)
	if fit.Scroll > fit.Inner+1 || fit.Bars == 0 {
		t.Fatalf("on a 390px screen the page is %vpx wide (viewport %vpx), %d bars", fit.Scroll, fit.Inner, fit.Bars)
	}
	screenshot(t, ctx, shots, "console-phone.png", 390)

	// The script refreshes the counters in place: a cancellation published
	// now shows up without a reload.
	do(t, ctx, chromedp.EmulateViewport(1366, 900), chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS("#rules")))
	fired := func() int64 {
		var page []pageRule
		eval(t, ctx, rulesJS, &page)
		for _, p := range page {
			if p.Name == "order-cancelled" {
				return p.Counts["fired"]
			}
		}
		t.Fatal("no order-cancelled row")
		return 0
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.__marker = 1`)); err != nil {
		t.Fatal(err)
	}
	before := fired()
	nc, err := nats.Connect(e.d.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "orders.cancelled", []byte(`{"order_id":"o-7","status":"cancelled"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "auto-refresh", func() error {
		var marker int
		eval(t, ctx, `JSON.stringify(window.__marker || 0)`, &marker)
		if marker != 1 {
			return fmt.Errorf("the page was reloaded; the script should refresh in place")
		}
		if n := fired(); n <= before {
			return fmt.Errorf("order-cancelled still shows fired %d", n)
		}
		return nil
	})

	// Without JavaScript every page still reads: the chart is in the HTML
	// (and the refresh switch, which only the script shows, stays hidden).
	do(t, ctx, chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return chromedp.Void{}, err
	}), chromedp.Navigate(e.base+"/report"), chromedp.WaitVisible(chromedp.CSS("#overall")))
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(html, `<rect class="bar"`) == 0 || !strings.Contains(html, `<label class="refresh" hidden="">`) {
		t.Fatalf("without JavaScript the report page lacks its chart, or the script ran:\n%.2000s", html)
	}
}
