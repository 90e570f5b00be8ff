package natsreq

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/notifiertest"
	"github.com/proactived/proactived/triggers/natsembed/natstest"
)

func TestExampleParses(t *testing.T) {
	for name, node := range notifiertest.ExampleChannels(t, Example(), Type) {
		if _, err := New(name, node, notifiers.Deps{}); err != nil {
			t.Errorf("example channel %q: %v", name, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"", `missing required key "subject"`},
		{"subject: a.b\nqueue: x\n", `line 2:1: unknown key "queue"`},
		{"subject: proactive.*\n", `line 1:10: key "subject": subject "proactive.*" has a wildcard`},
		{"subject: proactive.>\n", `has a wildcard`},
		{"subject: a..b\n", `has an empty token`},
		{"subject: \"a b\"\n", `contains white space`},
	} {
		_, err := New("push", notifiertest.Node(t, tc.src), notifiers.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestNoConnectionIsPermanent(t *testing.T) {
	n, err := New("push", notifiertest.Node(t, "subject: a.b"), notifiers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, false, true)
}

// TestReferencePlugin builds example/ and runs it as a separate process, the
// way a plugin in any language would run.
func TestReferencePlugin(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect(t)

	bin := filepath.Join(t.TempDir(), "plugin")
	build := exec.Command("go", "build", "-o", bin, "./example")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./example: %v\n%s", err, out)
	}

	const subject = "proactive.channel.push"
	cmd := exec.Command(bin, "--nats", srv.URL, "--subject", subject)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("plugin did not become ready")
	}

	n, err := New("push", notifiertest.Node(t, "subject: "+subject), notifiers.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	doc := notifiertest.Sample()
	retry, err := n.Notify(t.Context(), doc)
	notifiertest.CheckResult(t, retry, err, false, false)

	deadline := time.After(5 * time.Second)
	for {
		select {
		case line, ok := <-logs:
			if !ok {
				t.Fatal("plugin exited before logging the notification")
			}
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "notification" {
				if rec["idempotency_key"] != doc.IdempotencyKey || rec["subject"] != doc.Subject || rec["customer"] != doc.To.Customer {
					t.Errorf("plugin logged %v", rec)
				}
				return
			}
		case <-deadline:
			t.Fatal("plugin did not log the notification")
		}
	}
}

// responder serves subject in-process with a fixed reply and records the
// last request.
func responder(t *testing.T, nc *nats.Conn, subject, reply string) chan *nats.Msg {
	t.Helper()
	got := make(chan *nats.Msg, 10)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		got <- m
		if reply != "" {
			_ = m.Respond([]byte(reply))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestProtocol(t *testing.T) {
	srv := natstest.Run(t)
	plugin := srv.Connect(t)
	daemon := srv.Connect(t)

	newChan := func(subject string) notifiers.Notifier {
		n, err := New("push", notifiertest.Node(t, "subject: "+subject), notifiers.Deps{NATS: daemon})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("request carries document and header", func(t *testing.T) {
		got := responder(t, plugin, "p.ok", `{"ok":true}`)
		doc := notifiertest.Sample()
		retry, err := newChan("p.ok").Notify(t.Context(), doc)
		notifiertest.CheckResult(t, retry, err, false, false)
		m := <-got
		if h := m.Header.Get("Idempotency-Key"); h != doc.IdempotencyKey {
			t.Errorf("Idempotency-Key = %q", h)
		}
		var back notifiers.Notification
		if err := json.Unmarshal(m.Data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&back, doc) {
			t.Errorf("payload round trip:\n got %+v\nwant %+v", back, *doc)
		}
	})

	cases := []struct {
		name, reply      string
		wantRetry        bool
		wantErr          bool
		wantErrSubstring string
	}{
		{"ok", `{"ok":true}`, false, false, ""},
		{"fail retry", `{"ok":false,"error":"push gateway down","retry":true}`, true, true, "push gateway down"},
		{"fail permanent", `{"ok":false,"error":"no device token","retry":false}`, false, true, "no device token"},
		{"fail no retry field", `{"ok":false,"error":"unknown user"}`, false, true, "unknown user"},
		{"not json", `OK`, false, true, "invalid reply"},
		{"json without ok", `{"stream":"X","seq":1}`, false, true, "invalid reply"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subject := "p.case." + string(rune('a'+i))
			responder(t, plugin, subject, tc.reply)
			retry, err := newChan(subject).Notify(t.Context(), notifiertest.Sample())
			notifiertest.CheckResult(t, retry, err, tc.wantRetry, tc.wantErr)
			if tc.wantErrSubstring != "" && !strings.Contains(err.Error(), tc.wantErrSubstring) {
				t.Errorf("err %q does not contain %q", err, tc.wantErrSubstring)
			}
		})
	}

	t.Run("no responders", func(t *testing.T) {
		retry, err := newChan("p.nobody").Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, true, true)
		if !strings.Contains(err.Error(), "no plugin is serving") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		responder(t, plugin, "p.silent", "") // never replies
		notifiertest.RunCases(t, newChan("p.silent"), []notifiertest.Case{
			{Name: "deadline", Timeout: 200 * time.Millisecond, WantRetry: true, WantErr: true},
		})
	})

	t.Run("closed connection", func(t *testing.T) {
		nc := srv.Connect(t)
		n, err := New("push", notifiertest.Node(t, "subject: p.ok2"), notifiers.Deps{NATS: nc})
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		retry, err := n.Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, true, true)
	})
}
