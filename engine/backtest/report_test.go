package backtest

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	t0 := time.Date(2026, 11, 13, 10, 0, 0, 0, time.UTC)
	return &Report{
		Stream: "PROACTIVE_EVENTS", RulesDir: "rules.next", LiveDB: "data/proactived.db",
		Since: t0, Until: t0.Add(7*24*time.Hour + 90*time.Minute),
		VirtualStart: t0.Add(-time.Hour), VirtualEnd: t0.Add(7*24*time.Hour + 90*time.Minute),
		Events: 12345, Replayed: 12000, Ignored: 300, Rejected: 45, RejectedBy: map[string]int{"not_json": 40, "missing_key": 5},
		Reordered: 3, Uncaptured: []string{"returns.>"},
		Took: 2500 * time.Millisecond, TookSeconds: 2.5, EventsPerSec: 4938,
		Rules: []RuleReport{
			{Name: "delivery-delayed", Change: "changed", Mode: "live", InCandidate: true, WouldSend: 1200, Customers: 1100, QueuedAtEnd: 4,
				Verdicts: map[string]int{"sent": 1200, "deduped": 30, "held_out": 60, "capped": 2, "deferred": 10, "pending": 99},
				Live:     &Live{Sent: 1000, Customers: 950, Queued: 2, Verdicts: map[string]int{"sent": 1000}}, Diff: 200},
			{Name: "late-vip", Change: "new", Mode: "shadow", InCandidate: true, WouldSend: 7, Customers: 7,
				Verdicts: map[string]int{"shadow": 7}, Live: &Live{Verdicts: map[string]int{}}, Diff: 7},
			{Name: "quiet", Mode: "live", InCandidate: true, Verdicts: map[string]int{},
				Live: &Live{Shadow: 3, Verdicts: map[string]int{"shadow": 3}}},
			{Name: "old-rule", Change: "removed", Verdicts: map[string]int{},
				Live: &Live{Sent: 15, Customers: 15, Failed: 1, Verdicts: map[string]int{"sent": 16, "failed": 1}}, Diff: -15},
		},
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `backtest of rules.next against stream PROACTIVE_EVENTS
window:  2026-11-13T10:00:00Z .. 2026-11-20T11:30:00Z (stream time, 7d1h30m)
clock:   2026-11-13T09:00:00Z .. 2026-11-20T11:30:00Z (virtual, follows the events' times)
state:   empty at the start (no entities, dedup marks, budgets or timers)
events:  12345 in the window: 12000 replayed, 300 ignored (no rule or entity uses the subject), 45 rejected
live:    notifications created in the window in data/proactived.db

RULE                        WOULD SEND  CUSTOMERS  LIVE SENT  DIFF  NOT SENT, BY VERDICT
delivery-delayed (changed)        1200       1100       1000  +200  deduped 30, held_out 60, capped 2, deferred 10, queued at end 4
late-vip (new, shadow)               7          7          -    +7  -
quiet                                0          0          0     0  -
old-rule (removed)                   -          -         15   -15  -

total: would send 1207, live sent 1015 (+192)
45 events rejected (dead letters): missing_key 5, not_json 40
warning: the stream does not capture returns.>, which the rules use: those events cannot be replayed
3 events carried a time before an earlier event's and were handled at the later time
live, still queued (not counted as sent): delivery-delayed 2
live, failed on every channel (not counted as sent): old-rule 1
live shadow rules decided, without sending: quiet 3
replay: 12345 events in 2.5s (4,938 events/s)
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s\ndiff at byte %d", got, want, firstDiff(got, want))
	}
}

func TestWriteTextWithoutLive(t *testing.T) {
	rep := sampleReport()
	rep.LiveNote, rep.LiveDB = "no live database at data/proactived.db", ""
	rep.Snapshot, rep.SnapshotEntities = "snap.db", 42
	rep.Rejected, rep.RejectedBy, rep.Uncaptured, rep.Reordered = 0, nil, nil, 0
	for i := range rep.Rules {
		rep.Rules[i].Live = nil
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"state:   42 entities from snapshot snap.db; no dedup marks, budgets or timers\n",
		"live:    no live database at data/proactived.db; no comparison\n",
		"RULE                        WOULD SEND  CUSTOMERS  NOT SENT, BY VERDICT\n",
		"delivery-delayed (changed)        1200       1100  deduped 30, held_out 60, capped 2, deferred 10, queued at end 4\n",
		"old-rule (removed)                   -          -  -\n",
		"total: would send 1207\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, not := range []string{"LIVE SENT", "rejected (dead letters)", "warning:", "live,"} {
		if strings.Contains(got, not) {
			t.Errorf("%q should not appear in:\n%s", not, got)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Stream       string         `json:"stream"`
		Since        time.Time      `json:"since"`
		Events       int            `json:"events"`
		RejectedBy   map[string]int `json:"rejected_by"`
		Uncaptured   []string       `json:"uncaptured_subjects"`
		TookSeconds  float64        `json:"took_seconds"`
		EventsPerSec float64        `json:"events_per_second"`
		Rules        []struct {
			Name        string         `json:"name"`
			Change      string         `json:"change"`
			Mode        string         `json:"mode"`
			InCandidate bool           `json:"in_candidate"`
			WouldSend   int            `json:"would_send"`
			Customers   int            `json:"customers"`
			QueuedAtEnd int            `json:"queued_at_end"`
			Verdicts    map[string]int `json:"verdicts"`
			Diff        int            `json:"diff"`
			Live        *struct {
				Sent, Customers, Queued, Failed, Shadow int
			} `json:"live"`
		} `json:"rules"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	// The top-level keys are the machine-readable contract.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b.Bytes(), &keys); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys {
		got = append(got, k)
	}
	sort.Strings(got)
	want := "events events_per_second ignored live_db rejected rejected_by reordered replayed rules rules_dir since stream took_seconds uncaptured_subjects until virtual_end virtual_start"
	if strings.Join(got, " ") != want {
		t.Errorf("keys %s\nwant %s", strings.Join(got, " "), want)
	}
	r0 := doc.Rules[0]
	if doc.Stream != "PROACTIVE_EVENTS" || doc.Events != 12345 || doc.RejectedBy["not_json"] != 40 || doc.Uncaptured[0] != "returns.>" ||
		doc.TookSeconds != 2.5 || doc.EventsPerSec != 4938 || !doc.Since.Equal(sampleReport().Since) {
		t.Errorf("header: %+v", doc)
	}
	if len(doc.Rules) != 4 || r0.Name != "delivery-delayed" || r0.Change != "changed" || !r0.InCandidate || r0.WouldSend != 1200 ||
		r0.Customers != 1100 || r0.QueuedAtEnd != 4 || r0.Verdicts["held_out"] != 60 || r0.Diff != 200 || r0.Live == nil || r0.Live.Sent != 1000 || r0.Live.Queued != 2 {
		t.Errorf("rules[0]: %+v", r0)
	}
	if r := doc.Rules[3]; r.InCandidate || r.Change != "removed" || r.Live.Failed != 1 || r.Diff != -15 {
		t.Errorf("rules[3]: %+v", r)
	}
	if strings.Contains(b.String(), `"Took"`) {
		t.Errorf("the raw duration should not be in the JSON: %s", b.String())
	}
}

func TestHelpers(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999.4, "999"}, {1000, "1,000"}, {123456.7, "123,457"}, {1234567, "1,234,567"}} {
		if got := rate(c.in); got != c.want {
			t.Errorf("rate(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		in   time.Duration
		want string
	}{{0, "0m"}, {90 * time.Second, "2m"}, {time.Hour, "1h"}, {49*time.Hour + 5*time.Minute, "2d1h5m"}, {7 * 24 * time.Hour, "7d"}} {
		if got := span(c.in); got != c.want {
			t.Errorf("span(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	for n, want := range map[int]string{-3: "-3", 0: "0", 5: "+5"} {
		if got := signed(n); got != want {
			t.Errorf("signed(%d) = %q, want %q", n, got, want)
		}
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
