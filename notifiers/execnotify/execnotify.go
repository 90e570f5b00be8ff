// Package execnotify is the `exec` channel: it runs a local program with
// the notification document as JSON on stdin, without a shell. The exit
// status is the verdict: 0 delivered, 75 (EX_TEMPFAIL) retry later,
// anything else a permanent failure.
package execnotify

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Type is the channel type name in proactived.yaml.
const Type = "exec"

// Exit codes and limits of the protocol.
const (
	ExitTempFail   = 75               // EX_TEMPFAIL from sysexits.h: retry later
	DefaultTimeout = 10 * time.Second // when neither timeout nor a ctx deadline is set
	MaxStderr      = 4 << 10          // stderr kept for the error message
)

// waitDelay bounds how long Notify waits for stdout/stderr to close after
// the process was killed or exited (a grandchild may hold them open).
const waitDelay = 2 * time.Second

//go:embed example.yaml
var example []byte

// Example returns the sample configuration (example.yaml).
func Example() []byte { return append([]byte(nil), example...) }

// Config is the `exec` channel's configuration.
type Config struct {
	// Command is the program and its arguments; no shell is involved. A
	// name without "/" is looked up in PATH, a relative path is resolved
	// against the daemon's working directory.
	Command []string `yaml:"command" required:"true"`
	// Timeout bounds one run; the process group is killed when it expires.
	// In proactived.yaml `timeout` is the common per-channel key, which the
	// config loader consumes and the dispatcher turns into the context's
	// deadline; this field only matters when the node still carries it.
	// Either way the shorter limit wins, and 10s applies when neither is set.
	Timeout time.Duration `yaml:"timeout"`
	// Env adds variables to the program's environment. Values are treated
	// as secrets.
	Env map[string]notifiers.Secret `yaml:"env"`
}

// Exec runs a program per notification.
type Exec struct {
	name string
	cfg  *Config // behind a pointer: fmt must not print Env's values
}

var _ notifiers.Notifier = (*Exec)(nil)

// New builds an `exec` channel; it matches notifiers.Factory. It validates
// the configuration only; whether the program exists is found out on the
// first send (so `proactived check` works on another machine).
func New(name string, cfg *yaml.Node, deps notifiers.Deps) (notifiers.Notifier, error) {
	var c Config
	if err := notifiers.DecodeStrict(cfg, &c); err != nil {
		return nil, err
	}
	if len(c.Command) == 0 || strings.TrimSpace(c.Command[0]) == "" {
		return nil, notifiers.ErrorAt(cfg, "command", "want a program and its arguments, e.g. [\"/opt/notify\", \"--flag\"]")
	}
	for _, a := range c.Command {
		if strings.ContainsRune(a, 0) {
			return nil, notifiers.ErrorAt(cfg, "command", "arguments must not contain NUL")
		}
	}
	if c.Timeout < 0 {
		return nil, notifiers.ErrorAt(cfg, "timeout", "must be positive")
	}
	envNode := notifiers.Lookup(cfg, "env")
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, notifiers.ErrorAt(envNode, k, "invalid environment variable name")
		}
		if strings.HasPrefix(k, "PROACTIVE_") {
			return nil, notifiers.ErrorAt(envNode, k, "PROACTIVE_* variables are set by proactived")
		}
		if strings.ContainsRune(v.Reveal(), 0) {
			return nil, notifiers.ErrorAt(envNode, k, "value must not contain NUL")
		}
	}
	return &Exec{name: name, cfg: &c}, nil
}

// String describes the channel without secrets.
func (e *Exec) String() string { return fmt.Sprintf("exec %q: %s", e.name, e.cfg.Command[0]) }

// Notify runs the command once with n as JSON on stdin.
func (e *Exec) Notify(ctx context.Context, n *notifiers.Notification) (bool, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return false, fmt.Errorf("exec %q: encode notification: %w", e.name, err)
	}
	limit := e.cfg.Timeout
	if _, ok := ctx.Deadline(); !ok && limit == 0 {
		limit = DefaultTimeout
	}
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}

	cmd := exec.CommandContext(ctx, e.cfg.Command[0], e.cfg.Command[1:]...)
	cmd.Stdin = bytes.NewReader(body)
	stderr := &capped{max: MaxStderr}
	cmd.Stderr = stderr
	cmd.Env = e.environ(n)
	cmd.WaitDelay = waitDelay
	killGroup(cmd)

	start := time.Now()
	err = cmd.Run()
	if err == nil {
		return false, nil
	}
	tail := ""
	if s := strings.TrimSpace(stderr.String()); s != "" {
		tail = ": stderr: " + s
	}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil && cmd.ProcessState != nil && !cmd.ProcessState.Success():
		return true, e.errorf("killed after %v (%v)%s", time.Since(start).Round(time.Millisecond), ctx.Err(), tail)
	case errors.As(err, &ee) && ee.ExitCode() == ExitTempFail:
		return true, e.errorf("exit status %d (temporary failure)%s", ExitTempFail, tail)
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return false, e.errorf("exit status %d%s", ee.ExitCode(), tail)
	case errors.As(err, &ee):
		return false, e.errorf("%v%s", ee, tail) // killed by a signal we did not send
	case errors.Is(err, exec.ErrWaitDelay):
		// The program exited 0 but something it started kept stderr open.
		return false, nil
	case ctx.Err() != nil:
		return true, e.errorf("%v%s", ctx.Err(), tail)
	default: // could not start: not found, not executable
		return false, e.errorf("start %s: %v", e.cfg.Command[0], err)
	}
}

func (e *Exec) errorf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	secrets := make([]string, 0, len(e.cfg.Env))
	for _, v := range e.cfg.Env {
		secrets = append(secrets, v.Reveal())
	}
	return fmt.Errorf("exec %q: %s", e.name, notifiers.Scrub(msg, secrets...))
}

// environ is the program's environment: a few basics from the daemon's
// environment (not all of it: it holds other channels' secrets), the
// PROACTIVE_* variables, then the configured env.
func (e *Exec) environ(n *notifiers.Notification) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env,
		"PROACTIVE_CHANNEL="+e.name,
		"PROACTIVE_IDEMPOTENCY_KEY="+n.IdempotencyKey,
	)
	for k, v := range e.cfg.Env {
		env = append(env, k+"="+v.Reveal())
	}
	return env
}

// capped keeps the first max bytes written and discards the rest, so a
// chatty program never blocks on a full pipe.
type capped struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
			c.cut = true
		} else {
			c.buf.Write(p)
		}
	} else if len(p) > 0 {
		c.cut = true
	}
	return len(p), nil
}

func (c *capped) String() string {
	if c.cut {
		return notifiers.Snippet(c.buf.Bytes(), c.max) + "…"
	}
	return c.buf.String()
}
