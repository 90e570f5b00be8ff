package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/ruletest"
)

// cmdTest runs rule unit tests, promtool style.
func cmdTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("test", stderr)
	var c common
	c.register(fs)
	verbose := fs.Bool("v", false, "print every notification of every scenario")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	if len(paths) == 0 {
		paths = []string{strings.TrimSuffix(cfg.Rules, "/") + "/tests"}
	}
	files, err := ruletest.Discover(paths)
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	passed, failed := 0, 0
	began := time.Now()
	for _, f := range files {
		fmt.Fprintf(stdout, "Unit Testing: %s\n", f)
		results, err := ruletest.RunFile(ctx, f, cfg)
		if err != nil {
			fmt.Fprintf(stdout, "  FAILED:\n    %s\n", indent(err.Error()))
			failed++
			continue
		}
		for _, r := range results {
			if r.Passed() {
				passed++
				fmt.Fprintf(stdout, "  SUCCESS  %s (%d sent, %s)\n", r.Name, len(r.Sent), r.Took.Round(time.Millisecond))
			} else {
				failed++
				fmt.Fprintf(stdout, "  FAILED:  %s\n", r.Name)
				for _, f := range r.Failures {
					fmt.Fprintf(stdout, "    %s\n", indent(f))
				}
			}
			if *verbose || !r.Passed() {
				if len(r.Sent) > 0 {
					fmt.Fprintln(stdout, "    notifications sent:")
				}
				for _, s := range r.Sent {
					fmt.Fprintf(stdout, "      %s to %s via %s at +%s: %q\n", s.N.Rule, s.N.To.Customer, s.N.Channel, s.At.Sub(startOf(r)), s.N.Subject)
				}
			}
		}
	}
	fmt.Fprintf(stdout, "ran %d file(s) in %s\n", len(files), time.Since(began).Round(time.Millisecond))
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func startOf(r ruletest.Result) time.Time {
	if len(r.Sent) == 0 {
		return time.Time{}
	}
	return r.Start
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }
