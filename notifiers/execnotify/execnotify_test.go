package execnotify

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/notifiertest"
)

func TestExampleParses(t *testing.T) {
	for name, node := range notifiertest.ExampleChannels(t, Example(), Type) {
		if _, err := New(name, node, notifiers.Deps{}); err != nil {
			t.Errorf("example channel %q: %v", name, err)
		}
	}
}

// script writes an executable #!/bin/sh script and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func newExec(t *testing.T, src string) notifiers.Notifier {
	t.Helper()
	n, err := New("legacy", notifiertest.Node(t, src), notifiers.Deps{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func TestStdinArgsAndEnv(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	s := script(t, dir, "notify.sh", `cat > "$OUT_DIR/stdin.json"
printf '%s|%s|%s|%s|%s' "$1" "$2" "$PROACTIVE_CHANNEL" "$PROACTIVE_IDEMPOTENCY_KEY" "$LEGACY_TOKEN" > "$OUT_DIR/meta"
env > "$OUT_DIR/env"
`)
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PROACTIVE_TEST_LEAKY", "daemon-only")
	n := newExec(t, "command: ["+s+", --profile, \"shop two\"]\nenv: {OUT_DIR: "+out+", LEGACY_TOKEN: tok-1}\n")
	doc := notifiertest.Sample()
	retry, err := n.Notify(t.Context(), doc)
	notifiertest.CheckResult(t, retry, err, false, false)

	b, err := os.ReadFile(filepath.Join(out, "stdin.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back notifiers.Notification
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("stdin is not the JSON document: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(&back, doc) {
		t.Errorf("stdin round trip:\n got %+v\nwant %+v", back, *doc)
	}
	meta, _ := os.ReadFile(filepath.Join(out, "meta"))
	if want := "--profile|shop two|legacy|" + doc.IdempotencyKey + "|tok-1"; string(meta) != want {
		t.Errorf("args/env %q, want %q", meta, want)
	}
	env, _ := os.ReadFile(filepath.Join(out, "env"))
	if strings.Contains(string(env), "PROACTIVE_TEST_LEAKY") {
		t.Error("the daemon's whole environment was passed to the program")
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	ok := newExec(t, "command: ["+script(t, dir, "ok.sh", "cat >/dev/null\nexit 0\n")+"]")
	ignoresStdin := newExec(t, "command: ["+script(t, dir, "quick.sh", "exit 0\n")+"]")
	temp := newExec(t, "command: ["+script(t, dir, "temp.sh", "echo 'gateway busy' >&2\nexit 75\n")+"]")
	perm := newExec(t, "command: ["+script(t, dir, "perm.sh", "echo 'unknown customer' >&2\nexit 1\n")+"]")
	chatty := newExec(t, "command: ["+script(t, dir, "chatty.sh", "i=0; while [ $i -lt 2000 ]; do echo 'lots of noise on stderr'; i=$((i+1)); done >&2\nexit 2\n")+"]")
	// The script starts a child that would outlive it: killing the process
	// group must end both, promptly.
	slow := newExec(t, "command: ["+script(t, dir, "slow.sh", "sleep 30 &\nsleep 30\n")+"]\ntimeout: 200ms\n")
	slowCtx := newExec(t, "command: ["+script(t, dir, "slow2.sh", "sleep 30\n")+"]")
	missing := newExec(t, "command: ["+filepath.Join(dir, "nope")+"]")

	wantIn := func(s string) func(testing.TB, error) {
		return func(t testing.TB, err error) {
			if err == nil || !strings.Contains(err.Error(), s) {
				t.Errorf("err = %v, want it to contain %q", err, s)
			}
		}
	}
	for _, tc := range []struct {
		name string
		n    notifiers.Notifier
		c    notifiertest.Case
	}{
		{"exit 0", ok, notifiertest.Case{}},
		{"exit 0 without reading stdin", ignoresStdin, notifiertest.Case{}},
		{"exit 75 retries", temp, notifiertest.Case{WantErr: true, WantRetry: true, Check: wantIn("gateway busy")}},
		{"exit 1 is permanent", perm, notifiertest.Case{WantErr: true, Check: wantIn("exit status 1: stderr: unknown customer")}},
		{"stderr is capped", chatty, notifiertest.Case{WantErr: true, Check: func(t testing.TB, err error) {
			if l := len(err.Error()); l > MaxStderr+200 {
				t.Errorf("error is %d bytes", l)
			}
		}}},
		{"timeout key kills and retries", slow, notifiertest.Case{WantErr: true, WantRetry: true, Check: wantIn("killed after")}},
		{"ctx deadline kills and retries", slowCtx, notifiertest.Case{Timeout: 200 * time.Millisecond, WantErr: true, WantRetry: true}},
		{"missing program is permanent", missing, notifiertest.Case{WantErr: true, Check: wantIn("start")}},
	} {
		tc.c.Name = tc.name
		start := time.Now()
		notifiertest.RunCases(t, tc.n, []notifiertest.Case{tc.c})
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v", tc.name, d)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"", `missing required key "command"`},
		{"command: []\n", `line 1:10: key "command": must not be empty`},
		{"command: /bin/true\n", `line 1:10: key "command": want a list, got a scalar`},
		{"command: [\"\"]\n", `line 1:10: key "command": want a program`},
		{"command: [/bin/true]\ntimeout: soon\n", `line 2:10: key "timeout": want a duration such as "10s", got "soon"`},
		{"command: [/bin/true]\ntimeout: -1s\n", `key "timeout": must be positive`},
		{"command: [/bin/true]\nenv: {PROACTIVE_X: 1}\n", `key "PROACTIVE_X": PROACTIVE_* variables are set by proactived`},
		{"command: [/bin/true]\nenv: {\"A=B\": 1}\n", `invalid environment variable name`},
		{"command: [/bin/true]\nshell: true\n", `line 2:1: unknown key "shell"`},
	} {
		_, err := New("legacy", notifiertest.Node(t, tc.src), notifiers.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestEnvSecretsNeverLeak(t *testing.T) {
	const secret = "env-SECRET-value-4471"
	dir := t.TempDir()
	// The program prints its token on failure; the error must not carry it.
	s := script(t, dir, "leaky.sh", "echo \"token=$LEGACY_TOKEN failed\" >&2\nexit 1\n")
	n := newExec(t, "command: ["+s+"]\nenv: {LEGACY_TOKEN: "+secret+"}\n")
	retry, err := n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, false, true)
	notifiertest.AssertNotLeaked(t, secret, err, n)

	_, err = New("legacy", notifiertest.Node(t, "command: [x]\nenv: {LEGACY_TOKEN: "+secret+", PROACTIVE_A: "+secret+"}\n"), notifiers.Deps{})
	if err == nil {
		t.Fatal("want an error")
	}
	notifiertest.AssertNotLeaked(t, secret, err)
}
