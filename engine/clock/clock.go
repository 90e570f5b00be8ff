// Package clock is the one source of time for the engine. The daemon uses
// the wall clock; `proactived test`, backtest and unit tests use a virtual
// clock they move explicitly, so deadlines, `for:`, schedules and quiet
// hours are tested without sleeping.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Wall is the real clock.
type Wall struct{}

// Now returns the current UTC time.
func (Wall) Now() time.Time { return time.Now().UTC() }

// Virtual is a clock that only moves when told to.
type Virtual struct {
	mu sync.Mutex
	t  time.Time
}

// NewVirtual returns a virtual clock set to t.
func NewVirtual(t time.Time) *Virtual { return &Virtual{t: t.UTC()} }

// Now returns the virtual time.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.t
}

// Set moves the clock to t (never backwards).
func (v *Virtual) Set(t time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if t.After(v.t) {
		v.t = t.UTC()
	}
}

// Advance moves the clock forward by d.
func (v *Virtual) Advance(d time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.t = v.t.Add(d)
}
