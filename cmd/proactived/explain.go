package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/explain"
)

const explainUsage = "usage: proactived explain TYPE:KEY | --customer KEY [--json] [--limit N] [--data DIR] [--config FILE]"

// cmdExplain prints an entity's timeline, or everything about one
// customer, from the store under --data. It opens the SQLite file read-only,
// so it works beside a running daemon.
func cmdExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("explain", stderr)
	var c common
	c.register(fs)
	asJSON := fs.Bool("json", false, "print JSON (the document GET /api/v1/explain/{type}/{key} returns)")
	customer := fs.String("customer", "", "show everything about one customer: profile, decisions, notifications, contacts")
	limit := fs.Int("limit", explain.DefaultLimit, "newest entries kept per part (events, decisions, notifications, contacts)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if (*customer == "") == (len(pos) != 1) || len(pos) > 1 || *limit < 1 {
		fmt.Fprintln(stderr, explainUsage)
		return 2
	}
	var ref explain.Ref
	if *customer == "" {
		if ref, err = explain.ParseRef(pos[0]); err != nil {
			fmt.Fprintln(stderr, "proactived:", err)
			fmt.Fprintln(stderr, explainUsage)
			return 2
		}
	}
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	path := filepath.Join(cfg.Data, "proactived.db")
	db, err := explain.OpenReadOnly(ctx, path)
	if err != nil {
		fmt.Fprintln(stderr, "proactived: explain:", err)
		return 1
	}
	defer db.Close()
	opts := explain.Options{Limit: *limit}
	var tl *explain.Timeline
	if *customer != "" {
		tl, err = explain.Customer(ctx, db, *customer, opts)
	} else {
		tl, err = explain.Explain(ctx, db, ref, opts)
	}
	if errors.Is(err, explain.ErrNotFound) {
		fmt.Fprintf(stderr, "proactived: %v in %s (check the type and key; entities are forgotten after their ttl%s)\n", err, path, keptNote(cfg.Retention))
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(tl)
	} else {
		err = explain.WriteText(stdout, tl)
		if err == nil && cfg.Retention > 0 {
			_, err = fmt.Fprintf(stdout, "\n(history older than %s is deleted: retention)\n", cfg.Retention)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	return 0
}

// keptNote says how long history is kept, for a "not found".
func keptNote(retention config.Duration) string {
	if retention <= 0 {
		return ""
	}
	return fmt.Sprintf(", and decisions and notifications after %s (retention)", retention)
}
