package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteText prints the report as a table for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	m := r.Machine
	p("machine", "%d CPU (%s), %d MB, %s %s", m.CPUs, m.Model, m.MemMB, m.GoVer, m.GOARCH)
	p("load (1/5/15 min)", "%s before, %s after", r.Load, r.LoadAfter)
	p("workload", "%d events (~%d bytes), %d rules (%d per event over %d subjects), %d orders, %d customers, batch %d (%d behind), journal %t, event ids %t",
		r.Events, r.AvgBytes, r.Rules, r.Matching, r.Subjects, r.Orders, r.Customers, r.Batch, r.CatchUpBatch, r.Journal, r.IDs)
	p("publish", "%.0f events/s", r.PublishRate)
	p("raw JetStream consume", "%.0f events/s (AckAll per batch, no processing)", r.RawRate)
	p("engine", "%.0f events/s (%.1fs for the backlog)", r.EngineRate, r.EngineSecs)
	p("engine / raw", "%.1f%%", 100*r.Ratio)
	p("engine CPU", "%.1f µs an event (whole process, user + system, over the drain)", r.EngineCPUus)
	p("firing events", "%d (%.0f%%)", r.FiringEvents, 100*float64(r.FiringEvents)/float64(max(1, r.Events+latencyEvents(r))))
	p("outbox writes", "%d notifications, %.0f/s during the engine run (%.0f%% of its events were new notifications)",
		r.OutboxRows, r.OutboxRate, 100*float64(r.OutboxRows)/float64(max(1, r.Events)))
	if b := r.Burst; b.Events > 0 {
		p("outbox burst", "%d notifications (%d expected) from %d events, %.0f/s written, %.1f µs CPU each, publisher included (a burst of new notifications)",
			b.Notifications, b.Expected, b.Events, b.Rate, b.CPUus)
	}
	p("webhook deliveries", "%.0f/s (draining the %d-notification outbox the backlog left, in %.1fs)", r.DeliverRate, r.OutboxRows, r.DeliverSecs)
	p("notifications", "%d expected, %d delivered, %d repeated deliveries (same idempotency key)", r.Expected, r.Delivered, r.Duplicates)
	for _, l := range r.Latency {
		p("latency "+l.Name, "p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms  at %.0f events/s (%d samples)",
			l.P50ms, l.P95ms, l.P99ms, l.Maxms, l.Actual, l.Samples)
	}
	p("peak RSS", "%.0f MB (whole process: engine, NATS server, publisher, sink; the 256 MB target is the daemon's with 1M entities: --memory)", r.PeakRSSMB)
	if len(r.Targets) > 0 {
		fmt.Fprintf(tw, "\ntargets (SPEC.md, for 2 cores and 1,000 rules; this machine has %d)\n", m.CPUs)
		for _, t := range r.Targets {
			verdict := "NOT MET"
			if t.Met {
				verdict = "met"
			}
			p("  "+t.Name, "%s %s against %s: %s", humanFigure(t.Measured), t.Unit, t.Goal, verdict)
		}
		p("  not measured here", "%s", r.NotMeasured)
	}
	return tw.Flush()
}

// humanFigure prints a figure with the precision it deserves.
func humanFigure(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func latencyEvents(r *Report) int {
	n := 0
	for _, l := range r.Latency {
		n += l.Events
	}
	return n
}
