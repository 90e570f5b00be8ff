package engine

import (
	"testing"
	"time"
)

// TestTimeUpToFollowsTheWatermark: while events wait in the stream,
// time-driven work acts only up to the stream time of the last event
// applied (nothing at all before the first); caught up, up to now.
func TestTimeUpToFollowsTheWatermark(t *testing.T) {
	e := &Engine{}
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	check := func(name string, want time.Time, wantOK bool) {
		t.Helper()
		if got, ok := e.timeUpTo(now); ok != wantOK || !got.Equal(want) {
			t.Errorf("%s: timeUpTo = %s, %v; want %s, %v", name, got, ok, want, wantOK)
		}
	}
	check("no watermark (tests, virtual clock)", now, true)
	e.Watermark(time.Time{}, false)
	check("behind, nothing applied yet", time.Time{}, false)
	e.Watermark(now.Add(-time.Hour), false)
	check("behind an hour", now.Add(-time.Hour), true)
	e.Watermark(now.Add(time.Second), false) // the broker's clock ahead
	check("behind, stream time after now", now, true)
	e.Watermark(now.Add(-time.Hour), true)
	check("caught up", now, true)
}
