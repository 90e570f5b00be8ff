package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/store"
)

// The JSON API (docs/api.md) against the real daemon: auth, decisions and
// notifications with filters and paging, explain, the preference centre
// and reload.

const apiToken = "tok-3f9a-e2e"

const apiConfig = `
http: { token: "` + apiToken + `" }
channels:
  email: { type: webhook, url: "{{SINK}}/email", secret: "${SINK_SECRET}", address_field: email }
  sms:   { type: webhook, url: "{{SINK}}/sms", address_field: phone }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "00:00", end: "00:00" }
  frequency_cap: { max: 100, per: 24h }
  retry: { attempts: 3, backoff: 50ms, max_backoff: 200ms, timeout: 2s }
`

// apiCall makes one request; token "" sends no Authorization header. Every
// answer is JSON and never carries a secret.
func (e *env) apiCall(method, path, token, body string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+e.d.HTTPAddr()+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("%s %s: content type %q, body %s", method, path, ct, raw)
	}
	for _, secret := range []string{apiToken, sinkSecret} {
		if strings.Contains(string(raw), secret) {
			e.t.Errorf("%s %s: answer contains a secret: %s", method, path, raw)
		}
	}
	return resp.StatusCode, raw
}

// apiGet decodes a 200 answer into v.
func (e *env) apiGet(path string, v any) {
	e.t.Helper()
	code, raw := e.apiCall("GET", path, apiToken, "")
	if code != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, code, raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		e.t.Fatalf("GET %s: %v in %s", path, err, raw)
	}
}

// apiError checks a failure's status and its {"error": "..."} shape.
func (e *env) apiError(method, path, token, body string, status int, contains string) {
	e.t.Helper()
	code, raw := e.apiCall(method, path, token, body)
	var got struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(raw, &got); err != nil || got.Error == "" {
		e.t.Errorf("%s %s: error shape: %v %s", method, path, err, raw)
	}
	if code != status || !strings.Contains(got.Error, contains) {
		e.t.Errorf("%s %s: %d %q, want %d with %q", method, path, code, got.Error, status, contains)
	}
}

func copyRules(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(from, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAPI(t *testing.T) {
	rulesDir := copyRules(t, testdata("shop"))
	// Reloads are explicit here (the API's), not the file watcher's.
	e := startWith(t, rulesDir, apiConfig, func(o *daemon.Options) { o.WatchDebounce = -1 })
	seedCustomers(e)
	e.publish("logistics.parcel.created", `{"parcel_ref":"p-1","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-1","eta":"2026-11-22T12:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-1","eta":"2026-11-22T12:00:00Z"}`, "") // a repeat: deduped
	e.publish("logistics.parcel.created", `{"parcel_ref":"p-2","cust":"c-ru","promised":"2026-11-20T18:00:00Z"}`, "")
	e.publish("logistics.parcel.eta", `{"parcel_ref":"p-2","eta":"2026-11-23T12:00:00Z"}`, "")
	waitFor(t, 10*time.Second, func() error {
		if d := e.decisions("parcel-late parcel:p-1 deduped"); len(d) != 1 {
			return fmt.Errorf("deduped: %v", d)
		}
		if d := e.decisions("parcel-late parcel:p-2 delivered"); len(d) != 1 {
			return fmt.Errorf("p-2 not delivered: %v", e.decisions(""))
		}
		if d := e.decisions("parcel-late parcel:p-1 delivered"); len(d) != 1 {
			return fmt.Errorf("p-1 not delivered: %v", e.decisions(""))
		}
		return nil
	})

	t.Run("auth", func(t *testing.T) {
		e.apiError("GET", "/api/v1/rules", "", "", http.StatusUnauthorized, "bearer token")
		e.apiError("GET", "/api/v1/rules", "wrong-"+apiToken, "", http.StatusUnauthorized, "bearer token")
		e.apiError("POST", "/api/v1/reload", "", "", http.StatusUnauthorized, "bearer token")
		e.apiError("PUT", "/api/v1/customers/c-en/preferences", "", `{"channels":["email"]}`, http.StatusUnauthorized, "bearer token")
		if code, raw := e.apiCall("GET", "/api/v1/rules", apiToken, ""); code != http.StatusOK {
			t.Errorf("right token: %d %s", code, raw)
		}
		if r := e.api("/healthz"); r.StatusCode != http.StatusOK {
			t.Errorf("healthz needs no token: %d", r.StatusCode)
		}
		e.apiError("GET", "/api/v1/nope", apiToken, "", http.StatusNotFound, "no such endpoint")
		e.apiError("GET", "/api/v1/reload", apiToken, "", http.StatusMethodNotAllowed, "use POST")
	})

	t.Run("rules", func(t *testing.T) {
		var got struct {
			Rules []struct {
				Name, Kind, On, Entity, Mode, Priority, File, Pos string
				Line                                              int
				Counters                                          explain.Counts
			}
		}
		e.apiGet("/api/v1/rules", &got)
		if len(got.Rules) != 3 {
			t.Fatalf("%d rules", len(got.Rules))
		}
		r := got.Rules[0]
		if r.Name != "parcel-late" || r.Kind != "event" || r.On != "logistics.parcel.eta" || r.Entity != "parcel" || r.Mode != "live" ||
			r.Priority != "high" || !strings.HasSuffix(r.File, "rules.yaml") || r.Line == 0 || !strings.HasPrefix(r.Pos, r.File+":") {
			t.Errorf("parcel-late: %+v", r)
		}
		// p-1 sent + deduped, p-2 sent; deliveries are not firings.
		if c := r.Counters; c.Fired != 3 || c.Verdicts["sent"] != 2 || c.Verdicts["deduped"] != 1 || c.Verdicts["delivered"] != 2 {
			t.Errorf("parcel-late counters: %+v", c)
		}
		if s := got.Rules[2]; s.Name != "shadow-parcel-late" || s.Mode != "shadow" || s.Counters.Verdicts["shadow"] != 2 {
			t.Errorf("shadow rule: %+v", s)
		}
		var none struct {
			Rules []struct{ Counters explain.Counts }
		}
		e.apiGet("/api/v1/rules?since=2099-01-01T00:00:00Z", &none)
		if none.Rules[0].Counters.Fired != 0 {
			t.Errorf("since in the future: %+v", none.Rules[0])
		}
		e.apiError("GET", "/api/v1/rules?since=yesterday", apiToken, "", http.StatusBadRequest, "since")
	})

	var sent explain.Decision
	t.Run("decisions", func(t *testing.T) {
		var page explain.DecisionPage
		e.apiGet("/api/v1/decisions?rule=parcel-late&entity=parcel:p-1", &page)
		var verdicts []string
		for _, d := range page.Decisions {
			verdicts = append(verdicts, d.Verdict)
			if d.Rule != "parcel-late" || d.Entity != (explain.Ref{Type: "parcel", Key: "p-1"}) || d.Customer != "c-en" {
				t.Errorf("filter leaked %+v", d)
			}
			if d.Verdict == "sent" {
				sent = d
			}
		}
		slices.Sort(verdicts)
		if strings.Join(verdicts, ",") != "deduped,delivered,sent" {
			t.Errorf("verdicts %v", verdicts)
		}
		for i := 1; i < len(page.Decisions); i++ {
			if page.Decisions[i].ID >= page.Decisions[i-1].ID {
				t.Error("not newest first")
			}
		}
		var dd explain.DecisionPage
		e.apiGet("/api/v1/decisions?verdict=deduped&customer=c-en&rule=parcel-late", &dd)
		if len(dd.Decisions) != 1 || dd.Decisions[0].Notification != sent.Notification || sent.Notification == "" ||
			!strings.Contains(dd.Decisions[0].Reason, "as notification "+sent.Notification) {
			t.Errorf("deduped does not name the earlier notification %q: %+v", sent.Notification, dd)
		}

		// Paging with ?limit= and ?before= walks every decision once.
		var all explain.DecisionPage
		e.apiGet("/api/v1/decisions?limit=1000", &all)
		var walked []int64
		path := "/api/v1/decisions?limit=2"
		for i := 0; ; i++ {
			var p explain.DecisionPage
			e.apiGet(path, &p)
			if len(p.Decisions) > 2 {
				t.Fatalf("page of %d", len(p.Decisions))
			}
			for _, d := range p.Decisions {
				walked = append(walked, d.ID)
			}
			if p.NextBefore == 0 {
				break
			}
			if i > 50 {
				t.Fatal("paging does not end")
			}
			path = fmt.Sprintf("/api/v1/decisions?limit=2&before=%d", p.NextBefore)
		}
		var want []int64
		for _, d := range all.Decisions {
			want = append(want, d.ID)
		}
		if len(want) < 8 || !slices.Equal(walked, want) {
			t.Errorf("paged %v, all %v", walked, want)
		}
		var recent, future explain.DecisionPage
		e.apiGet("/api/v1/decisions?since=1h", &recent)
		e.apiGet("/api/v1/decisions?since=2099-01-01T00:00:00Z", &future)
		if len(recent.Decisions) != len(all.Decisions) || len(future.Decisions) != 0 {
			t.Errorf("since: %d recent, %d future", len(recent.Decisions), len(future.Decisions))
		}
		e.apiError("GET", "/api/v1/decisions?verdict=bogus", apiToken, "", http.StatusBadRequest, "want one of")
		e.apiError("GET", "/api/v1/decisions?limit=abc", apiToken, "", http.StatusBadRequest, "limit")
		e.apiError("GET", "/api/v1/decisions?rules=parcel-late", apiToken, "", http.StatusBadRequest, `unknown query parameter "rules"`)
		e.apiError("GET", "/api/v1/decisions?entity=p-1", apiToken, "", http.StatusBadRequest, "TYPE:KEY")
		e.apiError("GET", "/api/v1/decisions?before=x", apiToken, "", http.StatusBadRequest, "before")
	})

	t.Run("notifications", func(t *testing.T) {
		var page explain.NotificationPage
		e.apiGet("/api/v1/notifications?customer=c-en&status=sent&channel=sms&rule=parcel-late", &page)
		if len(page.Notifications) != 1 {
			t.Fatalf("%+v", page)
		}
		n := page.Notifications[0]
		if n.ID != sent.Notification || n.Channel != "sms" || n.Address != "+15550100" || n.Attempts != 1 || n.SentAt == nil ||
			n.CreatedAt.IsZero() || n.Subject != "Parcel p-1 is late" || !strings.Contains(n.Body, "2026-11-22T12:00:00Z") || n.LastError != "" {
			t.Errorf("notification %+v", n)
		}
		var email explain.NotificationPage
		e.apiGet("/api/v1/notifications?channel=email", &email)
		if len(email.Notifications) != 1 || email.Notifications[0].Customer != "c-ru" {
			t.Errorf("by email: %+v", email)
		}
		var p1, p2 explain.NotificationPage
		e.apiGet("/api/v1/notifications?limit=1&attempts=true", &p1)
		if len(p1.Notifications) != 1 || p1.NextBefore == "" || len(p1.Notifications[0].AttemptLog) != 1 || !p1.Notifications[0].AttemptLog[0].OK {
			t.Fatalf("page 1: %+v", p1)
		}
		e.apiGet("/api/v1/notifications?limit=1&before="+p1.NextBefore, &p2)
		if len(p2.Notifications) != 1 || p2.NextBefore != "" || p2.Notifications[0].ID >= p1.Notifications[0].ID {
			t.Errorf("page 2: %+v", p2)
		}
		e.apiError("GET", "/api/v1/notifications?status=lost", apiToken, "", http.StatusBadRequest, "status")
	})

	t.Run("explain", func(t *testing.T) {
		// The journal file is written a little after the decisions (it
		// lingers to batch rows): wait until it has p-1's events.
		waitFor(t, 5*time.Second, func() error {
			if ev, _, err := store.JournalEvents(context.Background(), e.d.Store().R, "parcel", "p-1", 10); err != nil || len(ev) < 2 {
				return fmt.Errorf("p-1's journal: %d events (%v), want 2", len(ev), err)
			}
			return nil
		})
		var tl explain.Timeline
		e.apiGet("/api/v1/explain/parcel/p-1", &tl)
		if !tl.Known || tl.View != "entity" || tl.State["eta"] != "2026-11-22T12:00:00Z" {
			t.Errorf("header %+v", tl)
		}
		var seen []string
		for _, it := range tl.Items {
			switch {
			case it.Kind == "decision" && it.Decision.Rule == "parcel-late":
				seen = append(seen, it.Decision.Verdict)
				if (it.Decision.Verdict == "sent" || it.Decision.Verdict == "deduped") && it.Decision.Notification != sent.Notification {
					t.Errorf("%s names %q, want %q", it.Decision.Verdict, it.Decision.Notification, sent.Notification)
				}
			case it.Kind == "event":
				seen = append(seen, "event "+it.Event.Subject)
			case it.Kind == "attempt":
				seen = append(seen, fmt.Sprintf("attempt %s %v", it.Attempt.Channel, it.Attempt.OK))
			}
		}
		for _, want := range []string{"event logistics.parcel.created", "event logistics.parcel.eta", "sent", "deduped", "attempt sms true", "delivered"} {
			if !slices.Contains(seen, want) {
				t.Errorf("timeline lacks %q: %v", want, seen)
			}
		}
		if len(tl.Notifications) != 1 || tl.Notifications[0].Status != "sent" || len(tl.Notifications[0].AttemptLog) != 1 {
			t.Errorf("notifications %+v", tl.Notifications)
		}
		var cv explain.Timeline
		e.apiGet("/api/v1/customers/c-en/explain", &cv)
		if cv.View != "customer" || cv.State["phone"] != "+15550100" || len(cv.Notifications) != 1 {
			t.Errorf("customer view %+v", cv)
		}
		var same explain.Timeline
		e.apiGet("/api/v1/explain/customer/c-en", &same)
		if same.View != "customer" || len(same.Items) != len(cv.Items) {
			t.Errorf("explain/customer/c-en differs from customers/c-en/explain")
		}
		e.apiError("GET", "/api/v1/explain/parcel/nope", apiToken, "", http.StatusNotFound, "nothing recorded")
	})

	t.Run("preferences", func(t *testing.T) {
		prefs := "/api/v1/customers/c-en/preferences"
		e.apiError("PUT", prefs, apiToken, `{"channels":["pigeon"]}`, http.StatusBadRequest, `"pigeon" is not a configured channel`)
		e.apiError("PUT", prefs, apiToken, `{"channels":"email"}`, http.StatusBadRequest, "list of strings")
		e.apiError("PUT", prefs, apiToken, `{"emial":"a@b.c"}`, http.StatusBadRequest, `unknown field "emial"`)
		e.apiError("PUT", prefs, apiToken, `{"timezone":"Mars/Olympus"}`, http.StatusBadRequest, "timezone")
		e.apiError("PUT", prefs, apiToken, `{"locale":7}`, http.StatusBadRequest, "want a string")
		e.apiError("PUT", prefs, apiToken, `[1]`, http.StatusBadRequest, "JSON object")
		e.apiError("PUT", prefs, apiToken, `{}`, http.StatusBadRequest, "no preferences")
		code, raw := e.apiCall("PUT", prefs, apiToken, `{"channels":["email"],"timezone":"Europe/Berlin","tier":"gold","email":"bob@example.com"}`)
		var got struct {
			Customer string
			Profile  map[string]any
		}
		if err := json.Unmarshal(raw, &got); code != http.StatusOK || err != nil {
			t.Fatalf("put: %d %s", code, raw)
		}
		if got.Customer != "c-en" || fmt.Sprint(got.Profile["channels"]) != "[email]" || got.Profile["timezone"] != "Europe/Berlin" ||
			got.Profile["tier"] != "gold" || got.Profile["phone"] != "+15550100" {
			t.Errorf("profile %+v", got.Profile)
		}
		// The next notification to c-en goes by email, not sms.
		before := len(e.sink.all())
		e.publish("logistics.parcel.eta", `{"parcel_ref":"p-1","eta":"2026-11-24T12:00:00Z"}`, "")
		waitFor(t, 10*time.Second, func() error {
			if got := e.sink.all(); len(got) != before+1 {
				return fmt.Errorf("%d notifications", len(got))
			}
			return nil
		})
		last := e.sink.all()[before]
		if last.Path != "/email" || last.Doc.To.Address != "bob@example.com" || last.Doc.To.Customer != "c-en" {
			t.Errorf("after the preference change: %s to %+v", last.Path, last.Doc.To)
		}
	})

	t.Run("reload", func(t *testing.T) {
		bad := "rules:\n  - name: broken\n    on: logistics.parcel.eta\n    entity: parcel\n    iff: true\n    notify: { to: parcel.cust, template: parcel-late }\n"
		if err := os.WriteFile(filepath.Join(rulesDir, "bad.yaml"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		code, raw := e.apiCall("POST", "/api/v1/reload", apiToken, "")
		var res struct {
			OK     bool
			Error  string
			Errors []string
			Rules  int
		}
		if err := json.Unmarshal(raw, &res); err != nil || code != http.StatusUnprocessableEntity || res.OK || res.Error == "" || len(res.Errors) == 0 {
			t.Fatalf("bad reload: %d %s", code, raw)
		}
		pos := regexp.MustCompile(`bad\.yaml:5:5: .*unknown key "iff"`)
		if !pos.MatchString(res.Errors[0]) {
			t.Errorf("error %q lacks file:line:col", res.Errors[0])
		}
		// The old rules keep working.
		before := len(e.sink.all())
		e.publish("logistics.parcel.eta", `{"parcel_ref":"p-1","eta":"2026-11-25T12:00:00Z"}`, "")
		waitFor(t, 10*time.Second, func() error {
			if got := len(e.sink.all()); got != before+1 {
				return fmt.Errorf("%d notifications after a failed reload", got)
			}
			return nil
		})

		good := "rules:\n  - name: parcel-created\n    on: logistics.parcel.created\n    entity: parcel\n    notify: { to: parcel.cust, template: parcel-late }\n"
		if err := os.Remove(filepath.Join(rulesDir, "bad.yaml")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rulesDir, "more.yaml"), []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		code, raw = e.apiCall("POST", "/api/v1/reload", apiToken, "")
		res = struct {
			OK     bool
			Error  string
			Errors []string
			Rules  int
		}{}
		if err := json.Unmarshal(raw, &res); err != nil || code != http.StatusOK || !res.OK || res.Rules != 4 {
			t.Fatalf("good reload: %d %s", code, raw)
		}
		var rs struct{ Rules []struct{ Name string } }
		e.apiGet("/api/v1/rules", &rs)
		// Files load in path order: more.yaml before rules.yaml.
		if len(rs.Rules) != 4 || rs.Rules[0].Name != "parcel-created" {
			t.Errorf("rules after reload: %+v", rs.Rules)
		}
	})
}
