package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// binSetup is the built daemon set up against an external nats-server
// process, which the test starts when it wants.
type binSetup struct {
	bin, dir, rules, cfg string
	broker               *natsProc
	sink                 *keySink
	runs                 int
}

func newBinSetup(t *testing.T) *binSetup {
	t.Helper()
	b := &binSetup{bin: buildDaemon(t), dir: t.TempDir(), broker: newNATSProc(t), sink: newKeySink(t)}
	b.rules = rulesDir(t, map[string]string{"shop.yaml": robustRules})
	b.cfg = filepath.Join(b.dir, "proactived.yaml")
	if err := os.WriteFile(b.cfg, []byte(robustConfig(b.sink.srv.URL, b.sink.srv.URL, 50, "200ms", "2s")), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *binSetup) start(t *testing.T) *daemonProc {
	t.Helper()
	return b.startOn(t, b.broker.url())
}

// startOn starts a daemon of the setup against natsURL.
func (b *binSetup) startOn(t *testing.T, natsURL string) *daemonProc {
	t.Helper()
	b.runs++
	return startProc(t, b.bin, filepath.Join(b.dir, fmt.Sprintf("daemon-%d.log", b.runs)), "run", "--config", b.cfg, "--rules", b.rules,
		"--data", filepath.Join(b.dir, "data"), "--http", "127.0.0.1:0", "--log-format", "json", "--nats", natsURL)
}

// started waits until the daemon has started (its HTTP address is in the
// log), failing if it exits first.
func started(t *testing.T, p *daemonProc) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		if !p.running() {
			return fmt.Errorf("daemon exited: %v\n%s", p.state, p.tail(20))
		}
		if p.httpAddr() == "" {
			return fmt.Errorf("not started")
		}
		return nil
	})
}

// exitsWith waits for the daemon to exit by itself, with a failure code
// and want in the last lines of its log.
func exitsWith(t *testing.T, p *daemonProc, want string) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon still running, want it to stop with %q\n%s", want, p.tail(20))
	}
	if code := p.state.ExitCode(); code == 0 {
		t.Errorf("exit code 0, want a failure")
	}
	if log := p.tail(20); !strings.Contains(log, want) {
		t.Errorf("the log does not say %q:\n%s", want, log)
	}
}

// TestDaemonWaitsForItsBroker: a daemon started before its external
// broker (a host booting, a compose file without ordering, a restart
// while the broker is down) stays up, live but not ready, says why, and
// consumes once the broker answers: nothing published after is lost.
func TestDaemonWaitsForItsBroker(t *testing.T) {
	b := newBinSetup(t)
	p := b.start(t)
	started(t, p)
	base := "http://" + p.httpAddr()
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if !p.running() {
			t.Fatalf("daemon exited without its broker: %v\n%s", p.state, p.tail(20))
		}
		if code, err := probe(base + "/healthz"); code != 200 {
			t.Fatalf("/healthz %d (%v) while waiting for the broker; the process is alive", code, err)
		}
		if code, err := probe(base + "/readyz"); code != 503 {
			t.Fatalf("/readyz %d (%v) without a broker, want 503", code, err)
		}
	}
	if _, body, err := probeBody(base + "/readyz"); !strings.Contains(body, "not ready: nats not connected") {
		t.Errorf("/readyz says %q (%v) without a broker; it should say why", body, err)
	}
	if log := p.tail(50); !strings.Contains(log, "nats not reachable yet") {
		t.Errorf("the log does not say what the daemon waits for:\n%s", log)
	}

	b.broker.start(t)
	began := time.Now()
	waitFor(t, 30*time.Second, func() error { return procReady(p) })
	t.Logf("ready %s after the broker started", time.Since(began).Round(10*time.Millisecond))

	w := genWorkload(300, 50, seedFromEnv(t))
	pub := newPublisher(t, b.broker.url())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pub.run(ctx, w.events, 0); err != nil {
		t.Fatalf("publish: %v", err)
	}
	waitFor(t, time.Minute, func() error {
		if n := missing(w.expected, b.sink); n > 0 {
			return fmt.Errorf("%d of %d expected notifications missing", n, len(w.expected))
		}
		return nil
	})
	t.Logf("%d events published after the broker came, %d expected notifications delivered", len(w.events), len(w.expected))
	if probs := checkDelivery(w.expected, b.sink).problems(0); len(probs) > 0 {
		t.Errorf("delivery after waiting for the broker:\n  %s", strings.Join(probs, "\n  "))
	}
	if code := p.term(t); code != 0 {
		t.Errorf("graceful stop exited %d\n%s", code, p.tail(20))
	}
}

// TestStreamThatDoesNotFitStopsTheDaemon: a stream that ops made (not
// managed by proactived) without the subjects the rules need is a
// configuration error, not an outage: the daemon stops and says so,
// whether the broker is there at its start or answers only later.
func TestStreamThatDoesNotFitStopsTheDaemon(t *testing.T) {
	b := newBinSetup(t)
	b.broker.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := jsClient(t, b.broker.url()).CreateStream(ctx, jetstream.StreamConfig{Name: "PROACTIVE_EVENTS", Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}

	const want = "lacks subjects the rules need: shop.customers.>"
	t.Run("broker up at the start", func(t *testing.T) {
		exitsWith(t, b.start(t), want)
	})
	t.Run("broker answers later", func(t *testing.T) {
		b.broker.kill(t)
		p := b.start(t)
		started(t, p)
		b.broker.start(t)
		exitsWith(t, p, want)
	})
}

// TestDaemonStopsOnRefusedCredentials: waiting for a broker is for one
// that is down; one that refuses the credentials will go on refusing
// them. The daemon stops with the server's reason (and without the
// password) instead of waiting, not ready, forever.
func TestDaemonStopsOnRefusedCredentials(t *testing.T) {
	b := newBinSetup(t)
	b.broker.args = []string{"--user", "proactived", "--pass", "right-secret"}
	b.broker.start(t)
	host := strings.TrimPrefix(b.broker.url(), "nats://")
	p := b.startOn(t, "nats://proactived:wrong-secret@"+host)
	exitsWith(t, p, "Authorization Violation")
	if log := p.tail(50); strings.Contains(log, "wrong-secret") {
		t.Errorf("the log shows the password:\n%s", log)
	}
}
