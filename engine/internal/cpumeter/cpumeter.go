// Package cpumeter reports CPU time per benchmark op beside ns/op: on a
// machine shared with other work, wall time per op swings with their load,
// CPU time (user + sys of the whole process) much less.
package cpumeter

import (
	"syscall"
	"testing"
	"time"
)

// Meter is a started measurement.
type Meter struct{ start time.Duration }

// Start begins measuring.
func Start() Meter { return Meter{processCPU()} }

// Report adds cpu-ns/op to b's results.
func (m Meter) Report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-m.start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
