// End-to-end tests: the real daemon (engine, store, intake, outbox, HTTP)
// in-process against a real NATS server with JetStream on a random port
// over TCP, a temp SQLite file, and httptest servers as webhook sinks.
package tests

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/all"
	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

const sinkSecret = "whsec-e2e-1234"

// sink is a webhook receiver that records what it got.
type sink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	status func(n int) int // status for the n-th request (0-based); nil = 200
}

type received struct {
	Path    string
	Header  http.Header
	Body    []byte
	Doc     notifiers.Notification
	SigOK   bool
	Arrived time.Time
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(sinkSecret))
		mac.Write(body)
		rec := received{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Arrived: time.Now(),
			SigOK: r.Header.Get("Proactive-Signature") == "sha256="+hex.EncodeToString(mac.Sum(nil))}
		_ = json.Unmarshal(body, &rec.Doc)
		s.mu.Lock()
		n := len(s.got)
		status := http.StatusOK
		if s.status != nil {
			status = s.status(n)
		}
		if status < 300 {
			s.got = append(s.got, rec)
		}
		s.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// env is one daemon under test.
type env struct {
	t    *testing.T
	ns   *natstest.Server
	nc   *nats.Conn
	sink *sink
	cfg  *config.Config
	d    *daemon.Daemon
	logs *syncBuffer
	opts []func(*daemon.Options) // applied in boot, after the defaults
}

// start runs a daemon over the rules in dir with the config text (the sink
// URL is available as {{SINK}}).
func start(t *testing.T, rulesDir, cfgText string) *env {
	t.Helper()
	return startWith(t, rulesDir, cfgText)
}

// startWith is start with options applied over the harness's daemon
// options (a virtual clock, another logger, …).
func startWith(t *testing.T, rulesDir, cfgText string, opts ...func(*daemon.Options)) *env {
	t.Helper()
	e := &env{t: t, ns: natstest.Run(t), sink: newSink(t), logs: &syncBuffer{}, opts: opts}
	e.nc = e.ns.Connect(t)
	text := strings.ReplaceAll(cfgText, "{{SINK}}", e.sink.srv.URL)
	cfg := config.Default()
	if err := config.Parse(cfg, "e2e.yaml", []byte(text), func(k string) (string, bool) {
		if k == "SINK_SECRET" {
			return sinkSecret, true
		}
		return os.LookupEnv(k)
	}); err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Rules = rulesDir
	cfg.Data = t.TempDir()
	cfg.NATS.URL = e.ns.URL
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Intake.MaxWait = config.Duration(5 * time.Millisecond)
	e.cfg = cfg
	e.boot()
	return e
}

func (e *env) boot() {
	e.t.Helper()
	o := daemon.Options{
		Config: e.cfg, Registry: all.Registry(), DispatchEvery: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range e.opts {
		f(&o)
	}
	d, err := daemon.New(o)
	if err != nil {
		e.t.Fatalf("daemon: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		e.t.Fatalf("start: %v", err)
	}
	e.d = d
	e.t.Cleanup(func() {
		e.stop()
		if e.t.Failed() || os.Getenv("E2E_LOGS") != "" {
			e.t.Logf("daemon log:\n%s", e.logs.String())
		}
	})
	waitFor(e.t, 10*time.Second, func() error { return d.Ready(context.Background()) })
}

func (e *env) stop() {
	if e.d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.d.Stop(ctx); err != nil {
		e.t.Errorf("stop: %v", err)
	}
	e.d = nil
}

func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.boot()
}

// publish sends one event through JetStream (so it is stored).
func (e *env) publish(subject, body string, msgID string) {
	e.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	if msgID != "" {
		m.Header.Set("Nats-Msg-Id", msgID)
	}
	js, err := e.nc.JetStream()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := js.PublishMsg(m); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

func (e *env) api(path string) *http.Response {
	e.t.Helper()
	resp, err := http.Get("http://" + e.d.HTTPAddr() + path)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// decisions returns "rule entity verdict" lines, in order.
func (e *env) decisions(filter string) []string {
	e.t.Helper()
	rows, err := e.d.Store().R.Query(`SELECT rule, etype || ':' || ekey, verdict, reason FROM decisions ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r, ent, v, reason string
		if err := rows.Scan(&r, &ent, &v, &reason); err != nil {
			e.t.Fatal(err)
		}
		line := fmt.Sprintf("%s %s %s", r, ent, v)
		if filter == "" || strings.HasPrefix(line, filter) {
			out = append(out, line+" — "+reason)
		}
	}
	return out
}

// waitFor polls fn until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not met after %s: %v", timeout, err)
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testdata(name string) string {
	p, _ := filepath.Abs(filepath.Join("testdata", name))
	return p
}
