package backtest

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WriteJSON writes the report as one indented JSON document.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report for people: the window, one line per rule
// with its diff against live, then notes and the replay speed.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	rulesDir := rep.RulesDir
	if rulesDir == "" {
		rulesDir = "(rule set)"
	}
	fmt.Fprintf(&b, "backtest of %s against stream %s\n", rulesDir, rep.Stream)
	fmt.Fprintf(&b, "window:  %s .. %s (stream time, %s)\n", stamp(rep.Since), stamp(rep.Until), span(rep.Until.Sub(rep.Since)))
	if !rep.VirtualStart.IsZero() {
		fmt.Fprintf(&b, "clock:   %s .. %s (virtual, follows the events' times)\n", stamp(rep.VirtualStart), stamp(rep.VirtualEnd))
	}
	if rep.Snapshot != "" {
		fmt.Fprintf(&b, "state:   %d entities from snapshot %s; no dedup marks, budgets or timers\n", rep.SnapshotEntities, rep.Snapshot)
	} else {
		b.WriteString("state:   empty at the start (no entities, dedup marks, budgets or timers)\n")
	}
	fmt.Fprintf(&b, "events:  %d in the window: %d replayed, %d ignored (no rule or entity uses the subject), %d rejected\n",
		rep.Events, rep.Replayed, rep.Ignored, rep.Rejected)
	if rep.LiveNote != "" {
		fmt.Fprintf(&b, "live:    %s; no comparison\n", rep.LiveNote)
	} else {
		fmt.Fprintf(&b, "live:    notifications created in the window in %s\n", rep.LiveDB)
	}
	b.WriteString("\n")

	withLive := rep.LiveNote == ""
	head := []string{"RULE", "WOULD SEND", "CUSTOMERS"}
	if withLive {
		head = append(head, "LIVE SENT", "DIFF")
	}
	head = append(head, "NOT SENT, BY VERDICT")
	table := [][]string{head}
	var would, live int
	for _, r := range rep.Rules {
		row := []string{r.label()}
		if r.InCandidate {
			row = append(row, strconv.Itoa(r.WouldSend), strconv.Itoa(r.Customers))
			would += r.WouldSend
		} else {
			row = append(row, "-", "-")
		}
		if withLive {
			if r.Live == nil || (r.Change == "new" && r.Live.Sent == 0 && len(r.Live.Verdicts) == 0) {
				row = append(row, "-", signed(r.WouldSend))
			} else {
				row = append(row, strconv.Itoa(r.Live.Sent), signed(r.Diff))
				live += r.Live.Sent
			}
		}
		row = append(row, r.suppressed())
		table = append(table, row)
	}
	writeTable(&b, table)
	b.WriteString("\n")

	if withLive {
		fmt.Fprintf(&b, "total: would send %d, live sent %d (%s)\n", would, live, signed(would-live))
	} else {
		fmt.Fprintf(&b, "total: would send %d\n", would)
	}
	for _, n := range rep.notes() {
		b.WriteString(n + "\n")
	}
	fmt.Fprintf(&b, "replay: %d events in %s (%s events/s)\n", rep.Events, rep.Took.Round(time.Millisecond), rate(rep.EventsPerSec))
	_, err := io.WriteString(w, b.String())
	return err
}

func (r RuleReport) label() string {
	var tags []string
	if r.Change != "" {
		tags = append(tags, r.Change)
	}
	if r.Mode == "shadow" {
		tags = append(tags, "shadow")
	}
	if len(tags) == 0 {
		return r.Name
	}
	return r.Name + " (" + strings.Join(tags, ", ") + ")"
}

// suppressed lists the verdicts that kept notifications back, in policy
// order, and what was still queued at the end.
func (r RuleReport) suppressed() string {
	var parts []string
	for _, v := range Suppressions {
		if n := r.Verdicts[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", v, n))
		}
	}
	if r.QueuedAtEnd > 0 {
		parts = append(parts, fmt.Sprintf("queued at end %d", r.QueuedAtEnd))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// notes are the lines that need attention, each only when it applies.
func (rep *Report) notes() []string {
	var out []string
	if rep.Rejected > 0 {
		out = append(out, fmt.Sprintf("%d events rejected (dead letters): %s", rep.Rejected, counts(rep.RejectedBy)))
	}
	if len(rep.Uncaptured) > 0 {
		out = append(out, "warning: the stream does not capture "+strings.Join(rep.Uncaptured, ", ")+
			", which the rules use: those events cannot be replayed")
	}
	if rep.Reordered > 0 {
		out = append(out, fmt.Sprintf("%d events carried a time before an earlier event's and were handled at the later time", rep.Reordered))
	}
	queued, failed, shadow := map[string]int{}, map[string]int{}, map[string]int{}
	for _, r := range rep.Rules {
		if r.Live == nil {
			continue
		}
		if r.Live.Queued > 0 {
			queued[r.Name] = r.Live.Queued
		}
		if r.Live.Failed > 0 {
			failed[r.Name] = r.Live.Failed
		}
		if r.Live.Shadow > 0 {
			shadow[r.Name] = r.Live.Shadow
		}
	}
	if len(queued) > 0 {
		out = append(out, "live, still queued (not counted as sent): "+counts(queued))
	}
	if len(failed) > 0 {
		out = append(out, "live, failed on every channel (not counted as sent): "+counts(failed))
	}
	if len(shadow) > 0 {
		out = append(out, "live shadow rules decided, without sending: "+counts(shadow))
	}
	return out
}

func writeTable(b *strings.Builder, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	last := len(widths) - 1
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			switch {
			case i == 0:
				line.WriteString(c + pad)
			case i == last:
				line.WriteString("  " + c)
			default:
				line.WriteString("  " + pad + c) // numbers right-aligned
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func signed(n int) string {
	if n > 0 {
		return "+" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// span renders a window length as days, hours and minutes.
func span(d time.Duration) string {
	d = d.Round(time.Minute)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	m := (d - h*time.Hour) / time.Minute
	var parts []string
	if days > 0 {
		parts = append(parts, fmt.Sprintf("%dd", days))
	}
	if h > 0 {
		parts = append(parts, fmt.Sprintf("%dh", h))
	}
	if m > 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%dm", m))
	}
	return strings.Join(parts, "")
}

// rate renders events per second with thousands separators.
func rate(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
