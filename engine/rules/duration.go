package rules

import (
	"fmt"
	"math"
	"time"
)

// ParseDuration parses a duration as time.ParseDuration does ("90s", "1h30m",
// "1.5h") and adds two units: d (24h) and w (7d). Units combine in any
// order: "60d", "1d12h", "2w", "1w2d3h". A day is always 24 hours here:
// durations are elapsed time, not calendar arithmetic.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	bad := func() (time.Duration, error) { return 0, fmt.Errorf("invalid duration %q", orig) }
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return bad()
	}
	var total uint64
	for s != "" {
		// The number: digits, optionally a fraction.
		i := 0
		var whole uint64
		overflow := false
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if whole > (math.MaxInt64-9)/10 {
				overflow = true
			}
			whole = whole*10 + uint64(s[i]-'0')
			i++
		}
		digits := i
		var frac, scale uint64 = 0, 1
		if i < len(s) && s[i] == '.' {
			i++
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				if scale < 1e18 { // further digits are below a nanosecond anyway
					frac = frac*10 + uint64(s[i]-'0')
					scale *= 10
				}
				i++
				digits++
			}
		}
		if digits == 0 || overflow {
			return bad()
		}
		s = s[i:]
		// The unit.
		j := 0
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		unit, ok := durationUnit(s[:j])
		if !ok {
			return bad()
		}
		s = s[j:]
		if whole > math.MaxInt64/unit {
			return bad()
		}
		v := whole * unit
		// frac/scale of a unit; unit <= 1 week, so frac*unit may overflow
		// only for absurd precision: do it in float64 then.
		fv := uint64(float64(frac) * (float64(unit) / float64(scale)))
		v += fv
		if v > math.MaxInt64 || total > math.MaxInt64-v {
			return bad()
		}
		total += v
	}
	if neg {
		return -time.Duration(total), nil
	}
	return time.Duration(total), nil
}

// durationUnit is the length of one unit in nanoseconds.
func durationUnit(u string) (uint64, bool) {
	switch u {
	case "ns":
		return uint64(time.Nanosecond), true
	case "us", "µs", "μs": // U+00B5 and U+03BC, as time.ParseDuration
		return uint64(time.Microsecond), true
	case "ms":
		return uint64(time.Millisecond), true
	case "s":
		return uint64(time.Second), true
	case "m":
		return uint64(time.Minute), true
	case "h":
		return uint64(time.Hour), true
	case "d":
		return uint64(24 * time.Hour), true
	case "w":
		return uint64(7 * 24 * time.Hour), true
	}
	return 0, false
}
