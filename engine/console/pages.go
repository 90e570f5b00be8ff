package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/report"
)

// ---- rules (the front page) ----

// chip is one verdict count.
type chip struct {
	Verdict, Label string
	N              int64
	Class          string
}

type ruleRow struct {
	Name, Description, Kind, Trigger, Mode, Priority string
	Holdout                                          float64
	Fired, Sent, Deferred, Delivered, Suppressed     int64
	// Suppressions are the firings that sent nothing, by verdict; Later
	// are the verdicts about timers and notifications after the firing.
	Suppressions, Later []chip
	Pos                 string
}

type tiles struct {
	Fired, Sent, Deferred, Suppressed, Delivered int64
	// Avoided is the contacts avoided over the rules the report can
	// measure (a control group); Measured counts those rules. With one
	// such rule, Only is its report (interval and verdict).
	Avoided  report.Num
	Measured int
	Only     *reportCard
}

type rulesData struct {
	Since    string // ?since= as given
	SinceAt  time.Time
	Rules    []ruleRow
	Tiles    tiles
	Report   *reportView
	Latest   []noteRow
	Channels []string
}

// suppressionVerdicts are the verdicts of a firing that sent nothing.
func suppressionVerdicts() []string {
	return []string{
		policy.VerdictDeduped, policy.VerdictHeldOut, policy.VerdictInhibited, policy.VerdictCapped,
		policy.VerdictOptedOut, policy.VerdictNoChannel, policy.VerdictShadow, policy.VerdictError,
	}
}

// laterVerdicts are the verdicts recorded around a firing (hold-downs,
// deadlines) and after it (delivery outcomes, re-checks, promises).
func laterVerdicts() []string {
	return []string{
		policy.VerdictPending, policy.VerdictArmed, policy.VerdictCancelled, policy.VerdictReleased,
		policy.VerdictSuperseded, policy.VerdictPromise, policy.VerdictFallback, policy.VerdictFailed,
	}
}

func verdictLabel(v string) string { return strings.ReplaceAll(v, "_", " ") }

// verdictClass is a verdict's badge colour.
func verdictClass(v string) string {
	switch strings.ToLower(v) {
	case policy.VerdictSent, policy.VerdictDelivered, policy.VerdictReleased, "promise kept":
		return "ok"
	case policy.VerdictDeferred, policy.VerdictPending, policy.VerdictArmed:
		return "wait"
	case policy.VerdictHeldOut:
		return "control"
	case policy.VerdictFailed, policy.VerdictError, "promise broken":
		return "bad"
	case policy.VerdictFallback, policy.VerdictCapped, policy.VerdictInhibited, policy.VerdictDeduped,
		policy.VerdictOptedOut, policy.VerdictNoChannel, policy.VerdictSuperseded, policy.VerdictCancelled,
		policy.VerdictShadow:
		return "muted"
	case "event":
		return "event"
	case "contact":
		return "contact"
	case "attempt":
		return "attempt"
	case "timer":
		return "wait"
	}
	return "muted"
}

func (c *Console) rulesPage(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "since")
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	now := c.o.Clock.Now().UTC()
	d := rulesData{Since: q["since"], Channels: c.o.Channels}
	if d.Since != "" {
		if d.SinceAt, err = report.ParseTime(d.Since, now); err != nil {
			c.fail(w, r, http.StatusBadRequest, fmt.Errorf("since: %w", err))
			return
		}
	}
	set := c.o.Rules()
	if set == nil {
		c.fail(w, r, http.StatusServiceUnavailable, errors.New("rules not loaded"))
		return
	}
	// The same counters as GET /api/v1/rules: one GROUP BY over decisions.
	counts, err := explain.RuleCounts(r.Context(), c.o.DB, d.SinceAt)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	for _, ru := range set.Rules {
		row := ruleRow{
			Name: ru.Name, Description: ru.Description, Kind: ru.Kind.String(), Mode: ru.Mode,
			Priority: ru.Notify.Priority.String(), Holdout: ru.Holdout, Pos: ru.Pos.String(),
		}
		if row.Mode == "" {
			row.Mode = "live"
		}
		switch {
		case ru.Schedule != "":
			row.Trigger = ru.Schedule
			if ru.Timezone != nil {
				row.Trigger += " " + ru.Timezone.String()
			}
		case ru.Expect != "":
			row.Trigger = ru.On + " → expects " + ru.Expect
		default:
			row.Trigger = ru.On
		}
		if ct := counts[ru.Name]; ct != nil {
			v := ct.Verdicts
			row.Fired, row.Sent, row.Deferred, row.Delivered = ct.Fired, v[policy.VerdictSent], v[policy.VerdictDeferred], v[policy.VerdictDelivered]
			row.Suppressed = ct.Fired - row.Sent - row.Deferred
			for _, vv := range suppressionVerdicts() {
				if n := v[vv]; n > 0 {
					row.Suppressions = append(row.Suppressions, chip{Verdict: vv, Label: verdictLabel(vv), N: n, Class: verdictClass(vv)})
				}
			}
			for _, vv := range laterVerdicts() {
				if n := v[vv]; n > 0 {
					row.Later = append(row.Later, chip{Verdict: vv, Label: verdictLabel(vv), N: n, Class: verdictClass(vv)})
				}
			}
		}
		d.Tiles.Fired += row.Fired
		d.Tiles.Sent += row.Sent
		d.Tiles.Deferred += row.Deferred
		d.Tiles.Suppressed += row.Suppressed
		d.Tiles.Delivered += row.Delivered
		d.Rules = append(d.Rules, row)
	}
	rep, err := c.frontReport(r.Context())
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d.Report = newReportView(rep, url.Values{}, true)
	d.Tiles.Avoided, d.Tiles.Measured = d.Report.Avoided, d.Report.Measured
	if d.Report.Measured == 1 {
		d.Tiles.Only = &d.Report.Cards[0]
	}
	page, err := explain.ListNotifications(r.Context(), c.o.DB, explain.NotificationFilter{Limit: 8})
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d.Latest = noteRows(page.Notifications)
	c.render(w, r, http.StatusOK, view{Page: "rules", Title: "Rules", Data: d})
}

// ---- notifications ----

type noteRow struct {
	explain.Notification
	EntityRef string // type:key
	Time      time.Time
}

func noteRows(ns []explain.Notification) []noteRow {
	out := make([]noteRow, 0, len(ns))
	for _, n := range ns {
		row := noteRow{Notification: n, Time: n.CreatedAt}
		if !n.Entity.IsZero() {
			row.EntityRef = n.Entity.String()
		}
		out = append(out, row)
	}
	return out
}

type notificationsData struct {
	Filter   map[string]string
	Rules    []string
	Statuses []string
	Channels []string
	Rows     []noteRow
	// Older is the link to the next (older) page; Newest the first page
	// with the same filters.
	Older, Newest string
	Filtered      bool
}

func (c *Console) notificationsPage(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "rule", "status", "channel", "customer", "before")
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if s := q["status"]; s != "" && !slices.Contains(explain.Statuses(), s) {
		c.fail(w, r, http.StatusBadRequest, fmt.Errorf("status %q: want one of %s", s, strings.Join(explain.Statuses(), ", ")))
		return
	}
	for _, k := range []string{"rule", "status", "channel", "customer", "before"} {
		if _, ok := q[k]; !ok {
			q[k] = "" // the form reads every key, given or not
		}
	}
	f := explain.NotificationFilter{Rule: q["rule"], Status: q["status"], Channel: q["channel"], Customer: q["customer"], Before: q["before"], Limit: 50}
	page, err := explain.ListNotifications(r.Context(), c.o.DB, f)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d := notificationsData{Filter: q, Statuses: explain.Statuses(), Channels: c.o.Channels, Rows: noteRows(page.Notifications)}
	if set := c.o.Rules(); set != nil {
		for _, ru := range set.Rules {
			d.Rules = append(d.Rules, ru.Name)
		}
	}
	keep := url.Values{}
	for _, k := range []string{"rule", "status", "channel", "customer"} {
		if v := q[k]; v != "" {
			keep.Set(k, v)
			d.Filtered = true
		}
	}
	d.Newest = "/notifications"
	if len(keep) > 0 {
		d.Newest += "?" + keep.Encode()
	}
	if page.NextBefore != "" {
		keep.Set("before", page.NextBefore)
		d.Older = "/notifications?" + keep.Encode()
	}
	c.render(w, r, http.StatusOK, view{Page: "notifications", Title: "Notifications", Data: d})
}

// ---- entity timeline ----

type itemRow struct {
	At                         time.Time
	Kind, What, Who, Detail    string
	Class                      string
	Entity                     string // type:key, for the customer view
	Notification, Customer     string
	Data                       string // an event's data, pretty
	Verdict                    string
	Event, Decision, Attempt   bool
	Contact, Timer, IsCustomer bool
}

type stateField struct {
	Key, Value string
	// Link is set when the value names another timeline.
	Link string
}

type entityData struct {
	Timeline  *explain.Timeline
	Items     []itemRow
	State     []stateField
	Notes     []noteRow
	Customer  bool
	Counts    map[string]int
	Timers    int
	Truncated bool
}

func (c *Console) entityPage(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "ref")
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	v := view{Page: "entity", Title: "Explain", Ref: q["ref"]}
	if q["ref"] == "" {
		c.render(w, r, http.StatusOK, v)
		return
	}
	ref, err := explain.ParseRef(q["ref"])
	if err != nil {
		v.Status, v.Error = http.StatusBadRequest, err.Error()
		c.render(w, r, http.StatusBadRequest, v)
		return
	}
	v.Title = ref.String()
	tl, err := explain.Explain(r.Context(), c.o.DB, ref, explain.Options{Limit: 300})
	if errors.Is(err, explain.ErrNotFound) {
		v.Status, v.Error = http.StatusNotFound, fmt.Sprintf("nothing recorded about %s: never seen, or forgotten after its ttl", ref)
		c.render(w, r, http.StatusNotFound, v)
		return
	}
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d := entityData{Timeline: tl, Customer: tl.View == explain.ViewCustomer, Notes: noteRows(tl.Notifications), Counts: map[string]int{}, Truncated: tl.Truncated}
	keys := make([]string, 0, len(tl.State))
	for k := range tl.State {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := stateField{Key: k, Value: stateValue(tl.State[k])}
		if (k == "customer_id" || k == "customer") && f.Value != "" && !d.Customer {
			f.Link = "customer:" + f.Value
		}
		d.State = append(d.State, f)
	}
	for _, it := range tl.Items {
		what, who, ent, detail := explain.ItemText(it)
		row := itemRow{At: it.At, Kind: it.Kind, What: strings.ToLower(what), Who: who, Entity: ent, Detail: detail, Class: verdictClass(what)}
		switch it.Kind {
		case explain.KindEvent:
			row.Event = true
			row.Detail = "id " + it.Event.ID
			if it.Event.Seq != 0 {
				row.Detail += fmt.Sprintf(" · stream seq %d", it.Event.Seq)
			}
			row.Data = string(it.Event.Data)
		case explain.KindDecision:
			row.Decision = true
			row.Verdict = it.Decision.Verdict
			row.Notification = it.Decision.Notification
			row.Customer = it.Decision.Customer
		case explain.KindAttempt:
			row.Attempt = true
			row.Notification = it.Attempt.Notification
		case explain.KindTimer:
			row.Timer = true
			d.Timers++
		case explain.KindContact:
			row.Contact = true
			row.Customer = it.Contact.Customer
		}
		d.Counts[it.Kind]++
		d.Items = append(d.Items, row)
	}
	v.Data = d
	c.render(w, r, http.StatusOK, v)
}

// stateValue prints a state field: strings as they are, the rest as JSON.
func stateValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// ---- report ----

type reportCard struct {
	report.Rule
	ID       string
	Measured bool // it has a control group
	Chart    chart
	Class    string // verdict badge colour
}

type reportView struct {
	Report   *report.Report
	Cards    []reportCard
	Overall  chart
	Measured int
	Avoided  report.Num
	// Form holds the query as given (the options form); Compact marks the
	// front page's summary (measured rules only, no overall).
	Form    map[string]string
	Compact bool
}

func newReportView(rep *report.Report, form url.Values, compact bool) *reportView {
	v := &reportView{Report: rep, Form: map[string]string{}, Compact: compact}
	// The form reads every key, given or not.
	for _, k := range []string{"since", "until", "window", "rule", "by", "topic"} {
		v.Form[k] = form.Get(k)
	}
	avoided := 0.0
	for _, rr := range rep.Rules {
		card := reportCard{Rule: rr, ID: "report-" + rr.Rule, Measured: rr.Control.N > 0, Class: verdictCodeClass(rr.VerdictCode)}
		if compact && !card.Measured {
			continue
		}
		if card.Measured {
			v.Measured++
			if rr.ContactsAvoided.Value.Valid() {
				avoided += float64(rr.ContactsAvoided.Value)
			}
		}
		card.Chart = rateChart(
			rr.Rule+" — "+rateLabel("notified", rr.Treated.N, rr.Treated.Contacted, rr.Treated.Rate)+"; "+
				rateLabel("held out", rr.Control.N, rr.Control.Contacted, rr.Control.Rate),
			[]rateRow{
				{label: "notified", sub: fmt.Sprintf("%d entities", rr.Treated.N), class: "treated", rate: rr.Treated.Rate},
				{label: "held out", sub: fmt.Sprintf("%d entities", rr.Control.N), class: "control", rate: rr.Control.Rate},
			})
		v.Cards = append(v.Cards, card)
	}
	// Rules with a control group first: they are the ones with a verdict.
	sort.SliceStable(v.Cards, func(i, j int) bool { return v.Cards[i].Measured && !v.Cards[j].Measured })
	v.Avoided = report.Num(avoided)
	if v.Measured == 0 {
		v.Avoided = report.Num(nanValue())
	}
	o := rep.Overall
	rate := func(g report.Group) report.Estimate {
		return report.Estimate{Value: g.Rate, Low: report.Num(nanValue()), High: report.Num(nanValue())}
	}
	v.Overall = rateChart("every rule: share of entities with a support contact — notified "+pct(o.Notified.Rate)+", not notified "+pct(o.NotNotified.Rate),
		[]rateRow{
			{label: "notified", sub: fmt.Sprintf("%d entities", o.Notified.Entities), class: "notified", rate: rate(o.Notified)},
			{label: "not notified", sub: fmt.Sprintf("%d entities", o.NotNotified.Entities), class: "other", rate: rate(o.NotNotified)},
		})
	return v
}

func verdictCodeClass(code string) string {
	switch code {
	case report.CodeReduces:
		return "ok"
	case report.CodeIncreases:
		return "bad"
	case report.CodeNoEffect:
		return "wait"
	}
	return "muted"
}

func (c *Console) reportPage(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r, "since", "until", "window", "rule", "by", "topic"); err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	qv := r.URL.Query()
	// The same options, defaults and checks as GET /api/v1/report.
	o, err := report.OptionsFromQuery(qv, c.o.Clock.Now())
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	o.Clock = c.o.Clock
	rep, err := report.Compute(r.Context(), c.o.DB, o)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	c.render(w, r, http.StatusOK, view{Page: "report", Title: "Effectiveness", Data: newReportView(rep, qv, false)})
}

// funcs are the templates' helpers.
func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"asset":     c.assetURL,
		"pct":       pct,
		"points":    points,
		"whole":     whole,
		"num1":      num1,
		"interval":  interval,
		"pctf":      func() func(report.Num) string { return pct },
		"pointsf":   func() func(report.Num) string { return points },
		"wholef":    func() func(report.Num) string { return whole },
		"dataNum":   dataNum,
		"svg":       svgNum,
		"vclass":    verdictClass,
		"label":     verdictLabel,
		"hasPrefix": strings.HasPrefix,
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"short": func(t time.Time) string {
			if t.IsZero() {
				return "–"
			}
			return t.UTC().Format("Jan 02 15:04")
		},
		"ptime": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return t.UTC().Format("Jan 02 15:04")
		},
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"deref": func(t *time.Time) time.Time {
			if t == nil {
				return time.Time{}
			}
			return *t
		},
		"pathEsc": url.PathEscape,
		"entityURL": func(ref string) string {
			return "/entity?" + url.Values{"ref": {ref}}.Encode()
		},
		"customerURL": func(key string) string {
			return "/entity?" + url.Values{"ref": {explain.CustomerType + ":" + key}}.Encode()
		},
		"filterURL": func(k, v string) string {
			return "/notifications?" + url.Values{k: {v}}.Encode()
		},
		"pctOf": func(f float64) string { return fixed(100*f, 0) + "%" },
		"add":   func(a, b float64) float64 { return a + b },
		"sub":   func(a, b float64) float64 { return a - b },
		"sel":   func(a, b string) bool { return a == b },
		"prettyJSON": func(s string) string {
			var v any
			if json.Unmarshal([]byte(s), &v) != nil {
				return s
			}
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return s
			}
			return string(b)
		},
	}
}
