package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/proactived/proactived/engine/backtest"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/rules"
)

// cmdBacktest replays retained events through a rule set and prints what
// it would have sent against what the running rules sent.
func cmdBacktest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("backtest", stderr)
	var c common
	c.register(fs)
	since := fs.String("since", "", "replay the events stored since this long ago (e.g. 24h, 7d)")
	until := fs.String("until", "", "end of the window: RFC 3339 time, or a duration ago (default now)")
	asJSON := fs.Bool("json", false, "print a machine-readable report")
	snapshot := fs.String("snapshot", "", "SQLite file (a copy of proactived.db taken before the window) whose entities seed the replay")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 0 || *since == "" {
		fmt.Fprintln(stderr, "usage: proactived backtest --since DUR [--until T] [--rules DIR] [--snapshot FILE] [--json]")
		return 2
	}
	// --rules names the candidate set; the running daemon uses the
	// configured one, which is what "live" is compared with.
	candidate := c.rules
	c.rules = ""
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	now := time.Now().UTC()
	sinceD, err := rules.ParseDuration(*since)
	if err != nil || sinceD <= 0 {
		fmt.Fprintf(stderr, "proactived: --since %q: want a positive duration such as 24h or 7d\n", *since)
		return 2
	}
	end := now
	if *until != "" {
		if end, err = parseUntil(*until, now); err != nil {
			fmt.Fprintln(stderr, "proactived:", err)
			return 2
		}
	}

	liveDir := cfg.Rules
	liveSet, liveErr := daemon.LoadRules(cfg)
	set := liveSet
	if candidate != "" && filepath.Clean(candidate) != filepath.Clean(liveDir) {
		cand := *cfg
		cand.Rules = candidate
		if set, err = daemon.LoadRules(&cand); err != nil {
			fmt.Fprintf(stderr, "proactived: rules %s:\n%v\n", candidate, err)
			return 1
		}
		if liveErr != nil {
			fmt.Fprintf(stderr, "proactived: warning: the configured rules %s do not load, so rules are not marked new/removed/changed: %v\n", liveDir, firstLineOf(liveErr))
			liveSet = nil
		}
	} else {
		candidate = liveDir
		if liveErr != nil {
			fmt.Fprintf(stderr, "proactived: rules %s:\n%v\n", liveDir, liveErr)
			return 1
		}
	}

	nc, err := dial(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	defer nc.Close()
	opts := backtest.Options{
		Conn: nc, Config: cfg, Rules: set, RulesDir: candidate, LiveRules: liveSet,
		LiveDB: filepath.Join(cfg.Data, "proactived.db"),
		Since:  now.Add(-sinceD), Until: end, Snapshot: *snapshot,
	}
	term := isTerminal(stderr)
	if term {
		opts.Progress = func(p backtest.Progress) {
			pct := 100.0
			if p.Total > 0 {
				pct = 100 * float64(p.Done) / float64(p.Total)
			}
			rate := 0.0
			if p.Elapsed > 0 {
				rate = float64(p.Done) / p.Elapsed.Seconds()
			}
			fmt.Fprintf(stderr, "\r\033[Kreplaying %d / %d events (%.0f%%), %.0f events/s", p.Done, p.Total, pct, rate)
		}
	}
	// On Ctrl-C the replay stops and still removes its scratch store and
	// its consumer.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := backtest.Run(ctx, opts)
	if term {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	return 0
}

// parseUntil reads --until: an RFC 3339 time, or a duration before now.
func parseUntil(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	d, err := rules.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--until %q: want an RFC 3339 time (2026-11-20T10:00:00Z) or a duration ago (1d)", s)
	}
	return now.Add(-d), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func firstLineOf(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
