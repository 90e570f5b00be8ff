package tests

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/daemon"
)

// scrape fetches /metrics (with the bearer token when one is configured).
func (e *env) scrape() string {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.d.HTTPAddr()+"/metrics", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if tok := e.cfg.HTTP.Token.Reveal(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// canonical sorts a series' labels: name{b="2",a="1"} → name{a="1",b="2"}.
func canonical(series string) string {
	i := strings.IndexByte(series, '{')
	if i < 0 {
		return series
	}
	pairs := labelRE.FindAllString(series[i:], -1)
	slices.Sort(pairs)
	return series[:i] + "{" + strings.Join(pairs, ",") + "}"
}

// metric returns the value of one series (name with all its labels, in any
// order) from a fresh scrape; a missing series fails the test.
func (e *env) metric(series string) float64 {
	e.t.Helper()
	want := canonical(series)
	body := e.scrape()
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || canonical(line[:sp]) != want {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			e.t.Fatalf("series %s: %v", series, err)
		}
		return v
	}
	name, _, _ := strings.Cut(series, "{")
	var near []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name) {
			near = append(near, line)
		}
	}
	e.t.Fatalf("no series %s; have:\n%s", series, strings.Join(near, "\n"))
	return 0
}

// TestMetrics runs a known scenario and checks the exact values of the
// series it must have moved, and that /metrics sits behind the token while
// health stays open.
func TestMetrics(t *testing.T) {
	cfg := shopConfig + "http: { token: \"metrics-test-token\" }\n"
	e := startWith(t, testdata("shop"), cfg, func(o *daemon.Options) { o.SampleEvery = 50 * time.Millisecond })
	// The first delivery attempt fails with a retryable status.
	var calls atomic.Int32
	e.sink.mu.Lock()
	e.sink.status = func(int) int {
		if calls.Add(1) == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	e.sink.mu.Unlock()

	seedCustomers(e)                                                                                                  // 2 events
	e.publish("logistics.parcel.created", `{"parcel_ref":"m-1","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, "") // 1
	e.publish("logistics.parcel.eta", `{"parcel_ref":"m-1","eta":"2026-11-22T12:00:00Z"}`, "")                        // parcel-late sent + shadow
	e.publish("logistics.parcel.weighed", `{"parcel_ref":"m-1"}`, "")                                                 // parcel-weight-check error
	e.publish("logistics.parcel.eta", `not json`, "")                                                                 // dead: not_json
	e.publish("logistics.parcel.eta", `{also not json`, "")                                                           // dead: not_json
	e.publish("logistics.parcel.eta", `{"eta":"2026-11-22T12:00:00Z"}`, "")                                           // dead: missing_key

	waitFor(t, 10*time.Second, func() error {
		if d := e.decisions("parcel-late parcel:m-1 delivered"); len(d) != 1 {
			return fmt.Errorf("not delivered yet: %v", e.decisions(""))
		}
		if got := e.metric("proactived_events_consumed_total"); got != 8 {
			return fmt.Errorf("events consumed %v", got)
		}
		return nil
	})
	// The sampled gauges catch up within a few sampling rounds.
	waitFor(t, 5*time.Second, func() error {
		if got := e.metric(`proactived_outbox_depth{status="sent"}`); got != 1 {
			return fmt.Errorf("outbox_depth{sent} = %v", got)
		}
		return nil
	})

	want := map[string]float64{
		`proactived_events_consumed_total`:                                                     8,
		`proactived_events_dead_lettered_total{reason="not_json"}`:                             2,
		`proactived_events_dead_lettered_total{reason="missing_key"}`:                          1,
		`proactived_consumer_pending`:                                                          0,
		`proactived_rule_evaluations_total{rule="parcel-late"}`:                                1,
		`proactived_rule_fires_total{rule="parcel-late"}`:                                      1,
		`proactived_rule_errors_total{rule="parcel-late"}`:                                     0,
		`proactived_rule_evaluations_total{rule="parcel-weight-check"}`:                        1,
		`proactived_rule_fires_total{rule="parcel-weight-check"}`:                              0,
		`proactived_rule_errors_total{rule="parcel-weight-check"}`:                             1,
		`proactived_decisions_total{rule="parcel-late",verdict="sent",mode="live"}`:            1,
		`proactived_decisions_total{rule="shadow-parcel-late",verdict="shadow",mode="shadow"}`: 1,
		`proactived_decisions_total{rule="parcel-weight-check",verdict="error",mode="live"}`:   1,
		`proactived_delivery_attempts_total{channel="sms",result="error"}`:                     1,
		`proactived_delivery_attempts_total{channel="sms",result="ok"}`:                        1,
		`proactived_delivery_duration_seconds_count{channel="sms"}`:                            2,
		`proactived_outbox_depth{status="sent"}`:                                               1,
		`proactived_outbox_depth{status="pending"}`:                                            0,
		`proactived_outbox_depth{status="failed"}`:                                             0,
		`proactived_timers_pending`:                                                            0,
		`proactived_rules_loaded`:                                                              3,
		`proactived_reloads_total{result="ok"}`:                                                0,
		`proactived_reloads_total{result="error"}`:                                             0,
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if got := e.metric(k); got != want[k] {
			t.Errorf("%s = %v, want %v", k, got, want[k])
		}
	}
	body := e.scrape()
	for _, name := range []string{"go_goroutines ", "process_cpu_seconds_total ", "proactived_delivery_duration_seconds_bucket{"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("no %s series", strings.TrimSpace(name))
		}
	}
	// Nothing else was decided: the decision counters match the table.
	var decided float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "proactived_decisions_total{") {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			decided += v
		}
	}
	if decided != 3 {
		t.Errorf("decisions_total sums to %v, want 3", decided)
	}

	// /metrics is behind the token; health is not.
	for path, wantStatus := range map[string]int{"/metrics": 401, "/healthz": 200, "/readyz": 200} {
		r := e.api(path)
		r.Body.Close()
		if r.StatusCode != wantStatus {
			t.Errorf("GET %s without a token: %d, want %d", path, r.StatusCode, wantStatus)
		}
	}
}
