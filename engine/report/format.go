package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// WriteText prints the report for people: one table per rule, then the
// overall comparison.
func WriteText(w io.Writer, r *Report) error {
	ew := &errWriter{w: w}
	period := r.Until.Format("2006-01-02 15:04") + " UTC"
	if !r.Since.IsZero() {
		period = r.Since.Format("2006-01-02 15:04") + " to " + period
	} else {
		period = "up to " + period
	}
	about := "about the entity (and the customer's contacts that name none)"
	if r.By == ByCustomer {
		about = "by the customer, about anything"
	}
	topic := "any topic"
	if r.Topic != "" {
		topic = "topic " + r.Topic
	}
	ew.printf("Repeat support contacts, fires %s\n", period)
	ew.printf("contacts %s, %s, within %s after the fire time; 95%% confidence intervals\n", about, topic, r.Window)
	if len(r.Rules) == 0 {
		which := "no rule"
		if r.Rule != "" {
			which = "rule " + r.Rule
		}
		ew.printf("\n%s sent or held out a notification in this period.\n", which)
	}
	for _, rr := range r.Rules {
		ew.printf("\n%s\n", rr.Rule)
		ew.printf("  %-20s %9s %10s %7s   %s\n", "", "entities", "contacted", "rate", "95% CI")
		for _, a := range []struct {
			name string
			arm  Arm
		}{{"notified (sent)", rr.Treated}, {"held out (control)", rr.Control}} {
			ew.printf("  %-20s %9d %10d %7s   %s\n", a.name, a.arm.N, a.arm.Contacted, pct(a.arm.Rate.Value), ci(a.arm.Rate, pct))
		}
		a, rel, av := rr.AbsoluteReduction, rr.RelativeReduction, rr.ContactsAvoided
		if a.Value.Valid() {
			ew.printf("  %-20s %s points (95%% CI %s)\n", "reduction", pts(a.Value), ci(a, pts))
			ew.printf("  %-20s %s (95%% CI %s)\n", "relative", pct(rel.Value), ci(rel, pct))
			ew.printf("  %-20s %s (95%% CI %s)\n", "contacts avoided", whole(av.Value), ci(av, whole))
		}
		ew.printf("  %-20s %s\n", "verdict", rr.Verdict)
		if rr.Why != "" {
			ew.printf("  %-20s (%s)\n", "", rr.Why)
		}
		if rr.ControlInhibited > 0 {
			ew.printf("  %-20s (%s left out: an open support contact would have inhibited them, as it did in the notified arm)\n", "", plural(rr.ControlInhibited, "held-out entity", "held-out entities"))
		}
		if rr.OpenWindows > 0 {
			ew.printf("  %-20s (%d of these fired less than %s ago: their contacts may still come)\n", "", rr.OpenWindows, r.Window)
		}
	}
	ew.printf("\nOverall, every rule: contacts within %s\n", r.Window)
	ew.printf("  %-20s %9s %10s %17s\n", "", "entities", "contacted", "contacts per 100")
	for _, g := range []struct {
		name string
		g    Group
	}{{"notified", r.Overall.Notified}, {"not notified", r.Overall.NotNotified}} {
		ew.printf("  %-20s %9d %10d %17s\n", g.name, g.g.Entities, g.g.Contacted, num1(g.g.Per100))
	}
	ew.printf("  (descriptive, not causal: notified entities are the ones something went wrong with)\n")
	return ew.err
}

// ci prints an interval with f, "–" when it does not exist.
func ci(e Estimate, f func(Num) string) string {
	if !e.Low.Valid() && !e.High.Valid() {
		return "–"
	}
	return f(e.Low) + " to " + f(e.High)
}

// WriteCSV writes a header and one row per rule; numbers that do not
// exist are empty. Rates and reductions are fractions (0.2 = 20%).
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	header := []string{
		"rule", "treated_n", "treated_contacted", "treated_contacts", "treated_rate",
		"control_n", "control_contacted", "control_contacts", "control_rate",
		"abs_reduction", "abs_low", "abs_high", "rel_reduction", "rel_low", "rel_high",
		"contacts_avoided", "avoided_low", "avoided_high", "verdict", "verdict_code", "open_windows",
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, rr := range r.Rules {
		a, rel, av := rr.AbsoluteReduction, rr.RelativeReduction, rr.ContactsAvoided
		row := []string{
			rr.Rule,
			strconv.Itoa(rr.Treated.N), strconv.Itoa(rr.Treated.Contacted), strconv.Itoa(rr.Treated.Contacts), csvNum(rr.Treated.Rate.Value),
			strconv.Itoa(rr.Control.N), strconv.Itoa(rr.Control.Contacted), strconv.Itoa(rr.Control.Contacts), csvNum(rr.Control.Rate.Value),
			csvNum(a.Value), csvNum(a.Low), csvNum(a.High), csvNum(rel.Value), csvNum(rel.Low), csvNum(rel.High),
			csvNum(av.Value), csvNum(av.Low), csvNum(av.High), rr.Verdict, rr.VerdictCode, strconv.Itoa(rr.OpenWindows),
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvNum(n Num) string {
	if !n.Valid() {
		return ""
	}
	return strconv.FormatFloat(math.Round(float64(n)*1e6)/1e6, 'f', -1, 64)
}

func pct(n Num) string {
	switch f := float64(n); {
	case math.IsInf(f, -1):
		return "−∞"
	case math.IsInf(f, 1):
		return "∞"
	case math.IsNaN(f):
		return "–"
	default:
		return fixed(100*f, 1) + "%"
	}
}

// pts prints a difference of rates in percentage points.
func pts(n Num) string {
	if !n.Valid() {
		return "–"
	}
	return fixed(100*float64(n), 1)
}

func whole(n Num) string {
	if !n.Valid() {
		return "–"
	}
	return fixed(float64(n), 0)
}

func num1(n Num) string {
	if !n.Valid() {
		return "–"
	}
	return fixed(float64(n), 1)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// fixed formats with prec decimals, without a "-0" for tiny negatives.
func fixed(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Trim(s, "-0.") == "" {
		return strings.TrimPrefix(s, "-")
	}
	return s
}

// errWriter keeps the first write error so the printing stays readable.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}
