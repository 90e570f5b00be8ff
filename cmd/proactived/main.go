// Command proactived tells customers about problems before they ask.
// See README.md; `proactived help` lists the verbs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/notifiers/all"
)

const usage = `proactived — tell customers about problems before they ask

usage: proactived [VERB] [flags]

verbs:
  run                      run the daemon (default)
  check [--rules DIR]      validate rules, templates and channels; exit 1 on any problem
  test [PATH...]           run rule unit tests (*_test.yaml) on a virtual clock
  emit SUBJECT JSON        publish one event
  explain TYPE:KEY         an entity's timeline and why each decision was made
  explain --customer KEY   everything about one customer (--json for JSON)
  backtest --since DUR     replay retained events through a rule set in shadow
  report [--since DUR]     effectiveness: repeat contacts, notified vs held out
  demo [--rate N/s] [--duration D] [--seed S]
                           publish a simulated shop to the running daemon
  demo --embedded          ... to a daemon started in-process, with the console
  demo --simulate 7d       a week of the shop through the engine in seconds, then the console
  bench [--rules N] [--events M] [--json]
                           measure this machine: raw JetStream vs the whole engine
  version                  print the version

common flags (every verb; each also settable in proactived.yaml):
  --config FILE   config file (default ./proactived.yaml if present)
  --rules DIR     rules directory (default ./rules.d)
  --data DIR      data directory (default ./data)
  --nats URL      external NATS server or cluster (default: embedded)
  --nats-creds F  credentials file for --nats
  --http ADDR     HTTP listen address (default 127.0.0.1:8080)
  --log-level L   debug | info | warn | error
  --log-format F  text | json | auto (text on a terminal)
`

var version = "dev"

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs a verb and returns the exit code. Tests call it directly.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	switch verb {
	case "run":
		return cmdRun(ctx, args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "test":
		return cmdTest(ctx, args, stdout, stderr)
	case "emit":
		return cmdEmit(ctx, args, stdout, stderr)
	case "explain":
		return cmdExplain(ctx, args, stdout, stderr)
	case "bench":
		return cmdBench(ctx, args, stdout, stderr)
	case "backtest":
		return cmdBacktest(ctx, args, stdout, stderr)
	case "report":
		return cmdReport(ctx, args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "proactived", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "proactived: unknown verb %q\n\n%s", verb, usage)
	return 2
}

// common holds the flags every verb shares.
type common struct {
	config, rules, data, nats, creds, http string
	logLevel, logFormat                    string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "config file (default ./proactived.yaml if present)")
	fs.StringVar(&c.rules, "rules", "", "rules directory")
	fs.StringVar(&c.data, "data", "", "data directory")
	fs.StringVar(&c.nats, "nats", "", "external NATS URL (default: embedded server)")
	fs.StringVar(&c.creds, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&c.http, "http", "", "HTTP listen address")
	fs.StringVar(&c.logLevel, "log-level", "", "debug | info | warn | error")
	fs.StringVar(&c.logFormat, "log-format", "", "text | json | auto")
}

// load reads the config and applies flags over it.
func (c *common) load() (*config.Config, error) {
	path, required := c.config, true
	if path == "" {
		path, required = "proactived.yaml", false
	}
	cfg, err := config.Load(path, required)
	if err != nil {
		return nil, err
	}
	if c.rules != "" {
		cfg.Rules = c.rules
	}
	if c.data != "" {
		cfg.Data = c.data
	}
	if c.nats != "" {
		cfg.NATS.URL = c.nats
	}
	if c.creds != "" {
		cfg.NATS.Creds = c.creds
	}
	if c.http != "" {
		cfg.HTTP.Addr = c.http
	}
	if c.logLevel != "" {
		cfg.Log.Level = c.logLevel
	}
	if c.logFormat != "" {
		cfg.Log.Format = c.logFormat
	}
	return cfg, nil
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("proactived "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseInterspersed parses flags that may come after positional arguments
// (`proactived emit orders.created '{...}' --nats URL`).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(cfg.Log.Level) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lvl}
	format := cfg.Log.Format
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	var c common
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	log := newLogger(cfg, stderr)
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log, Registry: all.Registry()})
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := d.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	code := 0
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			break loop
		case <-hup:
			// Reload logs its outcome (every problem, with position) itself.
			_ = d.Reload(context.Background())
		case err := <-d.Errors():
			log.Error("fatal", "err", err)
			code = 1
			break loop
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stop", "err", err)
		code = 1
	}
	log.Info("stopped")
	return code
}
