package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/report"
)

const reportUsage = "usage: proactived report [--since DUR|TIME] [--until DUR|TIME] [--window DUR] [--rule R] [--by entity|customer] [--topic T] [--json|--csv] [--data DIR] [--config FILE]"

// cmdReport prints the effectiveness report: per rule, the repeat-contact
// rate of notified vs held-out entities (docs/report.md). It reads the
// SQLite file under --data read-only, so it works beside a running daemon.
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("report", stderr)
	var c common
	c.register(fs)
	since := fs.String("since", "30d", "fires since this long ago (30d, 12h) or this RFC 3339 time")
	until := fs.String("until", "", "fires until this long ago or this RFC 3339 time (default now)")
	window := fs.String("window", "7d", "count contacts this long after each fire")
	rule := fs.String("rule", "", "only this rule")
	by := fs.String("by", report.ByEntity, "entity: contacts about the entity; customer: any contact of its customer")
	topic := fs.String("topic", "", "only contacts with this topic (e.g. order_status)")
	asJSON := fs.Bool("json", false, "print JSON (what GET /api/v1/report returns)")
	asCSV := fs.Bool("csv", false, "print CSV, one row per rule")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 || (*asJSON && *asCSV) {
		fmt.Fprintln(stderr, reportUsage)
		return 2
	}
	now := time.Now().UTC()
	o := report.Options{Rule: *rule, By: *by, Topic: *topic}
	if o.Since, err = report.ParseTime(*since, now); err != nil {
		fmt.Fprintln(stderr, "proactived: --since:", err)
		return 2
	}
	if *until != "" {
		if o.Until, err = report.ParseTime(*until, now); err != nil {
			fmt.Fprintln(stderr, "proactived: --until:", err)
			return 2
		}
	} else {
		o.Until = now
	}
	if o.Window, err = report.ParseWindow(*window); err != nil {
		fmt.Fprintln(stderr, "proactived: --window:", err)
		return 2
	}
	if o.By != report.ByEntity && o.By != report.ByCustomer {
		fmt.Fprintf(stderr, "proactived: --by %q: want entity or customer\n", o.By)
		return 2
	}
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	db, err := explain.OpenReadOnly(ctx, filepath.Join(cfg.Data, "proactived.db"))
	if err != nil {
		fmt.Fprintln(stderr, "proactived: report:", err)
		return 1
	}
	defer db.Close()
	rep, err := report.Compute(ctx, db, o)
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	switch {
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	case *asCSV:
		err = report.WriteCSV(stdout, rep)
	default:
		err = report.WriteText(stdout, rep)
	}
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	return 0
}
