package tests

// Helpers for the robustness tests (crash, broker restart, channel outage,
// store failure): a workload generator that knows which notifications its
// events must cause, a publisher that retries while the broker is away, a
// webhook sink that records every request by Idempotency-Key and can fail
// on demand, and the built binary run as a subprocess.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

// longRun says whether the long variants were asked for
// (PROACTIVED_LONG=1 go test -run 'TestCrash|TestChannelOutage' ./tests/).
func longRun() bool { return os.Getenv("PROACTIVED_LONG") != "" }

// robustRules is the rule set of the robustness tests: an order is late
// when its carrier ETA is more than an hour past the promise; each late
// ETA is one notification (dedup key = order + ETA).
const robustRules = robustEntities + `
rules:
  - name: order-late
    on: shop.shipments.eta
    entity: order
    if: date(event.eta) > date(order.promised_at) + duration("1h")
    notify:
      to: order.customer_id
      template: order-late
      priority: high
      vars: { eta: event.eta }
    dedup: { key: order.order_id + "/" + event.eta }

templates:
  order-late:
    en:
      subject: "Order {{ .order.order_id }} is late"
      body: "It now arrives {{ .vars.eta }}."
`

// robustEntities are the shop's entities every robustness rule set uses.
const robustEntities = `
entities:
  order:
    key: event.order_id
    subjects: ["shop.orders.>", "shop.shipments.>"]
  customer:
    key: event.customer_id
    subjects: ["shop.customers.>"]
`

// robustConfig is proactived.yaml for the robustness tests: quiet hours
// off, no practical frequency cap, the email channel to primary and (for
// customers that list it) sms to fallback.
func robustConfig(primary, fallback string, attempts int, backoff, maxBackoff string) string {
	return fmt.Sprintf(`
channels:
  email: { type: webhook, url: %q, address_field: email, timeout: 2s }
  sms:   { type: webhook, url: %q, address_field: phone, timeout: 2s }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "00:00", end: "00:00" }
  frequency_cap: { max: 1000000, per: 24h }
  retry: { attempts: %d, backoff: %s, max_backoff: %s, timeout: 2s }
# batch 4 with state_flush 2s: entity state is written back (never
# "idle"), so every kill, broker restart and store failure also exercises
# the rebuild from the stream.
intake: { max_wait: 5ms, batch: 4, state_flush: 2s }
`, primary+"/email", fallback+"/sms", attempts, backoff, maxBackoff)
}

// checkStates verifies that every order's state holds its final ETA and
// its promise: no event of the workload was skipped.
func checkStates(t *testing.T, e *env, w *workload) {
	t.Helper()
	bad := 0
	for id, eta := range w.finalETA {
		st, err := e.d.Engine().Entity(context.Background(), "order", id)
		if err != nil || st["eta"] != eta || st["promised_at"] == nil {
			if bad++; bad <= 5 {
				t.Errorf("order %s: state %v (%v), want eta %s and a promise", id, st, err, eta)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d orders have a wrong state: events were lost", bad, len(w.finalETA))
	}
}

// startRobust boots the daemon in-process over robustRules with cfgText,
// against natsURL (a fresh test server when empty).
func startRobust(t *testing.T, natsURL, cfgText string, opts ...func(*daemon.Options)) *env {
	t.Helper()
	return startRobustRules(t, natsURL, cfgText, robustRules, opts...)
}

// startRobustRules is startRobust over ruleText.
func startRobustRules(t *testing.T, natsURL, cfgText, ruleText string, opts ...func(*daemon.Options)) *env {
	t.Helper()
	if natsURL == "" {
		natsURL = natstest.Run(t).URL
	}
	cfg := config.Default()
	if err := config.Parse(cfg, "robust.yaml", []byte(cfgText), os.LookupEnv); err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Rules = rulesDir(t, map[string]string{"shop.yaml": ruleText})
	cfg.Data = t.TempDir()
	cfg.NATS.URL = natsURL
	cfg.HTTP.Addr = "127.0.0.1:0"
	e := &env{t: t, cfg: cfg, logs: &syncBuffer{}, opts: opts}
	e.boot()
	return e
}

// lateOrders is n orders of customers c-0000… that are each created and
// then get a late ETA: one notification each. Publish created before eta.
func lateOrders(prefix string, n, customers int) (created, eta []genEvent, expected map[string]bool) {
	expected = map[string]bool{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		at := fmt.Sprintf("2026-11-22T%02d:%02d:00Z", 10+i/60%12, i%60)
		created = append(created, genEvent{Subject: "shop.orders.created", ID: "created-" + id,
			Body: fmt.Appendf(nil, `{"order_id":%q,"customer_id":"c-%04d","promised_at":"2026-11-21T18:00:00Z","status":"paid"}`, id, i%customers)})
		eta = append(eta, genEvent{Subject: "shop.shipments.eta", ID: "eta-" + id,
			Body: fmt.Appendf(nil, `{"order_id":%q,"eta":%q}`, id, at)})
		expected["order-late/"+id+"/"+at] = true
	}
	return created, eta, expected
}

// genEvent is one event of a workload.
type genEvent struct {
	Subject string
	Body    []byte
	ID      string // Nats-Msg-Id: a producer's retry has no second effect
}

// workload is a generated stream of shop events and, computed from the
// generator's own choices (not by running any rule), the idempotency keys
// of the notifications it must cause: exactly one per late order.
type workload struct {
	events   []genEvent
	expected map[string]bool
	orders   int
	// finalETA is each order's last ETA: what its state must hold when
	// every event was applied.
	finalETA map[string]string
}

// genWorkload makes customers, then orders: each is created, and about
// 700 events later gets a carrier ETA; ~35% are late (one notification
// each), ~10% of the on-time ones get a second on-time ETA and ~10% of the
// late ones are first on time (no notification for those ETAs). An order's
// events are never close together, so a chunked publisher keeps their
// order even when it retries.
func genWorkload(orders, customers int, seed uint64) *workload {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	w := &workload{expected: map[string]bool{}, orders: orders, finalETA: map[string]string{}}
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for c := 0; c < customers; c++ {
		id := fmt.Sprintf("c-%04d", c)
		w.events = append(w.events, genEvent{Subject: "shop.customers.updated", ID: "cust-" + id,
			Body: fmt.Appendf(nil, `{"customer_id":%q,"email":"%s@example.com","phone":"+1555%07d","locale":"en","channels":["email","sms"]}`, id, id, c)})
	}
	const lag = 700 // steps between an order's events
	var slots []slot
	ts := func(t time.Time) string { return t.Format(time.RFC3339) }
	for i := 0; i < orders; i++ {
		id := fmt.Sprintf("o-%06d", i)
		promised := base.Add(time.Duration(i%(24*14)) * time.Hour)
		slots = append(slots, slot{i, 0, genEvent{Subject: "shop.orders.created", ID: "created-" + id,
			Body: fmt.Appendf(nil, `{"order_id":%q,"customer_id":"c-%04d","promised_at":%q,"status":"paid","total":%d}`, id, i%customers, ts(promised), 1000+i%5000)}})
		eta := func(n int, at time.Time) {
			w.finalETA[id] = ts(at)
			slots = append(slots, slot{i + n*lag, n, genEvent{Subject: "shop.shipments.eta", ID: fmt.Sprintf("eta%d-%s", n, id),
				Body: fmt.Appendf(nil, `{"order_id":%q,"eta":%q,"carrier":"acme"}`, id, ts(at))}})
		}
		onTime := promised.Add(-time.Duration(rng.IntN(24*60)) * time.Minute)
		switch late := rng.Float64() < 0.35; {
		case late:
			at := promised.Add(2*time.Hour + time.Duration(rng.IntN(46*60))*time.Minute)
			if rng.Float64() < 0.1 {
				eta(1, onTime)
				eta(2, at)
			} else {
				eta(1, at)
			}
			w.expected["order-late/"+id+"/"+ts(at)] = true
		case rng.Float64() < 0.1:
			eta(1, onTime)
			eta(2, promised.Add(30*time.Minute)) // within the hour's grace: on time
		default:
			eta(1, onTime)
		}
	}
	w.events = append(w.events, inOrder(slots)...)
	return w
}

// slot places a generated event: at a step of the stream, kind ordering
// the events of one step.
type slot struct {
	step, kind int
	ev         genEvent
}

// inOrder is the events of slots by step, then kind.
func inOrder(slots []slot) []genEvent {
	sort.SliceStable(slots, func(a, b int) bool {
		if slots[a].step != slots[b].step {
			return slots[a].step < slots[b].step
		}
		return slots[a].kind < slots[b].kind
	})
	evs := make([]genEvent, 0, len(slots))
	for _, s := range slots {
		evs = append(evs, s.ev)
	}
	return evs
}

// publisher publishes a workload through JetStream in chunks, at a paced
// rate, and retries every publish the broker did not acknowledge (broker
// down, timeouts) until it is, in order, before the next chunk.
type publisher struct {
	js        jetstream.JetStream
	published atomic.Int64
	retries   atomic.Int64
}

func newPublisher(t *testing.T, url string) *publisher {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("robust-publisher"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("publisher connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(3*time.Second), jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		t.Fatal(err)
	}
	return &publisher{js: js}
}

func (p *publisher) msg(ev genEvent) *nats.Msg {
	m := nats.NewMsg(ev.Subject)
	m.Data = ev.Body
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	return m
}

// run publishes events at about rate events/s (0 = as fast as possible).
func (p *publisher) run(ctx context.Context, events []genEvent, rate float64) error {
	const chunk = 200
	start := time.Now()
	for lo := 0; lo < len(events); lo += chunk {
		hi := min(lo+chunk, len(events))
		futures := make([]jetstream.PubAckFuture, hi-lo)
		for i := lo; i < hi; i++ {
			f, err := p.js.PublishMsgAsync(p.msg(events[i]))
			if err == nil {
				futures[i-lo] = f
			}
		}
		for i, f := range futures {
			ok := false
			if f != nil {
				select {
				case <-f.Ok():
					ok = true
				case <-f.Err():
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if !ok {
				if err := p.publishRetry(ctx, events[lo+i]); err != nil {
					return err
				}
			}
		}
		p.published.Store(int64(hi))
		if rate > 0 {
			due := start.Add(time.Duration(float64(hi) / rate * float64(time.Second)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(due)):
			}
		}
	}
	return nil
}

func (p *publisher) publishRetry(ctx context.Context, ev genEvent) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := p.js.PublishMsg(pctx, p.msg(ev))
		cancel()
		if err == nil {
			return nil
		}
		p.retries.Add(1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w (last error: %v)", ev.ID, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Sink modes.
const (
	sinkUp   int32 = iota // 200
	sinkDown              // 503
	sinkDrop              // hijack the connection and close it
)

// keySink is a webhook receiver that records every delivered request by
// its Idempotency-Key; it can answer 503 or drop connections on demand.
type keySink struct {
	srv                  *httptest.Server
	mode                 atomic.Int32
	delay                atomic.Int64 // per request, nanoseconds
	inflight, maxFlight  atomic.Int32
	answered503, dropped atomic.Int64
	mu                   sync.Mutex
	hits                 map[string][]sinkHit
	total                int
}

type sinkHit struct {
	ID, Path string
	At       time.Time
}

func newKeySink(t *testing.T) *keySink {
	s := &keySink{hits: map[string][]sinkHit{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for n, m := s.inflight.Add(1), s.maxFlight.Load(); n > m && !s.maxFlight.CompareAndSwap(m, n); m = s.maxFlight.Load() {
		}
		defer s.inflight.Add(-1)
		body, _ := io.ReadAll(r.Body)
		if d := time.Duration(s.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		switch s.mode.Load() {
		case sinkDown:
			s.answered503.Add(1)
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		case sinkDrop:
			s.dropped.Add(1)
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		var doc struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &doc)
		key := r.Header.Get("Idempotency-Key")
		s.mu.Lock()
		s.hits[key] = append(s.hits[key], sinkHit{ID: doc.ID, Path: r.URL.Path, At: time.Now()})
		s.total++
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// counts returns delivered requests and distinct keys.
func (s *keySink) counts() (total, distinct int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, len(s.hits)
}

func (s *keySink) snapshot() map[string][]sinkHit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]sinkHit, len(s.hits))
	for k, v := range s.hits {
		out[k] = append([]sinkHit(nil), v...)
	}
	return out
}

// missing counts expected keys not delivered yet (by any of sinks).
func missing(expected map[string]bool, sinks ...*keySink) int {
	got := map[string]bool{}
	for _, s := range sinks {
		s.mu.Lock()
		for k := range s.hits {
			got[k] = true
		}
		s.mu.Unlock()
	}
	n := 0
	for k := range expected {
		if !got[k] {
			n++
		}
	}
	return n
}

// delivery is the verdict over what the sinks received.
type delivery struct {
	requests, distinct, duplicates int
	missing, unexpected            []string
	// mixed are keys whose requests carried different notification ids:
	// two notifications with one key, not one notification sent twice.
	mixed []string
}

func checkDelivery(expected map[string]bool, sinks ...*keySink) delivery {
	all := map[string][]sinkHit{}
	for _, s := range sinks {
		for k, v := range s.snapshot() {
			all[k] = append(all[k], v...)
		}
	}
	var d delivery
	for k, hits := range all {
		d.requests += len(hits)
		d.duplicates += len(hits) - 1
		if !expected[k] {
			d.unexpected = append(d.unexpected, k)
		}
		for _, h := range hits[1:] {
			if h.ID != hits[0].ID {
				d.mixed = append(d.mixed, k)
				break
			}
		}
	}
	d.distinct = len(all)
	for k := range expected {
		if _, ok := all[k]; !ok {
			d.missing = append(d.missing, k)
		}
	}
	sort.Strings(d.missing)
	sort.Strings(d.unexpected)
	return d
}

// errorf reports every problem of a delivery verdict; maxDup < 0 means
// duplicates are not allowed at all.
func (d delivery) problems(maxDup int) []string {
	var out []string
	head := func(s []string) []string { return s[:min(len(s), 10)] }
	if len(d.missing) > 0 {
		out = append(out, fmt.Sprintf("%d expected notifications never arrived, e.g. %v", len(d.missing), head(d.missing)))
	}
	if len(d.unexpected) > 0 {
		out = append(out, fmt.Sprintf("%d unexpected notifications arrived, e.g. %v", len(d.unexpected), head(d.unexpected)))
	}
	if len(d.mixed) > 0 {
		out = append(out, fmt.Sprintf("%d idempotency keys were used by different notifications, e.g. %v", len(d.mixed), head(d.mixed)))
	}
	if d.duplicates > max(maxDup, 0) {
		out = append(out, fmt.Sprintf("%d duplicate deliveries, at most %d allowed", d.duplicates, max(maxDup, 0)))
	}
	return out
}

// outboxStatus counts outbox rows by status.
func outboxStatus(ctx context.Context, db *sql.DB) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT status, count(*) FROM outbox GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// waiting is how many outbox rows still wait to be delivered.
func waiting(st map[string]int) int {
	return st["pending"] + st["retry"] + st["sending"] + st["deferred"]
}

// openStoreRO opens a daemon's SQLite file read-only, beside the daemon,
// with its journal file attached.
func openStoreRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db := store.OpenReader(path, 2)
	t.Cleanup(func() { db.Close() })
	return db
}

// probe GETs url and returns the status code.
func probe(url string) (int, error) {
	code, _, err := probeBody(url)
	return code, err
}

// probeBody is probe with the answer's body.
func probeBody(url string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// procReady is nil once the daemon process answers /readyz with 200.
func procReady(p *daemonProc) error {
	if !p.running() {
		return fmt.Errorf("daemon exited: %v\n%s", p.state, p.tail(20))
	}
	addr := p.httpAddr()
	if addr == "" {
		return fmt.Errorf("not started yet")
	}
	code, err := probe("http://" + addr + "/readyz")
	if err != nil || code != 200 {
		return fmt.Errorf("readyz %d %v", code, err)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// buildDaemon builds cmd/proactived into a temp dir once per test.
func buildDaemon(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the crash test builds the binary and needs the go tool: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "proactived")
	start := time.Now()
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/proactived")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/proactived: %v\n%s", err, out)
	}
	t.Logf("built %s in %s", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// daemonProc is the binary running as a subprocess.
type daemonProc struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	state  *os.ProcessState
}

func startProc(t *testing.T, bin, logPath string, args ...string) *daemonProc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &daemonProc{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		f.Close()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill(t) })
	return p
}

func (p *daemonProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *daemonProc) kill(t *testing.T) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("process %d did not die after SIGKILL", p.cmd.Process.Pid)
	}
}

// term stops the process gracefully and returns its exit code.
func (p *daemonProc) term(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.state.ExitCode()
	case <-time.After(40 * time.Second):
		t.Errorf("process did not stop within 40s of SIGTERM")
		p.kill(t)
		return -1
	}
}

// httpAddr is the HTTP address from the "proactived started" log line.
func (p *daemonProc) httpAddr() string {
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			HTTP string `json:"http"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "proactived started" {
			return line.HTTP
		}
	}
	return ""
}

// tail is the end of the process's log, for failure messages.
func (p *daemonProc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// seedFromEnv is PROACTIVED_SEED if set (to replay a run), else random.
func seedFromEnv(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv("PROACTIVED_SEED"); v != "" {
		var s uint64
		if _, err := fmt.Sscan(v, &s); err != nil {
			t.Fatalf("PROACTIVED_SEED=%q: %v", v, err)
		}
		return s
	}
	h := fnv.New64a()
	fmt.Fprint(h, time.Now().UnixNano(), os.Getpid())
	return h.Sum64()
}

// checkLookups checks, after a run, the look-ups that are written beside
// the tables they index (the decision index file, the journal's entity
// look-up): every row up to a look-up's position has its entry, and no
// entry names a row of another entity — so explain, which reads the
// look-up up to its position and the rows above it, shows what a scan
// shows, after whatever kills the run had.
func checkLookups(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, c := range []struct{ what, q string }{
		{"decisions missing from the decision index", `SELECT count(*) FROM decisions d
			WHERE d.ekey != '' AND d.id <= (SELECT v FROM dindex_meta WHERE k = 'upto')
			AND NOT EXISTS (SELECT 1 FROM decision_entity x WHERE x.etype = d.etype AND x.ekey = d.ekey AND x.id = d.id)`},
		{"decisions missing from the customer index", `SELECT count(*) FROM decisions d
			WHERE d.customer != '' AND d.id <= (SELECT v FROM dindex_meta WHERE k = 'upto')
			AND NOT EXISTS (SELECT 1 FROM decision_customer x WHERE x.customer = d.customer AND x.id = d.id)`},
		{"decision index entries naming another decision", `SELECT count(*) FROM decision_entity x
			LEFT JOIN decisions d ON d.id = x.id WHERE d.id IS NULL OR d.etype != x.etype OR d.ekey != x.ekey`},
	} {
		var n int
		if err := db.QueryRow(c.q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d (%v)", c.what, n, err)
		}
	}
	// The journal's look-up names chunks, and only decoding them tells
	// which entities they hold: every entity of a chunk up to its position
	// has its entry, and no entry names a chunk without its entity.
	jUpto, jLast, err := store.VerifyJournalLookup(context.Background(), db)
	if err != nil {
		t.Error(err)
	}
	var dUpto, dLast int64
	if err := db.QueryRow(`SELECT coalesce((SELECT v FROM dindex_meta WHERE k = 'upto'), 0), (SELECT coalesce(max(id), 0) FROM decisions)`).Scan(&dUpto, &dLast); err != nil {
		t.Fatal(err)
	}
	t.Logf("look-ups: decision index at %d of %d decisions, journal look-up at chunk %d of %d (the rest is read beyond them)", dUpto, dLast, jUpto, jLast)
	if dUpto == 0 || jUpto == 0 {
		t.Errorf("a look-up was never written (decisions %d, journal %d)", dUpto, jUpto)
	}
}
