package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// maxDataText bounds an event's data on a terminal line; --json has it all.
const maxDataText = 160

// WriteText renders a timeline for a terminal: a short header with the
// current state as JSON, then one line per item in aligned columns (RFC
// 3339 times, verdicts in capitals), then the notifications.
func WriteText(w io.Writer, tl *Timeline) error {
	var b strings.Builder
	what := "entity timeline"
	if tl.View == ViewCustomer {
		what = "customer view: profile, every decision and notification for this customer, support contacts"
	}
	fmt.Fprintf(&b, "%s  (%s)\n", tl.Entity, what)
	label := "state"
	if tl.View == ViewCustomer {
		label = "profile"
	}
	if tl.Known {
		state, err := json.Marshal(tl.State)
		if err != nil {
			return fmt.Errorf("render state: %w", err)
		}
		fmt.Fprintf(&b, "%s: %s\n", label, state)
		fmt.Fprintf(&b, "created %s, updated %s\n", fmtTime(tl.CreatedAt), fmtTime(tl.UpdatedAt))
	} else {
		fmt.Fprintf(&b, "%s: none stored (never seen, or forgotten after its ttl)\n", label)
	}
	pending := 0
	for _, it := range tl.Items {
		if it.Kind == KindTimer {
			pending++
		}
	}
	fmt.Fprintf(&b, "%d item(s), %d notification(s), %d pending timer(s)", len(tl.Items), len(tl.Notifications), pending)
	if tl.Truncated {
		b.WriteString("; older entries left out (raise --limit)")
	}
	b.WriteString("\n\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}

	customer := tl.View == ViewCustomer
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if customer {
		fmt.Fprintln(tw, "TIME\tWHAT\tRULE/SUBJECT\tENTITY\tDETAIL")
	} else {
		fmt.Fprintln(tw, "TIME\tWHAT\tRULE/SUBJECT\tDETAIL")
	}
	for _, it := range tl.Items {
		kind, who, ent, detail := line(it)
		if customer {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.At.UTC().Format(time.RFC3339), kind, cell(who), cell(ent), oneLine(detail))
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.At.UTC().Format(time.RFC3339), kind, cell(who), oneLine(detail))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(tl.Notifications) == 0 {
		return nil
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NOTIFICATION\tRULE\tENTITY\tSTATUS\tCHANNEL\tTRIES\tCREATED\tSUBJECT")
	for _, n := range tl.Notifications {
		subject := n.Subject
		if n.NextAt != nil {
			subject += " (due " + n.NextAt.UTC().Format(time.RFC3339) + ")"
		}
		if n.LastError != "" {
			subject += " — last error: " + n.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", n.ID, n.Rule, cell(refString(n.Entity)), strings.ToUpper(n.Status),
			cell(n.Channel), len(n.AttemptLog), n.CreatedAt.UTC().Format(time.RFC3339), oneLine(subject))
	}
	return tw.Flush()
}

// line returns an item's WHAT, RULE/SUBJECT, ENTITY and DETAIL cells.
func line(it Item) (what, who, ent, detail string) {
	switch it.Kind {
	case KindEvent:
		ev := it.Event
		detail = "id " + ev.ID
		if ev.Seq != 0 {
			detail += fmt.Sprintf(" seq %d", ev.Seq)
		}
		if len(ev.Data) > 0 {
			data := string(ev.Data)
			if len([]rune(data)) > maxDataText {
				data = string([]rune(data)[:maxDataText]) + "…"
			}
			detail += " " + data
		}
		return "event", ev.Subject, refString(ev.Entity), detail
	case KindDecision:
		d := it.Decision
		what = strings.ToUpper(d.Verdict)
		if d.Verdict == "promise" {
			switch {
			case strings.HasPrefix(d.Reason, "kept"):
				what = "PROMISE KEPT"
			case strings.HasPrefix(d.Reason, "broken"):
				what = "PROMISE BROKEN"
			}
		}
		detail = d.Reason
		if d.Notification != "" && !strings.Contains(detail, d.Notification) {
			detail += " [notification " + d.Notification + "]"
		}
		if d.Mode == "shadow" && d.Verdict != "shadow" {
			detail += " (shadow mode: nothing sent)"
		}
		return what, d.Rule, refString(d.Entity), detail
	case KindAttempt:
		a := it.Attempt
		if a.OK {
			detail = fmt.Sprintf("ok in %dms", a.DurationMS)
		} else {
			kind := "permanent"
			if a.Retry {
				kind = "retryable"
			}
			detail = fmt.Sprintf("failed (%s) in %dms: %s", kind, a.DurationMS, a.Error)
		}
		detail += fmt.Sprintf(" [try %d, notification %s]", a.Attempt, a.Notification)
		return "attempt", a.Channel, "", detail
	case KindTimer:
		t := it.Timer
		switch t.Kind {
		case "absence":
			detail = "absence deadline: the rule fires at " + t.Due.UTC().Format(time.RFC3339) + " unless the expected event arrives"
		case "for":
			detail = "for: hold-down: the rule fires at " + t.Due.UTC().Format(time.RFC3339) + " if its condition still holds"
		case "promise":
			detail = "promise follow-up due " + t.Due.UTC().Format(time.RFC3339) + " unless a newer notification goes out"
			if t.Notification != "" {
				detail += " (promised by notification " + t.Notification + ")"
			}
		default:
			detail = t.Kind + " timer due " + t.Due.UTC().Format(time.RFC3339)
		}
		detail += "; armed " + t.ArmedAt.UTC().Format(time.RFC3339)
		return "timer", t.Rule, refString(t.Entity), detail
	case KindContact:
		c := it.Contact
		detail = "support contact " + c.Status
		if c.Channel != "" {
			detail += " via " + c.Channel
		}
		if c.Topic != "" {
			detail += ", topic " + c.Topic
		}
		if c.Entity != nil {
			detail += ", about " + c.Entity.String()
		} else {
			detail += ", about nothing in particular"
		}
		if c.ContactID != "" {
			detail += " (id " + c.ContactID + ")"
		}
		if c.Customer != "" {
			detail += ", customer " + c.Customer
		}
		ent := ""
		if c.Entity != nil {
			ent = c.Entity.String()
		}
		return "contact", c.Topic, ent, detail
	}
	return it.Kind, "", "", ""
}

func refString(r Ref) string {
	if r.IsZero() {
		return ""
	}
	return r.String()
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// oneLine keeps a cell on its line and out of the tabwriter's columns.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}
