package policy

import (
	"fmt"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestQuietHours(t *testing.T) {
	night := QuietHours{Start: 21 * 3600, End: 9 * 3600, Enabled: true}
	lunch := QuietHours{Start: 13 * 3600, End: 14*3600 + 30*60, Enabled: true}
	berlin := mustLoc(t, "Europe/Berlin")
	ny := mustLoc(t, "America/New_York")
	moscow := mustLoc(t, "Europe/Moscow")
	cases := []struct {
		name      string
		q         QuietHours
		at        string // UTC
		loc       *time.Location
		want      string // UTC; "" = not deferred
		wantLocal string // the local wall time it lands on
	}{
		{"before window", night, "2026-11-20T17:00:00Z", moscow, "", ""},                                            // 20:00 Moscow
		{"evening, deferred past midnight", night, "2026-11-20T19:30:00Z", moscow, "2026-11-21T06:00:00Z", "09:00"}, // 22:30 Moscow
		{"after midnight, same morning", night, "2026-11-20T23:00:00Z", moscow, "2026-11-21T06:00:00Z", "09:00"},    // 02:00 Moscow
		{"exactly at end", night, "2026-11-21T06:00:00Z", moscow, "", ""},
		{"exactly at start", night, "2026-11-20T18:00:00Z", moscow, "2026-11-21T06:00:00Z", "09:00"},
		{"same-day window", lunch, "2026-11-20T12:10:00Z", berlin, "2026-11-20T13:30:00Z", "14:30"}, // 13:10 Berlin (CET)
		{"same-day window, outside", lunch, "2026-11-20T14:00:00Z", berlin, "", ""},
		// Europe/Berlin springs forward on 2026-03-29 (02:00 CET → 03:00 CEST):
		// 09:00 local that morning is 07:00 UTC, not 08:00.
		{"berlin spring forward", night, "2026-03-28T21:30:00Z", berlin, "2026-03-29T07:00:00Z", "09:00"},
		// and falls back on 2026-10-25 (03:00 CEST → 02:00 CET): 09:00 local is 08:00 UTC.
		{"berlin fall back", night, "2026-10-24T20:00:00Z", berlin, "2026-10-25T08:00:00Z", "09:00"},
		// America/New_York: spring forward 2026-03-08, fall back 2026-11-01.
		{"new york spring forward", night, "2026-03-08T05:00:00Z", ny, "2026-03-08T13:00:00Z", "09:00"},
		{"new york fall back", night, "2026-11-01T05:30:00Z", ny, "2026-11-01T14:00:00Z", "09:00"},
		{"disabled", QuietHours{}, "2026-11-20T23:00:00Z", moscow, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at, _ := time.Parse(time.RFC3339, c.at)
			got, deferred := c.q.Until(at, c.loc)
			if c.want == "" {
				if deferred || !got.Equal(at) {
					t.Fatalf("deferred to %s, want not deferred", got)
				}
				return
			}
			want, _ := time.Parse(time.RFC3339, c.want)
			if !deferred || !got.Equal(want) {
				t.Fatalf("Until(%s) = %s (deferred %v), want %s", c.at, got.Format(time.RFC3339), deferred, c.want)
			}
			if l := got.In(c.loc).Format("15:04"); l != c.wantLocal {
				t.Fatalf("lands on %s local, want %s", l, c.wantLocal)
			}
		})
	}
}

func TestInHoldoutStableAndProportional(t *testing.T) {
	if InHoldout("r", "k", 0) {
		t.Fatal("0% holdout held out a key")
	}
	n, held := 20000, 0
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("o-%d", i)
		a := InHoldout("delivery-delayed", k, 0.05)
		if a != InHoldout("delivery-delayed", k, 0.05) {
			t.Fatal("holdout is not deterministic")
		}
		if a {
			held++
		}
	}
	if frac := float64(held) / float64(n); frac < 0.044 || frac > 0.056 {
		t.Fatalf("5%% holdout held out %.2f%%", frac*100)
	}
	// A different rule draws a different group.
	same := 0
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("o-%d", i)
		if InHoldout("a", k, 0.5) == InHoldout("b", k, 0.5) {
			same++
		}
	}
	if same > n*55/100 || same < n*45/100 {
		t.Fatalf("groups of two rules agree on %d of %d keys: not independent", same, n)
	}
}

func TestChooseChannels(t *testing.T) {
	known := map[string]ChannelInfo{
		"email": {AddressField: "email"}, "sms": {AddressField: "phone"},
		"push": {AddressField: "push_token"}, "console": {},
	}
	cases := []struct {
		name     string
		fixed    string
		customer map[string]any
		want     string
		skipped  string
		optedOut bool
	}{
		{"preference order", "", map[string]any{"channels": []any{"push", "sms", "email"}, "phone": "+1", "email": "a@x", "push_token": "tok"}, "push,sms,email", "", false},
		{"missing address is a skip", "", map[string]any{"channels": []any{"push", "email"}, "email": "a@x"}, "email", "push: no address (push_token)", false},
		{"opt out of one", "", map[string]any{"channels": []any{"sms", "email"}, "phone": "+1", "email": "a@x", "opt_out": []any{"sms"}}, "email", "sms: opted out", false},
		{"opt out of all", "", map[string]any{"channels": []any{"email"}, "email": "a@x", "opt_out": "all"}, "", "*: opted out of all", true},
		{"opted out of every preferred", "", map[string]any{"channels": []any{"email"}, "email": "a@x", "opt_out": []any{"email"}}, "", "email: opted out", true},
		{"defaults when no preference", "", map[string]any{}, "console", "", false},
		{"unknown channel", "", map[string]any{"channels": []any{"fax"}}, "", "fax: unknown channel", false},
		{"fixed channel", "console", map[string]any{"channels": []any{"email"}, "email": "a@x"}, "console", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			use, skipped, out := ChooseChannels(c.fixed, c.customer, []string{"console"}, known)
			var names, skips []string
			for _, u := range use {
				names = append(names, u.Channel)
			}
			for _, s := range skipped {
				skips = append(skips, s.Channel+": "+s.Reason)
			}
			if got := join(names); got != c.want {
				t.Errorf("channels %q, want %q", got, c.want)
			}
			if got := join(skips); got != c.skipped {
				t.Errorf("skipped %q, want %q", got, c.skipped)
			}
			if out != c.optedOut {
				t.Errorf("opted out %v, want %v", out, c.optedOut)
			}
		})
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

func TestCap(t *testing.T) {
	const low, normal, high, critical = 0, 1, 2, 3
	q := func(id string, p int, sent bool) Queued { return Queued{ID: id, Priority: p, Sent: sent} }
	cases := []struct {
		name  string
		max   int
		prio  int
		used  []Queued
		allow bool
		pre   string
	}{
		{"under budget", 3, normal, []Queued{q("a", low, true)}, true, ""},
		{"budget spent, lower dropped", 2, low, []Queued{q("a", normal, true), q("b", normal, false)}, false, ""},
		{"budget spent, equal dropped", 2, normal, []Queued{q("a", normal, true), q("b", normal, false)}, false, ""},
		{"higher pre-empts lowest queued", 2, high, []Queued{q("a", normal, false), q("b", low, false)}, true, "b"},
		{"sent ones cannot be pre-empted", 2, high, []Queued{q("a", low, true), q("b", low, true)}, false, ""},
		{"critical bypasses", 1, critical, []Queued{q("a", high, true)}, true, ""},
		{"no cap", 0, low, []Queued{q("a", high, true)}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Cap(c.max, c.prio, critical, c.used)
			if r.Allow != c.allow || r.Preempt != c.pre {
				t.Fatalf("Cap = %+v, want allow %v preempt %q", r, c.allow, c.pre)
			}
		})
	}
}

func TestChooseLocale(t *testing.T) {
	if got := ChooseLocale(map[string]any{"locale": "ru-RU"}, "en"); got != "ru-RU" {
		t.Errorf("locale %q", got)
	}
	if got := ChooseLocale(nil, "en"); got != "en" {
		t.Errorf("default locale %q", got)
	}
}
