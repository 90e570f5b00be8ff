package report

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/rules"
)

// DefaultSince is how far back `proactived report` and the API look when
// not told (fires in the last 30 days).
const DefaultSince = 30 * 24 * time.Hour

// ParseTime reads a point in time as the CLI and the API accept it: a
// duration back from now ("30d", "12h"), or an RFC 3339 time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	d, err := rules.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither a duration back from now (30d, 12h) nor an RFC 3339 time", s)
	}
	return now.Add(-d), nil
}

// ParseWindow reads the contact window ("7d", "48h").
func ParseWindow(s string) (time.Duration, error) {
	d, err := rules.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("window %q: want a positive duration such as 7d or 48h", s)
	}
	return d, nil
}

// OptionsFromQuery reads the query parameters of GET /api/v1/report —
// since, until, window, rule, by, topic, the CLI's flags by the same
// names — into Options. since defaults to DefaultSince back from now.
func OptionsFromQuery(q url.Values, now time.Time) (Options, error) {
	o := Options{Since: now.Add(-DefaultSince), Rule: q.Get("rule"), By: q.Get("by"), Topic: q.Get("topic")}
	var err error
	if s := q.Get("since"); s != "" {
		if o.Since, err = ParseTime(s, now); err != nil {
			return o, fmt.Errorf("since: %w", err)
		}
	}
	if s := q.Get("until"); s != "" {
		if o.Until, err = ParseTime(s, now); err != nil {
			return o, fmt.Errorf("until: %w", err)
		}
	}
	if s := q.Get("window"); s != "" {
		if o.Window, err = ParseWindow(s); err != nil {
			return o, err
		}
	}
	switch o.By {
	case "", ByEntity, ByCustomer:
	default:
		return o, fmt.Errorf("by %q: want %s or %s", o.By, ByEntity, ByCustomer)
	}
	return o, nil
}
