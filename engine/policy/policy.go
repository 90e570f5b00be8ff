// Package policy holds the pure decisions of the delivery policy that stands
// between a fired rule and a sent message (SPEC.md "Customers, consent and
// delivery policy"): holdout assignment, consent and channel choice, the
// contact budget, quiet hours and locale choice. The engine supplies the
// facts from its store; every function here is deterministic and unit-tested
// on its own.
package policy

import (
	"hash/fnv"
	"strings"
	"time"
)

// Verdicts recorded in the decisions table.
const (
	VerdictSent       = "sent"       // written to the outbox for delivery now
	VerdictDeduped    = "deduped"    // same dedup key already notified within the window
	VerdictHeldOut    = "held_out"   // entity is in the rule's control group
	VerdictOptedOut   = "opted_out"  // customer opted out of every usable channel
	VerdictNoChannel  = "no_channel" // no channel with an address for this customer
	VerdictInhibited  = "inhibited"  // an inhibiting rule or an open support contact
	VerdictCapped     = "capped"     // contact budget spent
	VerdictDeferred   = "deferred"   // quiet hours: waits in the outbox
	VerdictShadow     = "shadow"     // shadow rule: decided, not sent
	VerdictError      = "error"      // expression or template error
	VerdictSuperseded = "superseded" // condition no longer true, or a newer one replaced it
	VerdictDelivered  = "delivered"  // channel accepted it
	VerdictFallback   = "fallback"   // channel failed, moving to the next one
	VerdictFailed     = "failed"     // every channel failed
	VerdictPending    = "pending"    // for: hold-down started
	VerdictCancelled  = "cancelled"  // for: hold-down or deadline cancelled
	VerdictArmed      = "armed"      // absence deadline armed
	VerdictReleased   = "released"   // deferred notification re-checked and sent on
	VerdictPromise    = "promise"    // promise kept or broken
)

// InHoldout says whether an entity falls in a rule's control group. The hash
// of (rule, key) is stable across restarts, reloads and machines, so an
// entity stays in its group for the life of the rule name.
func InHoldout(rule, key string, fraction float64) bool {
	if fraction <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(key))
	// FNV's high bits mix short inputs poorly, so finish with splitmix64's
	// avalanche before taking the top 53 bits as a uniform float in [0,1).
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	u := float64(x>>11) / float64(1<<53)
	return u < fraction
}

// Candidate is one channel a notification may go through, with the
// customer's address on it.
type Candidate struct {
	Channel string `json:"channel"`
	Address string `json:"address,omitempty"`
}

// ChannelInfo is what the policy needs to know about a configured channel.
type ChannelInfo struct {
	AddressField string // customer field holding the address; "" = none needed
}

// Skip explains why a channel was not used.
type Skip struct {
	Channel string
	Reason  string // "opted out", "no address (email)", "unknown channel"
}

// ChooseChannels returns the usable channels in preference order, and the
// skipped ones with their reasons. fixed is a rule's notify.channel;
// preferred the customer's `channels`; defaults the config's.
func ChooseChannels(fixed string, customer map[string]any, defaults []string, known map[string]ChannelInfo) (use []Candidate, skipped []Skip, optedOutAll bool) {
	order := defaults
	if fixed != "" {
		order = []string{fixed}
	} else if pref := StringList(customer["channels"]); len(pref) > 0 {
		order = pref
	}
	optOut := StringList(customer["opt_out"])
	if s, ok := customer["opt_out"].(string); ok {
		optOut = []string{s}
	}
	for _, o := range optOut {
		if o == "all" || o == "*" {
			return nil, []Skip{{Channel: "*", Reason: "opted out of all"}}, true
		}
	}
	for i, ch := range order {
		if contains(order[:i], ch) { // a short list: no set to allocate
			continue
		}
		info, ok := known[ch]
		switch {
		case !ok:
			skipped = append(skipped, Skip{ch, "unknown channel"})
		case contains(optOut, ch):
			skipped = append(skipped, Skip{ch, "opted out"})
		case info.AddressField != "":
			addr, _ := customer[info.AddressField].(string)
			if strings.TrimSpace(addr) == "" {
				skipped = append(skipped, Skip{ch, "no address (" + info.AddressField + ")"})
				continue
			}
			use = append(use, Candidate{Channel: ch, Address: addr})
		default:
			use = append(use, Candidate{Channel: ch})
		}
	}
	if len(use) == 0 {
		optedOutAll = len(skipped) > 0
		for _, s := range skipped {
			if s.Reason != "opted out" {
				optedOutAll = false
			}
		}
	}
	return use, skipped, optedOutAll
}

// StringList reads a []any or []string field.
func StringList(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Queued is a not-yet-sent notification that counts against a budget.
type Queued struct {
	ID       string
	Priority int
	Sent     bool // already delivered (cannot be pre-empted)
}

// CapResult is the frequency cap's verdict.
type CapResult struct {
	Allow   bool
	Preempt string // id of a queued lower-priority notification to drop as capped
}

// Cap decides one new notification of priority prio against a customer's
// budget: used are the notifications already counted in the window. A new
// critical one always goes. When the budget is spent, a new notification
// pre-empts the lowest-priority one still queued whose priority is lower;
// otherwise it is capped.
func Cap(max, prio, critical int, used []Queued) CapResult {
	if prio >= critical || max <= 0 || len(used) < max {
		return CapResult{Allow: true}
	}
	victim := -1
	for i, q := range used {
		if q.Sent || q.Priority >= prio {
			continue
		}
		if victim < 0 || q.Priority < used[victim].Priority {
			victim = i
		}
	}
	if victim < 0 {
		return CapResult{}
	}
	return CapResult{Allow: true, Preempt: used[victim].ID}
}

// QuietHours is a daily window, in seconds after midnight, in the
// customer's own timezone. Start > End means it spans midnight.
type QuietHours struct {
	Start, End int
	Enabled    bool
}

// Until returns when a notification due at t may be sent for a customer in
// loc: t itself outside quiet hours, else the end of the window. Wall-clock
// arithmetic is done in loc with time.Date, so DST changes move the instant
// correctly (09:00 local is 09:00 local on the day the clocks change).
func (q QuietHours) Until(t time.Time, loc *time.Location) (time.Time, bool) {
	if !q.Enabled || q.Start == q.End {
		return t, false
	}
	lt := t.In(loc)
	mins := lt.Hour()*3600 + lt.Minute()*60 + lt.Second()
	y, m, d := lt.Date()
	endOn := func(day int) time.Time {
		return time.Date(y, m, day, q.End/3600, q.End%3600/60, q.End%60, 0, loc)
	}
	if q.Start < q.End { // same-day window, e.g. 13:00–15:00
		if mins >= q.Start && mins < q.End {
			return endOn(d).UTC(), true
		}
		return t, false
	}
	// Window spans midnight, e.g. 21:00–09:00.
	switch {
	case mins >= q.Start:
		return endOn(d + 1).UTC(), true
	case mins < q.End:
		return endOn(d).UTC(), true
	}
	return t, false
}

// ChooseLocale picks the customer's locale, else the default.
func ChooseLocale(customer map[string]any, def string) string {
	if l, ok := customer["locale"].(string); ok && l != "" {
		return l
	}
	return def
}
