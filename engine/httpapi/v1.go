package httpapi

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/rules"
)

// V1 is the JSON API under /api/v1: explain, decisions, notifications,
// rules, the preference centre and reload (docs/api.md). Register it with
// Options.Extra so it sits behind the bearer token.
//
// Its dependencies are functions, not the daemon, so the daemon can wire
// itself in without an import cycle and tests can wire anything.
type V1 struct {
	// DB reads the store (the daemon's read-only pool).
	DB    *sql.DB
	Clock clock.Clock
	// Rules returns the rule set in force.
	Rules func() *rules.Set
	// Channels are the configured channel names; preferences may only
	// name these.
	Channels []string
	// PutEntity merges fields into an entity (engine.PutEntity).
	PutEntity func(ctx context.Context, typ, key string, fields map[string]any) error
	// Entity reads an entity's current state (engine.Entity).
	Entity func(ctx context.Context, typ, key string) (map[string]any, error)
	// Flush writes entity state and journal rows the engine still holds
	// in memory (engine.Flush), so explain reads them; may be nil.
	Flush func(ctx context.Context) error
	// Reload recompiles the rules; on success it returns the number of
	// rules in force, on failure an error wrapping a *rules.ErrorList when
	// the rules do not compile.
	Reload func(ctx context.Context) (int, error)
	Logger *slog.Logger
}

// maxPreferencesBody bounds a preferences document.
const maxPreferencesBody = 64 << 10

// Register adds the API's routes to mux.
func (v *V1) Register(mux *http.ServeMux) {
	if v.Clock == nil {
		v.Clock = clock.Wall{}
	}
	if v.Logger == nil {
		v.Logger = slog.New(slog.DiscardHandler)
	}
	v.Logger = v.Logger.With("component", "api")
	route := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		// The same path with another method: a JSON 405, not the mux's
		// plain-text one.
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", method)
			WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; use %s", r.Method, method))
		})
	}
	route("GET", "/api/v1/explain/{type}/{key}", v.explainEntity)
	route("GET", "/api/v1/customers/{key}/explain", v.explainCustomer)
	route("PUT", "/api/v1/customers/{key}/preferences", v.putPreferences)
	route("GET", "/api/v1/decisions", v.decisions)
	route("GET", "/api/v1/notifications", v.notifications)
	route("GET", "/api/v1/rules", v.rules)
	route("POST", "/api/v1/reload", v.reload)
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see docs/api.md)", r.Method, r.URL.Path))
	})
}

// badRequest is an error the client caused (400).
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func badf(format string, a ...any) error { return badRequest{fmt.Sprintf(format, a...)} }

// fail writes err with the status it deserves; store errors are logged and
// reported without detail beyond their message.
func (v *V1) fail(w http.ResponseWriter, r *http.Request, err error) {
	var br badRequest
	switch {
	case errors.As(err, &br):
		WriteError(w, http.StatusBadRequest, err)
	case errors.Is(err, explain.ErrNotFound):
		WriteError(w, http.StatusNotFound, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		WriteError(w, http.StatusServiceUnavailable, err)
	default:
		v.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		WriteError(w, http.StatusInternalServerError, err)
	}
}

// query checks that only known parameters are present (a typo such as
// ?rules= would otherwise silently match everything) and none is repeated.
type query struct {
	v   map[string][]string
	err error
}

func parseQuery(r *http.Request, known ...string) *query {
	q := &query{v: r.URL.Query()}
	for k, vals := range q.v {
		if !slices.Contains(known, k) {
			q.err = badf("unknown query parameter %q (known: %s)", k, strings.Join(known, ", "))
			return q
		}
		if len(vals) > 1 {
			q.err = badf("query parameter %q given %d times", k, len(vals))
			return q
		}
	}
	return q
}

func (q *query) str(k string) string {
	if vals := q.v[k]; len(vals) > 0 {
		return vals[0]
	}
	return ""
}

// limit reads ?limit= (default 100 for lists, at most explain.MaxPage).
func (q *query) limit(def int) int {
	s := q.str("limit")
	if s == "" || q.err != nil {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		q.err = badf("limit %q: want a whole number from 1 to %d", s, explain.MaxPage)
		return def
	}
	return min(n, explain.MaxPage)
}

// since reads ?since= as an RFC 3339 time or a duration back from now
// (24h, 7d).
func (q *query) since(now time.Time) time.Time {
	s := q.str("since")
	if s == "" || q.err != nil {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t
	}
	d, err := rules.ParseDuration(s)
	if err != nil || d <= 0 {
		q.err = badf("since %q: want an RFC 3339 time (2026-11-20T10:00:00Z) or a positive duration (24h, 7d)", s)
		return time.Time{}
	}
	return now.Add(-d)
}

func (q *query) oneOf(k string, allowed []string) string {
	s := q.str(k)
	if s != "" && q.err == nil && !slices.Contains(allowed, s) {
		q.err = badf("%s %q: want one of %s", k, s, strings.Join(allowed, ", "))
	}
	return s
}

func (v *V1) flush(ctx context.Context) error {
	if v.Flush == nil {
		return nil
	}
	if err := v.Flush(ctx); err != nil {
		return fmt.Errorf("write entity state before reading it: %w", err)
	}
	return nil
}

func (v *V1) explainEntity(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "limit")
	lim := q.limit(explain.DefaultLimit)
	if q.err != nil {
		v.fail(w, r, q.err)
		return
	}
	ref := explain.Ref{Type: r.PathValue("type"), Key: r.PathValue("key")}
	if err := v.flush(r.Context()); err != nil {
		v.fail(w, r, err)
		return
	}
	tl, err := explain.Explain(r.Context(), v.DB, ref, explain.Options{Limit: lim})
	if err != nil {
		v.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, tl)
}

func (v *V1) explainCustomer(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "limit")
	lim := q.limit(explain.DefaultLimit)
	if q.err != nil {
		v.fail(w, r, q.err)
		return
	}
	if err := v.flush(r.Context()); err != nil {
		v.fail(w, r, err)
		return
	}
	tl, err := explain.Customer(r.Context(), v.DB, r.PathValue("key"), explain.Options{Limit: lim})
	if err != nil {
		v.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, tl)
}

func (v *V1) decisions(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "rule", "entity", "customer", "verdict", "since", "limit", "before")
	f := explain.DecisionFilter{
		Rule: q.str("rule"), Customer: q.str("customer"), Verdict: q.oneOf("verdict", explain.Verdicts()),
		Since: q.since(v.Clock.Now()), Limit: q.limit(100),
	}
	if s := q.str("entity"); s != "" && q.err == nil {
		ref, err := explain.ParseRef(s)
		if err != nil {
			q.err = badRequest{err.Error()}
		}
		f.Entity = ref
	}
	if s := q.str("before"); s != "" && q.err == nil {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			q.err = badf("before %q: want a decision id (next_before of the previous page)", s)
		}
		f.Before = n
	}
	if q.err != nil {
		v.fail(w, r, q.err)
		return
	}
	page, err := explain.ListDecisions(r.Context(), v.DB, f)
	if err != nil {
		v.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}

func (v *V1) notifications(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "rule", "customer", "status", "channel", "since", "limit", "before", "attempts")
	f := explain.NotificationFilter{
		Rule: q.str("rule"), Customer: q.str("customer"), Status: q.oneOf("status", explain.Statuses()),
		Channel: q.str("channel"), Since: q.since(v.Clock.Now()), Limit: q.limit(100), Before: q.str("before"),
	}
	switch a := q.oneOf("attempts", []string{"true", "false"}); a {
	case "true":
		f.Attempts = true
	}
	if q.err != nil {
		v.fail(w, r, q.err)
		return
	}
	page, err := explain.ListNotifications(r.Context(), v.DB, f)
	if err != nil {
		v.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}

// ruleInfo is one loaded rule as /api/v1/rules shows it.
type ruleInfo struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Kind        string         `json:"kind"` // event | absence | fanout | schedule
	On          string         `json:"on,omitempty"`
	Expect      string         `json:"expect,omitempty"`
	Schedule    string         `json:"schedule,omitempty"`
	Timezone    string         `json:"timezone,omitempty"`
	Entity      string         `json:"entity,omitempty"`
	ForEach     string         `json:"for_each,omitempty"`
	Mode        string         `json:"mode"`
	Priority    string         `json:"priority"`
	Template    string         `json:"template"`
	Channel     string         `json:"channel,omitempty"`
	File        string         `json:"file"`
	Line        int            `json:"line"`
	Pos         string         `json:"pos"` // file:line:col
	Counters    explain.Counts `json:"counters"`
	Holdout     float64        `json:"holdout,omitempty"` // fraction 0..1
	InhibitedBy []string       `json:"inhibited_by,omitempty"`
}

func (v *V1) rules(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "since")
	since := q.since(v.Clock.Now())
	if q.err != nil {
		v.fail(w, r, q.err)
		return
	}
	set := v.Rules()
	if set == nil {
		WriteError(w, http.StatusServiceUnavailable, errors.New("rules not loaded"))
		return
	}
	counts, err := explain.RuleCounts(r.Context(), v.DB, since)
	if err != nil {
		v.fail(w, r, err)
		return
	}
	out := make([]ruleInfo, 0, len(set.Rules))
	for _, ru := range set.Rules {
		mode := ru.Mode
		if mode == "" {
			mode = "live"
		}
		ri := ruleInfo{
			Name: ru.Name, Description: ru.Description, Kind: ru.Kind.String(), On: ru.On, Expect: ru.Expect,
			Schedule: ru.Schedule, Entity: ru.Entity, ForEach: ru.ForEach, Mode: mode,
			Priority: ru.Notify.Priority.String(), Template: ru.Notify.Template, Channel: ru.Notify.Channel,
			File: ru.Pos.File, Line: ru.Pos.Line, Pos: ru.Pos.String(), Holdout: ru.Holdout, InhibitedBy: ru.InhibitedBy,
			Counters: explain.Counts{Verdicts: map[string]int64{}},
		}
		if ru.Schedule != "" && ru.Timezone != nil {
			ri.Timezone = ru.Timezone.String()
		}
		if c := counts[ru.Name]; c != nil {
			ri.Counters = *c
		}
		out = append(out, ri)
	}
	resp := map[string]any{"rules": out}
	if !since.IsZero() {
		resp["since"] = since.UTC()
	}
	WriteJSON(w, http.StatusOK, resp)
}

func (v *V1) reload(w http.ResponseWriter, r *http.Request) {
	if q := parseQuery(r); q.err != nil {
		v.fail(w, r, q.err)
		return
	}
	// A reload must finish once begun, even if the client goes away.
	n, err := v.Reload(context.WithoutCancel(r.Context()))
	if err != nil {
		var list *rules.ErrorList
		if errors.As(err, &list) {
			WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{
				"ok": false, "error": "the rules do not compile; the old rules stay in force", "errors": list.Strings(),
			})
			return
		}
		v.Logger.Error("reload failed", "err", err)
		WriteJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "error": err.Error(), "errors": []string{err.Error()}})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "rules": n})
}

// preferenceFields are the customer entity's preference fields (SPEC.md
// "Customers, consent and delivery policy").
func preferenceFields() []string {
	return []string{"email", "phone", "push_token", "locale", "timezone", "channels", "opt_out", "tier"}
}

// localeRE is a BCP 47-like tag: en, ru-RU, pt_BR, zh-Hant-TW.
var localeRE = regexp.MustCompile(`^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$`)

func (v *V1) putPreferences(w http.ResponseWriter, r *http.Request) {
	if q := parseQuery(r); q.err != nil {
		v.fail(w, r, q.err)
		return
	}
	key := r.PathValue("key")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPreferencesBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", maxPreferencesBody))
			return
		}
		v.fail(w, r, badf("read body: %v", err))
		return
	}
	fields, err := parsePreferences(body, v.Channels)
	if err != nil {
		v.fail(w, r, err)
		return
	}
	if err := v.PutEntity(r.Context(), explain.CustomerType, key, fields); err != nil {
		v.fail(w, r, fmt.Errorf("save preferences of customer %s: %w", key, err))
		return
	}
	profile, err := v.Entity(r.Context(), explain.CustomerType, key)
	if err != nil {
		v.fail(w, r, fmt.Errorf("read customer %s: %w", key, err))
		return
	}
	v.Logger.Info("preferences updated", "customer", key, "fields", sortedFieldNames(fields))
	WriteJSON(w, http.StatusOK, map[string]any{"customer": key, "profile": profile})
}

// parsePreferences validates a preferences document: a JSON object with
// only the preference fields, each of its type; null clears a field.
func parsePreferences(body []byte, channels []string) (map[string]any, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, badf("body: want a JSON object with any of %s", strings.Join(preferenceFields(), ", "))
	}
	if dec.More() {
		return nil, badf("body: one JSON object expected, found more after it")
	}
	if len(raw) == 0 {
		return nil, badf("body: no preferences given (any of %s)", strings.Join(preferenceFields(), ", "))
	}
	out := make(map[string]any, len(raw))
	var errs []string
	for _, k := range sortedFieldNames(raw) {
		val := raw[k]
		v, err := preference(k, val, channels)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out[k] = v
	}
	if len(errs) > 0 {
		return nil, badRequest{strings.Join(errs, "; ")}
	}
	return out, nil
}

func preference(k string, val json.RawMessage, channels []string) (any, error) {
	if string(bytes.TrimSpace(val)) == "null" {
		return nil, nil
	}
	str := func() (string, error) {
		var s string
		if err := json.Unmarshal(val, &s); err != nil {
			return "", fmt.Errorf("%s: want a string (or null to clear it)", k)
		}
		return s, nil
	}
	list := func() ([]any, error) {
		var ss []string
		if err := json.Unmarshal(val, &ss); err != nil {
			return nil, fmt.Errorf("%s: want a list of strings (or null to clear it)", k)
		}
		out := make([]any, len(ss))
		for i, s := range ss {
			out[i] = s
		}
		return out, nil
	}
	switch k {
	case "email":
		s, err := str()
		if err == nil && s != "" && (!strings.Contains(s, "@") || strings.ContainsAny(s, " \t\r\n")) {
			err = fmt.Errorf("email %q: not an address", s)
		}
		return s, err
	case "phone", "push_token":
		return str()
	case "locale":
		s, err := str()
		if err == nil && s != "" && !localeRE.MatchString(s) {
			err = fmt.Errorf("locale %q: want a language tag such as en or ru-RU", s)
		}
		return s, err
	case "timezone":
		s, err := str()
		if err != nil || s == "" {
			return s, err
		}
		if s == "Local" {
			return nil, fmt.Errorf("timezone %q: name an IANA zone (Europe/Moscow); Local depends on the host", s)
		}
		if _, err := time.LoadLocation(s); err != nil {
			return nil, fmt.Errorf("timezone %q: unknown IANA zone", s)
		}
		return s, nil
	case "channels":
		l, err := list()
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, c := range l {
			name := c.(string)
			if !slices.Contains(channels, name) {
				return nil, fmt.Errorf("channels: %q is not a configured channel (configured: %s)", name, strings.Join(channels, ", "))
			}
			if seen[name] {
				return nil, fmt.Errorf("channels: %q listed twice", name)
			}
			seen[name] = true
		}
		return l, nil
	case "opt_out":
		if s, err := str(); err == nil {
			if s != "all" {
				return nil, fmt.Errorf(`opt_out %q: want "all" or a list of channel names`, s)
			}
			return s, nil
		}
		l, err := list()
		if err != nil {
			return nil, fmt.Errorf(`opt_out: want "all" or a list of channel names (or null to clear it)`)
		}
		for _, c := range l {
			name := c.(string)
			if name != "all" && !slices.Contains(channels, name) {
				return nil, fmt.Errorf("opt_out: %q is not a configured channel (configured: %s, or all)", name, strings.Join(channels, ", "))
			}
		}
		return l, nil
	case "tier":
		dec := json.NewDecoder(bytes.NewReader(val))
		dec.UseNumber()
		var x any
		if err := dec.Decode(&x); err != nil {
			return nil, fmt.Errorf("tier: %w", err)
		}
		switch t := x.(type) {
		case string:
			return t, nil
		case json.Number:
			if i, err := t.Int64(); err == nil {
				return int(i), nil
			}
			f, _ := t.Float64()
			return f, nil
		}
		return nil, fmt.Errorf("tier: want a string or a number (or null to clear it)")
	}
	return nil, fmt.Errorf("unknown field %q (known: %s)", k, strings.Join(preferenceFields(), ", "))
}

func sortedFieldNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
