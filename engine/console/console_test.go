package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/console"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/demo"
	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/httpapi"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// shop is one store filled by the demo's compressed simulation (the real
// engine over the starter rules), served by the console and the JSON API
// side by side on one mux, at a fixed virtual "now".
type shop struct {
	srv *httptest.Server
	db  *store.Store
	set *rules.Set
	clk *clock.Virtual
}

// TestConsole serves one simulated shop (a couple of seconds of the real
// engine) to every subtest; they only read it.
func TestConsole(t *testing.T) {
	s := newShop(t)
	t.Run("RulesPageShowsTheAPICounters", func(t *testing.T) { testRulesPage(t, s) })
	t.Run("ReportChartShowsTheReport", func(t *testing.T) { testReportChart(t, s) })
	t.Run("NotificationsFilters", func(t *testing.T) { testNotificationsFilters(t, s) })
	t.Run("EntityTimeline", func(t *testing.T) { testEntityTimeline(t, s) })
	t.Run("PagesAreSelfContained", func(t *testing.T) { testSelfContained(t, s) })
}

func newShop(t *testing.T) *shop {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load("../../proactived.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = "../../rules.d"
	set, err := daemon.LoadRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "proactived.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	end := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	span := 72 * time.Hour
	if _, err := demo.Compressed(ctx, demo.CompressedOptions{Store: st, Config: cfg, Rules: set, Shop: demo.Shop(3, end.Add(-span), span, 1200), End: end}); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewVirtual(end)
	con, err := console.New(console.Options{DB: st.R, Rules: func() *rules.Set { return set }, Channels: cfg.ChannelNames(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	con.Register(mux)
	(&httpapi.V1{DB: st.R, Clock: clk, Rules: func() *rules.Set { return set }, Channels: cfg.ChannelNames()}).Register(mux)
	httpapi.RegisterReport(mux, st.R, clk)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &shop{srv: srv, db: st, set: set, clk: clk}
}

func (s *shop) get(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := s.srv.Client().Get(s.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (s *shop) page(t *testing.T, path string) string {
	t.Helper()
	code, h, body := s.get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", path, code, body)
	}
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("GET %s: Content-Type %q", path, ct)
	}
	return body
}

func (s *shop) json(t *testing.T, path string, v any) {
	t.Helper()
	code, _, body := s.get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// element returns the opening tag and content of the element whose id
// is id, up to its closing tag (no nesting of the same tag inside).
func element(t *testing.T, html, tag, id string) string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<` + tag + `\b[^>]*\bid="` + regexp.QuoteMeta(id) + `"[^>]*>.*?</` + tag + `>`)
	m := re.FindString(html)
	if m == "" {
		t.Fatalf("no <%s id=%q> in the page", tag, id)
	}
	return m
}

func attr(t *testing.T, el, name string) string {
	t.Helper()
	m := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `="([^"]*)"`).FindStringSubmatch(el)
	if m == nil {
		t.Fatalf("no %s in %.200s", name, el)
	}
	return m[1]
}

// testRulesPage: every loaded rule has a row whose fired, sent,
// deferred, suppressed and per-verdict numbers are those of GET
// /api/v1/rules.
func testRulesPage(t *testing.T, s *shop) {
	html := s.page(t, "/")
	var api struct {
		Rules []struct {
			Name     string
			Counters explain.Counts
		}
	}
	s.json(t, "/api/v1/rules", &api)
	if len(api.Rules) != len(s.set.Rules) || len(api.Rules) == 0 {
		t.Fatalf("%d rules in the API, %d loaded", len(api.Rules), len(s.set.Rules))
	}
	var fired, sent int64
	for _, r := range api.Rules {
		row := element(t, html, "tr", "rule-"+r.Name)
		count := func(name string) int64 {
			m := regexp.MustCompile(`data-count="` + name + `"[^>]*>(\d+)<`).FindStringSubmatch(row)
			if m == nil {
				t.Fatalf("rule %s: no %s cell", r.Name, name)
			}
			n, _ := strconv.ParseInt(m[1], 10, 64)
			return n
		}
		v := r.Counters.Verdicts
		want := map[string]int64{"fired": r.Counters.Fired, "sent": v["sent"], "deferred": v["deferred"],
			"suppressed": r.Counters.Fired - v["sent"] - v["deferred"]}
		for name, n := range want {
			if got := count(name); got != n {
				t.Errorf("rule %s: %s %d on the page, %d in the API", r.Name, name, got, n)
			}
		}
		for _, verdict := range []string{"deduped", "held_out", "inhibited", "capped", "opted_out", "pending", "armed", "released", "superseded"} {
			m := regexp.MustCompile(`data-verdict="` + verdict + `">[^<]*<b>(\d+)</b>`).FindStringSubmatch(row)
			got := int64(0)
			if m != nil {
				got, _ = strconv.ParseInt(m[1], 10, 64)
			}
			if got != v[verdict] {
				t.Errorf("rule %s: %s chip %d, API %d", r.Name, verdict, got, v[verdict])
			}
		}
		fired += r.Counters.Fired
		sent += v["sent"]
	}
	if fired == 0 || sent == 0 {
		t.Fatalf("the simulated shop fired %d times and sent %d: the fixture is empty", fired, sent)
	}
	if got := element(t, html, "b", "tile-fired"); !strings.Contains(got, ">"+strconv.FormatInt(fired, 10)+"<") {
		t.Errorf("fired tile %q, want %d", got, fired)
	}
	// ?since= narrows the counters exactly as the API's does.
	s.json(t, "/api/v1/rules?since=6h", &api)
	html = s.page(t, "/?since=6h")
	for _, r := range api.Rules {
		row := element(t, html, "tr", "rule-"+r.Name)
		if !strings.Contains(row, fmt.Sprintf(`data-count="fired" data-label="Fired">%d<`, r.Counters.Fired)) {
			t.Errorf("since=6h: rule %s row does not show fired %d", r.Name, r.Counters.Fired)
		}
	}
}

// testReportChart: each rule's card carries the numbers of GET
// /api/v1/report (and report.Compute), the chart draws one bar per arm
// whose length is the rate, and the printed values match.
func testReportChart(t *testing.T, s *shop) {
	html := s.page(t, "/report")
	var rep report.Report
	s.json(t, "/api/v1/report", &rep)
	direct, err := report.Compute(context.Background(), s.db.R, report.Options{Since: s.clk.Now().Add(-report.DefaultSince), Clock: s.clk})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rules) == 0 || len(rep.Rules) != len(direct.Rules) {
		t.Fatalf("API %d rules, Compute %d", len(rep.Rules), len(direct.Rules))
	}
	measured := 0
	for i, r := range rep.Rules {
		if r.Treated.N != direct.Rules[i].Treated.N || r.Control.N != direct.Rules[i].Control.N {
			t.Fatalf("API and Compute disagree on %s", r.Rule)
		}
		card := element(t, html, "article", "report-"+r.Rule)
		for name, want := range map[string]string{
			"data-treated-n": strconv.Itoa(r.Treated.N), "data-treated-contacted": strconv.Itoa(r.Treated.Contacted),
			"data-control-n": strconv.Itoa(r.Control.N), "data-control-contacted": strconv.Itoa(r.Control.Contacted),
			"data-treated-rate": num(r.Treated.Rate.Value), "data-control-rate": num(r.Control.Rate.Value),
			"data-abs": num(r.AbsoluteReduction.Value), "data-abs-low": num(r.AbsoluteReduction.Low), "data-abs-high": num(r.AbsoluteReduction.High),
			"data-avoided": num(r.ContactsAvoided.Value), "data-verdict-code": r.VerdictCode,
		} {
			if got := attr(t, card, name); got != want {
				t.Errorf("%s: %s=%q, report says %q", r.Rule, name, got, want)
			}
		}
		if !strings.Contains(card, ">"+r.Verdict+"<") {
			t.Errorf("%s: verdict %q not shown", r.Rule, r.Verdict)
		}
		// One bar per arm with data, its width the rate on the axis.
		bars := regexp.MustCompile(`<rect class="bar" x="0" y="[\d.]+" width="([\d.]+)%"`).FindAllStringSubmatch(card, -1)
		vals := regexp.MustCompile(`<text class="val"[^>]*>([^<]*)</text>`).FindAllStringSubmatch(card, -1)
		if len(vals) != 2 {
			t.Fatalf("%s: %d value labels, want 2", r.Rule, len(vals))
		}
		for k, a := range []report.Arm{r.Treated, r.Control} {
			want := "no data"
			if a.N > 0 {
				want = fmt.Sprintf("%.1f%%", 100*float64(a.Rate.Value))
			}
			if vals[k][1] != want {
				t.Errorf("%s: arm %d labelled %q, want %q", r.Rule, k, vals[k][1], want)
			}
		}
		if r.Treated.Rate.Value > 0 && r.Control.Rate.Value > 0 {
			measured++
			if len(bars) != 2 {
				t.Fatalf("%s: %d bars", r.Rule, len(bars))
			}
			wt, _ := strconv.ParseFloat(bars[0][1], 64)
			wc, _ := strconv.ParseFloat(bars[1][1], 64)
			ratio, want := wt/wc, float64(r.Treated.Rate.Value)/float64(r.Control.Rate.Value)
			if d := ratio/want - 1; d > 0.02 || d < -0.02 {
				t.Errorf("%s: bar widths %v%% and %v%% (ratio %.3f), rates ratio %.3f", r.Rule, wt, wc, ratio, want)
			}
		}
	}
	if measured == 0 {
		t.Fatal("no rule with both arms contacted: the fixture measures nothing")
	}
	overall := element(t, html, "section", "overall")
	if got, want := attr(t, overall, "data-notified-entities"), strconv.Itoa(rep.Overall.Notified.Entities); got != want {
		t.Errorf("overall notified %s, want %s", got, want)
	}
	// The options are the API's: a bad one is a 400 page, not a guess.
	for _, q := range []string{"?window=-1d", "?by=nobody", "?since=yesterday", "?rules=x"} {
		if code, _, _ := s.get(t, "/report"+q); code != http.StatusBadRequest {
			t.Errorf("/report%s: %d, want 400", q, code)
		}
	}
	html = s.page(t, "/report?topic=order_status&window=48h&rule="+rep.Rules[0].Rule)
	if strings.Count(html, `<article class="card rcard"`) != 1 || !strings.Contains(html, "topic order_status") {
		t.Error("rule, topic and window options not applied")
	}
}

func num(n report.Num) string {
	if !n.Valid() {
		return ""
	}
	return strconv.FormatFloat(float64(n), 'f', -1, 64)
}

// testNotificationsFilters: the filters narrow the list exactly as the
// API's parameters do, paging goes on with the same filters, and bad
// input is a 400 that says why.
func testNotificationsFilters(t *testing.T, s *shop) {
	rowRE := regexp.MustCompile(`<tr data-id="([0-9A-Z]+)">`)
	for _, q := range []string{"", "?status=sent", "?rule=delivery-delayed&status=deferred", "?channel=sms", "?status=capped"} {
		html := s.page(t, "/notifications"+q)
		var api explain.NotificationPage
		apiQ := "?limit=50"
		if q != "" {
			apiQ += "&" + strings.TrimPrefix(q, "?")
		}
		s.json(t, "/api/v1/notifications"+apiQ, &api)
		rows := rowRE.FindAllStringSubmatch(html, -1)
		if len(rows) != len(api.Notifications) {
			t.Fatalf("%s: %d rows, API %d", q, len(rows), len(api.Notifications))
		}
		for i, n := range api.Notifications {
			if rows[i][1] != n.ID {
				t.Fatalf("%s: row %d is %s, API %s", q, i, rows[i][1], n.ID)
			}
		}
		if q == "?status=sent" {
			if len(rows) != 50 || api.NextBefore == "" {
				t.Fatalf("want a full first page of sent notifications, got %d", len(rows))
			}
			older := "/notifications?before=" + api.NextBefore + "&amp;status=sent"
			if !strings.Contains(html, `href="`+older+`"`) {
				t.Fatalf("no link to the older page %s", older)
			}
			next := s.page(t, "/notifications?status=sent&before="+url.QueryEscape(api.NextBefore))
			if first := rowRE.FindStringSubmatch(next); first == nil || first[1] >= api.NextBefore {
				t.Fatalf("the older page starts at %v, want below %s", first, api.NextBefore)
			}
		}
	}
	for q, want := range map[string]string{
		"?status=sent_ok":        "status &#34;sent_ok&#34;: want one of",
		"?rules=x":               "unknown query parameter &#34;rules&#34;",
		"?rule=a&rule=b":         "given 2 times",
		"?customer=%3Cscript%3E": "",
	} {
		code, _, body := s.get(t, "/notifications"+q)
		if want == "" {
			// Reflected input is escaped, never markup.
			if code != http.StatusOK || strings.Contains(body, "<script>") {
				t.Errorf("%s: %d, unescaped input in the page", q, code)
			}
			continue
		}
		if code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q, want 400 with %q", q, code, body[:min(len(body), 200)], want)
		}
	}
}

// testEntityTimeline: an order's page lists the same items as the API's
// explain, links its customer, and unknown or malformed references are
// 404 and 400 pages.
func testEntityTimeline(t *testing.T, s *shop) {
	var page explain.NotificationPage
	s.json(t, "/api/v1/notifications?status=sent&limit=1", &page)
	if len(page.Notifications) == 0 {
		t.Fatal("no sent notification in the fixture")
	}
	n := page.Notifications[0]
	html := s.page(t, "/entity?ref="+url.QueryEscape(n.Entity.String()))
	var tl explain.Timeline
	s.json(t, "/api/v1/explain/"+n.Entity.Type+"/"+n.Entity.Key, &tl)
	if got := strings.Count(html, `<li class="item `); got != len(tl.Items) || got == 0 {
		t.Fatalf("%d timeline items on the page, %d in the API", got, len(tl.Items))
	}
	if !strings.Contains(html, `data-verdict="sent"`) || !strings.Contains(html, n.ID) {
		t.Error("the sent decision and its notification are not on the timeline")
	}
	if !strings.Contains(html, `href="/entity?ref=customer%3A`+n.Customer+`"`) {
		t.Errorf("no link to customer %s", n.Customer)
	}
	cust := s.page(t, "/entity?ref=customer:"+n.Customer)
	if !strings.Contains(cust, "customer view") || !strings.Contains(cust, n.ID) {
		t.Error("the customer view does not show the customer's notification")
	}
	if code, _, body := s.get(t, "/entity?ref=order:nope"); code != http.StatusNotFound || !strings.Contains(body, "nothing recorded about order:nope") {
		t.Errorf("unknown entity: %d", code)
	}
	if code, _, body := s.get(t, "/entity?ref=o-1"); code != http.StatusBadRequest || !strings.Contains(body, "want TYPE:KEY") {
		t.Errorf("malformed ref: %d", code)
	}
	if html := s.page(t, "/entity"); !strings.Contains(html, "type:key") {
		t.Error("the empty search page does not explain the search")
	}
}

// testSelfContained: every page carries its security headers,
// loads only the console's own embedded assets (no CDN, no inline
// script), and the assets are served with their types; reading needs no
// JavaScript (the content is in the HTML), which the browser test checks
// with scripts disabled.
func testSelfContained(t *testing.T, s *shop) {
	for _, p := range []string{"/", "/notifications", "/report", "/entity", "/entity?ref=order:o-1"} {
		code, h, body := s.get(t, p)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", p, code)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", p, h)
		}
		if !strings.Contains(body, `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
			t.Errorf("%s: no viewport meta", p)
		}
		for _, bad := range []string{`src="http`, `href="http`, `src="//`, `href="//`, "<script>", "<style", "style=\""} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: contains %q (only the console's own files may load; CSP forbids inline code)", p, bad)
			}
		}
		for _, ref := range regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(body, -1) {
			u := strings.ReplaceAll(ref[1], "&amp;", "&")
			code, h, asset := s.get(t, u)
			if code != http.StatusOK || len(asset) == 0 || !strings.Contains(h.Get("Cache-Control"), "immutable") {
				t.Errorf("%s: %d %q", u, code, h.Get("Cache-Control"))
			}
		}
	}
	for name, ct := range map[string]string{"console.css": "text/css", "console.js": "text/javascript", "icon.svg": "image/svg+xml"} {
		code, h, _ := s.get(t, "/assets/"+name)
		if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), ct) {
			t.Errorf("/assets/%s: %d %q", name, code, h.Get("Content-Type"))
		}
	}
	if code, _, _ := s.get(t, "/assets/nope.css"); code != http.StatusNotFound {
		t.Errorf("missing asset: %d", code)
	}
}

// TestConsoleOnAnEmptyStore: a daemon that has seen nothing yet still
// serves every page, saying there is nothing yet rather than failing.
func TestConsoleOnAnEmptyStore(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Load("../../proactived.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = "../../rules.d"
	set, err := daemon.LoadRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "proactived.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	con, err := console.New(console.Options{DB: st.R, Rules: func() *rules.Set { return set }, Channels: cfg.ChannelNames()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	con.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s := &shop{srv: srv}
	for path, want := range map[string]string{
		"/":              "No rule with a holdout has fired",
		"/notifications": "No notifications.",
		"/report":        "No rule sent or held out a notification in this period.",
		"/entity":        "type:key",
	} {
		if html := s.page(t, path); !strings.Contains(html, want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	if html := s.page(t, "/"); !strings.Contains(html, `id="rule-delivery-delayed"`) || !strings.Contains(html, `data-label="Fired">0<`) {
		t.Error("the rules are not listed with zero counters")
	}
}
