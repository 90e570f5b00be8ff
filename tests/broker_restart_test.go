package tests

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/proactived/proactived/triggers/natsembed"
	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

// readyWatch polls /readyz and keeps every change of its answer.
type readyWatch struct {
	mu      sync.Mutex
	changes []readyChange
	stop    chan struct{}
	done    chan struct{}
}

type readyChange struct {
	at   time.Time
	code int // 0 = no answer
}

func watchReady(url string) *readyWatch {
	w := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := -1
		for {
			code, _ := probe(url)
			if code != last {
				w.mu.Lock()
				w.changes = append(w.changes, readyChange{time.Now(), code})
				w.mu.Unlock()
				last = code
			}
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *readyWatch) close() []readyChange {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]readyChange(nil), w.changes...)
}

func (w *readyWatch) last() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.changes) == 0 {
		return -1
	}
	return w.changes[len(w.changes)-1].code
}

func (w *readyWatch) saw(code int, after time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if c.code == code && !c.at.Before(after) {
			return true
		}
	}
	return false
}

func describe(changes []readyChange, t0 time.Time) string {
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, " %+.1fs→%d", c.at.Sub(t0).Seconds(), c.code)
	}
	return b.String()
}

// TestBrokerRestart stops the NATS server for 10 s while events flow and
// starts it again on the same port and storage — once shut down cleanly
// (in-process server), once as a nats-server process killed with SIGKILL.
// The daemon reconnects by itself, /readyz answers 503 while the broker is
// away and 200 once it is back, and every expected notification is
// delivered exactly once.
func TestBrokerRestart(t *testing.T) {
	t.Run("shutdown", func(t *testing.T) {
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		storeDir := t.TempDir()
		var ns *server.Server
		start := func() {
			t.Helper()
			s, err := natsembed.Start(natsembed.Options{Listen: listen, StoreDir: storeDir})
			if err != nil {
				t.Fatalf("start nats on %s: %v", listen, err)
			}
			ns = s
		}
		stop := func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
		start()
		t.Cleanup(func() { stop() })
		brokerRestart(t, listen, stop, start)
	})
	t.Run("sigkill", func(t *testing.T) {
		b := newNATSProc(t)
		b.start(t)
		brokerRestart(t, b.listen, func() { b.kill(t) }, func() { b.start(t) })
	})
}

// natsProc is a nats-server process (JetStream on, its store in a temp
// dir) that a test can SIGKILL and start again on the same address.
type natsProc struct {
	bin, listen, storeDir string
	p                     *daemonProc
	runs                  int
	// args are extra server flags (e.g. --user, --pass).
	args []string
}

func newNATSProc(t *testing.T) *natsProc {
	t.Helper()
	return &natsProc{bin: buildNATSServer(t), listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), storeDir: t.TempDir()}
}

func (b *natsProc) url() string { return "nats://" + b.listen }

// start runs the server and waits until it takes connections.
func (b *natsProc) start(t *testing.T) {
	t.Helper()
	b.runs++
	host, port, _ := net.SplitHostPort(b.listen)
	b.p = startProc(t, b.bin, filepath.Join(b.storeDir, fmt.Sprintf("nats-%d.log", b.runs)), append([]string{"-a", host, "-p", port, "-js", "-sd", b.storeDir, "-n", "robust-nats"}, b.args...)...)
	waitFor(t, 20*time.Second, func() error {
		c, err := net.DialTimeout("tcp", b.listen, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func (b *natsProc) kill(t *testing.T) { b.p.kill(t) }

// buildNATSServer builds the nats-server command of the module this
// project already depends on.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building nats-server needs the go tool: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

func brokerRestart(t *testing.T, listen string, stopNATS, startNATS func()) {
	const outage = 10 * time.Second

	sink := newKeySink(t)
	e := startRobust(t, "nats://"+listen, robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"))
	readyURL := "http://" + e.d.HTTPAddr() + "/readyz"

	w := genWorkload(4000, 100, seedFromEnv(t))
	t.Logf("%d events, %d expected notifications; broker down for %s mid-stream", len(w.events), len(w.expected), outage)
	pub := newPublisher(t, e.cfg.NATS.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubDone := make(chan error, 1)
	t0 := time.Now()
	go func() { pubDone <- pub.run(ctx, w.events, 700) }()
	rw := watchReady(readyURL)

	// Stop the broker once a good part of the stream went through.
	waitFor(t, 30*time.Second, func() error {
		if n := pub.published.Load(); n < int64(len(w.events)/3) {
			return fmt.Errorf("published %d", n)
		}
		return nil
	})
	total, _ := sink.counts()
	down := time.Now()
	stopNATS()
	t.Logf("broker stopped at %+.1fs: published %d/%d, delivered %d", down.Sub(t0).Seconds(), pub.published.Load(), len(w.events), total)
	waitFor(t, outage, func() error {
		if !rw.saw(503, down) {
			return fmt.Errorf("readyz still %d", rw.last())
		}
		return nil
	})
	time.Sleep(time.Until(down.Add(outage))) // the outage itself
	up := time.Now()
	startNATS()
	t.Logf("broker started again at %+.1fs (down %s)", up.Sub(t0).Seconds(), up.Sub(down).Round(100*time.Millisecond))
	waitFor(t, 60*time.Second, func() error {
		if !rw.saw(200, up) {
			return fmt.Errorf("readyz %d since the broker came back", rw.last())
		}
		return nil
	})
	back := time.Now()

	select {
	case err := <-pubDone:
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("publisher stuck at %d/%d", pub.published.Load(), len(w.events))
	}
	waitFor(t, 90*time.Second, func() error {
		if n := missing(w.expected, sink); n > 0 {
			return fmt.Errorf("%d of %d expected notifications missing", n, len(w.expected))
		}
		st, err := outboxStatus(ctx, e.d.Store().R)
		if err != nil {
			return err
		}
		if n := waiting(st); n > 0 {
			return fmt.Errorf("%d outbox rows to send: %v", n, st)
		}
		return nil
	})
	changes := rw.close()
	if code, err := probe(readyURL); code != 200 {
		t.Errorf("readyz after recovery: %d %v", code, err)
	}
	if e.d.Engine().LastSeq() != uint64(len(w.events)) {
		t.Errorf("engine committed up to %d, stream has %d events", e.d.Engine().LastSeq(), len(w.events))
	}
	checkStates(t, e, w)
	d := checkDelivery(w.expected, sink)
	t.Logf("RESULT broker restart (%s): %d events, broker down %s, ready again %s after restart, readyz:%s; %d publish retries, %d gap resets; %d expected, %d requests, %d duplicates; %s",
		t.Name(), len(w.events), up.Sub(down).Round(100*time.Millisecond), back.Sub(up).Round(100*time.Millisecond), describe(changes, t0),
		pub.retries.Load(), strings.Count(e.logs.String(), "missed deliveries"), len(w.expected), d.requests, d.duplicates, time.Since(t0).Round(time.Second))
	if probs := d.problems(-1); len(probs) > 0 {
		t.Errorf("delivery across a broker restart:\n  %s", strings.Join(probs, "\n  "))
	}
}

// tcpProxy forwards connections to a NATS server and can cut them all at
// once, losing whatever was in flight: a network failure between the
// daemon and a broker that stays up.
type tcpProxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	conns    []net.Conn
	// dropping: what the server sends is read and thrown away, as a
	// network that loses packets before the connection is torn down.
	dropping atomic.Bool
	// blocked: new connections are closed at once (a partition).
	blocked atomic.Bool
}

func newTCPProxy(t *testing.T, upstream string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, upstream: upstream}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.blocked.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 && !p.dropping.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut(0)
	})
	return p
}

// cut loses what the server sends for a moment, then closes every
// proxied connection, dropping unread data (RST).
func (p *tcpProxy) cut(lose time.Duration) int {
	p.dropping.Store(true)
	time.Sleep(lose)
	defer p.dropping.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	n := len(p.conns) / 2
	p.conns = nil
	return n
}

// TestBrokerConnectionCuts cuts the daemon's connection to NATS again and
// again while events flow (the broker stays up, so it counts whatever it
// had sent as delivered, and some of it never arrives). The daemon must
// notice what it missed and lose nothing.
func TestBrokerConnectionCuts(t *testing.T) {
	ns := natstest.Run(t)
	proxy := newTCPProxy(t, strings.TrimPrefix(ns.URL, "nats://"))
	sink := newKeySink(t)
	e := startRobust(t, "nats://"+proxy.ln.Addr().String(), robustConfig(sink.srv.URL, sink.srv.URL, 50, "200ms", "2s"))
	seed := seedFromEnv(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	w := genWorkload(4000, 100, seed)
	pub := newPublisher(t, ns.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubDone := make(chan error, 1)
	t0 := time.Now()
	go func() { pubDone <- pub.run(ctx, w.events, 1500) }()
	cuts := 0
	for i := 0; i < 8; i++ {
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond) // the scenario: cuts at random moments
		n := proxy.cut(100 * time.Millisecond)
		cuts++
		total, _ := sink.counts()
		t.Logf("cut %d at %+.1fs: %d connections; published %d/%d, delivered %d", cuts, time.Since(t0).Seconds(), n, pub.published.Load(), len(w.events), total)
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	waitFor(t, 90*time.Second, func() error {
		if n := missing(w.expected, sink); n > 0 {
			return fmt.Errorf("%d of %d expected notifications missing; engine at %d of %d events", n, len(w.expected), e.d.Engine().LastSeq(), len(w.events))
		}
		st, err := outboxStatus(ctx, e.d.Store().R)
		if err != nil {
			return err
		}
		if n := waiting(st); n > 0 {
			return fmt.Errorf("%d outbox rows to send: %v", n, st)
		}
		return nil
	})
	waitFor(t, 30*time.Second, func() error { return e.d.Ready(ctx) })
	checkStates(t, e, w)
	d := checkDelivery(w.expected, sink)
	t.Logf("RESULT connection cuts: %d events, %d cuts, %d expected, %d requests, %d duplicates, %d gap resets logged; %s",
		len(w.events), cuts, len(w.expected), d.requests, d.duplicates, strings.Count(e.logs.String(), "missed deliveries"), time.Since(t0).Round(time.Second))
	if probs := d.problems(-1); len(probs) > 0 {
		t.Errorf("delivery across connection cuts:\n  %s", strings.Join(probs, "\n  "))
	}
}
