package tests

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
)

// TestBenchMemory runs `proactived bench --memory` as a user would: the
// built binary measures a child daemon (itself, `run`) taking in one event
// per entity, and reports its own RSS and what it stored. Figures are not
// asserted beyond being measured; the stored entities are.
func TestBenchMemory(t *testing.T) {
	bin := buildDaemon(t)
	t.Run("external NATS", func(t *testing.T) { benchMemory(t, bin) })
	t.Run("embedded NATS", func(t *testing.T) { benchMemory(t, bin, "--embedded") })
}

func benchMemory(t *testing.T, bin string, extra ...string) {
	var out, errOut bytes.Buffer
	args := append([]string{"bench", "--memory", "--orders", "3000", "--customers", "200", "--rules", "50", "--json"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench --memory: %v\n%s", err, errOut.String())
	}
	var rep struct {
		Entities int     `json:"entities"`
		Stored   int     `json:"entities_stored"`
		Rate     float64 `json:"engine_events_per_sec"`
		Peak     float64 `json:"daemon_peak_rss_mb"`
		RSS      float64 `json:"daemon_rss_mb"`
		Embedded bool    `json:"embedded_nats"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	t.Logf("bench --memory: %+v", rep)
	if rep.Entities != 3200 || rep.Stored != 3200 {
		t.Errorf("entities %d, stored %d, want 3200 each (3000 orders, 200 customers)", rep.Entities, rep.Stored)
	}
	if rep.Embedded != (len(extra) > 0) {
		t.Errorf("report says embedded_nats %v for %v", rep.Embedded, extra)
	}
	if rep.Peak <= 0 || rep.RSS <= 0 || rep.RSS > rep.Peak || rep.Rate <= 0 {
		t.Errorf("figures not measured: peak %.1f MB, rss %.1f MB, rate %.0f/s", rep.Peak, rep.RSS, rep.Rate)
	}
}
