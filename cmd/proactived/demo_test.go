package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func runDemo(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	base := []string{"demo", "--config", "../../proactived.yaml", "--rules", "../../rules.d", "--log-level", "warn"}
	code := Main(ctx, append(base, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestDemoSimulate: `demo --simulate` plays shop time into a fresh data
// dir, prints what the engine decided with explain commands that work,
// and leaves a store that `report` reads; it refuses to write into a
// store that exists.
func TestDemoSimulate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	code, out, errs := runDemo(t, t.Context(), "--simulate", "1d", "--orders", "300", "--seed", "4", "--serve=false", "--data", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"Playing 1d of a simulated shop (300 orders", "What the engine decided:", "deferred", "Why, entity by entity:",
		"Effectiveness", "proactived report --config ../../proactived.yaml --data " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`proactived explain (order:o-\d+) --config \S+ --data (\S+)\s+# sent`).FindStringSubmatch(out)
	if m == nil || m[2] != dir {
		t.Fatalf("no explain pointer for a sent notification:\n%s", out)
	}
	var eo, ee bytes.Buffer
	if c := Main(t.Context(), []string{"explain", m[1], "--data", dir}, &eo, &ee); c != 0 || !strings.Contains(eo.String(), "SENT") {
		t.Fatalf("explain %s: exit %d\n%s%s", m[1], c, eo.String(), ee.String())
	}
	var ro, re bytes.Buffer
	if c := Main(t.Context(), []string{"report", "--data", dir}, &ro, &re); c != 0 || !strings.Contains(ro.String(), "delivery-delayed") {
		t.Fatalf("report: exit %d\n%s%s", c, ro.String(), re.String())
	}
	code, _, errs = runDemo(t, t.Context(), "--simulate", "1d", "--orders", "300", "--serve=false", "--data", dir)
	if code != 1 || !strings.Contains(errs, "writes a fresh store") {
		t.Fatalf("a second --simulate into %s: exit %d %q, want 1 and a refusal", dir, code, errs)
	}
}

// TestDemoEmbedded: `demo --embedded` starts a daemon in-process,
// publishes the shop live over its embedded NATS, and prints the
// decisions and where to look next (the console URL). Without --data it
// writes into a new temporary dir, never ./data.
func TestDemoEmbedded(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	code, out, errs := runDemo(t, ctx, "--embedded", "--serve=false", "--rate", "800/s", "--duration", "1500ms", "--http", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"Daemon started in-process", "Publishing a simulated shop", "events/s", "Published ", "What the engine decided:",
		"pending", "armed", "console: rules, notifications", "delivery-delayed holds for 15m"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`Daemon started in-process: data (\S+),`).FindStringSubmatch(out)
	if m == nil || !strings.HasPrefix(m[1], os.Getenv("TMPDIR")) {
		t.Fatalf("data dir %v, want a new dir under TMPDIR", m)
	}
	if _, err := os.Stat(filepath.Join(m[1], "proactived.db")); err != nil {
		t.Fatalf("the demo's store is gone: %v", err)
	}
}

func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{{"extra"}, {"--rate", "fast"}, {"--rate", "-3"}, {"--duration", "0s"}, {"--simulate", "soon"}} {
		code, _, errs := runDemo(t, t.Context(), args...)
		if code != 2 {
			t.Errorf("demo %v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
}
