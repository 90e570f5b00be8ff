// Package console is the ops console at `/`: server-rendered HTML pages
// over the same store reads as the JSON API —
//
//   - `/` the rules with their counters (fired, sent, deferred, and each
//     suppression verdict; explain.RuleCounts, as /api/v1/rules), a
//     summary of the effectiveness report and the latest notifications;
//   - `/notifications` the outbox, filtered by rule, status, channel and
//     customer (explain.ListNotifications, as /api/v1/notifications);
//   - `/entity?ref=order:o-1` an entity's (or customer's) timeline
//     (explain.Explain, as /api/v1/explain and `proactived explain`);
//   - `/report` the effectiveness report as charts — treated vs control
//     contact rates with their 95% intervals, contacts avoided
//     (report.Compute, as /api/v1/report).
//
// Pages are html/template, charts are inline SVG drawn on the server, and
// the stylesheet and the one small script are embedded (go:embed): no CDN,
// no build step, and everything reads without JavaScript. The script only
// refreshes the page's content every few seconds. Register it on the
// authenticated mux, so it is guarded by http.token like the API (a
// browser gets in with ?token= once; see httpapi.TokenCookie).
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/rules"
)

//go:embed templates/*.html assets/*
var files embed.FS

// Options are the console's dependencies.
type Options struct {
	// DB reads the store (the daemon's read-only pool).
	DB *sql.DB
	// Rules returns the rule set in force.
	Rules func() *rules.Set
	// Channels are the configured channel names (the notifications
	// filter offers them).
	Channels []string
	Clock    clock.Clock
	Logger   *slog.Logger
}

// Console serves the pages.
type Console struct {
	o      Options
	pages  map[string]*template.Template
	assets map[string]asset

	// The front page's effectiveness summary is the report of the last 30
	// days: the heaviest read of the console. Every open tab refreshes the
	// page every few seconds, so it is computed at most every
	// summaryTTL; the report page itself always computes afresh.
	mu          sync.Mutex
	summary     *report.Report
	summaryTime time.Time
}

// summaryTTL bounds how stale the front page's report summary may be.
const summaryTTL = 30 * time.Second

type asset struct {
	body        []byte
	contentType string
	version     string // content hash: the URL changes when the file does
}

// pageNames are the page templates (templates/<name>.html).
func pageNames() []string { return []string{"rules", "notifications", "entity", "report", "error"} }

// refreshEvery is how often the script refreshes a page, in seconds (0 =
// never): counters and lists often, the report's heavier query less.
func refreshEvery(page string) int {
	switch page {
	case "rules", "notifications":
		return 5
	case "entity":
		return 10
	case "report":
		return 30
	}
	return 0
}

// New parses the embedded templates and assets.
func New(o Options) (*Console, error) {
	if o.DB == nil || o.Rules == nil {
		return nil, errors.New("console: DB and Rules are required")
	}
	if o.Clock == nil {
		o.Clock = clock.Wall{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{o: o, pages: map[string]*template.Template{}, assets: map[string]asset{}}
	names, err := fs.Glob(files, "assets/*")
	if err != nil {
		return nil, fmt.Errorf("console: assets: %w", err)
	}
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("console: asset %s: %w", n, err)
		}
		sum := sha256.Sum256(b)
		ct := "application/octet-stream"
		switch path.Ext(n) {
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		c.assets[path.Base(n)] = asset{body: b, contentType: ct, version: hex.EncodeToString(sum[:6])}
	}
	base, err := template.New("layout.html").Funcs(c.funcs()).ParseFS(files, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	for _, name := range pageNames() {
		t, err := template.Must(base.Clone()).ParseFS(files, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return c, nil
}

// Register adds the console's routes to mux.
func (c *Console) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", c.rulesPage)
	mux.HandleFunc("GET /notifications", c.notificationsPage)
	mux.HandleFunc("GET /entity", c.entityPage)
	mux.HandleFunc("GET /report", c.reportPage)
	mux.HandleFunc("GET /assets/{name}", c.serveAsset)
}

// view is what every page template gets.
type view struct {
	Page    string // template name; the nav marks it
	Title   string
	Now     time.Time
	Refresh int
	// Ref is the entity search box's value.
	Ref  string
	Data any
	// Status and Error describe a failed request (the error page).
	Status int
	Error  string
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, v view) {
	t := c.pages[v.Page]
	if t == nil {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	v.Now = c.o.Clock.Now().UTC()
	if v.Refresh == 0 {
		v.Refresh = refreshEvery(v.Page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.o.Logger.Error("console: render", "page", v.Page, "err", err)
		http.Error(w, "console: render failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages hold customer data: never cached, never framed; the only
	// script and style are the console's own files.
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders the error page: bad input is 400, nothing recorded 404, a
// store failure 500 (logged).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status >= 500 {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusServiceUnavailable
		} else {
			c.o.Logger.Error("console request failed", "path", r.URL.Path, "err", err)
		}
	}
	c.render(w, r, status, view{Page: "error", Title: http.StatusText(status), Status: status, Error: err.Error()})
}

func (c *Console) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := c.assets[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("v") == a.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	_, _ = w.Write(a.body)
}

// assetURL is an asset's URL with its content hash.
func (c *Console) assetURL(name string) (string, error) {
	a, ok := c.assets[name]
	if !ok {
		return "", fmt.Errorf("console: no asset %q", name)
	}
	return "/assets/" + name + "?v=" + a.version, nil
}

// query reads one query parameter, refusing repeats and unknown names as
// the API does (a typo in a hand-edited URL would otherwise filter
// nothing without a word).
func query(r *http.Request, known ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, vals := range r.URL.Query() {
		ok := false
		for _, kn := range known {
			ok = ok || k == kn
		}
		if !ok {
			return nil, fmt.Errorf("unknown query parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
		if len(vals) > 1 {
			return nil, fmt.Errorf("query parameter %q given %d times", k, len(vals))
		}
		out[k] = strings.TrimSpace(vals[0])
	}
	return out, nil
}

// frontReport is the report of the last report.DefaultSince for the front
// page, recomputed at most every summaryTTL.
func (c *Console) frontReport(ctx context.Context) (*report.Report, error) {
	now := c.o.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.summary != nil && now.Sub(c.summaryTime) < summaryTTL && !now.Before(c.summaryTime) {
		return c.summary, nil
	}
	rep, err := report.Compute(ctx, c.o.DB, report.Options{Since: now.Add(-report.DefaultSince), Clock: c.o.Clock})
	if err != nil {
		return nil, err
	}
	c.summary, c.summaryTime = rep, now
	return rep, nil
}
