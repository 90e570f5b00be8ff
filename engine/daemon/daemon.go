// Package daemon assembles proactived from its parts — NATS (embedded or
// external), the SQLite store, the rule set, channels, the engine, the
// outbox dispatcher, the intake and HTTP — with New / Start / Stop, so tests
// can run the real daemon in-process. Signals are handled only in
// cmd/proactived.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/proactived/proactived/engine"
	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/httpapi"
	"github.com/proactived/proactived/engine/logmask"
	"github.com/proactived/proactived/engine/metrics"
	"github.com/proactived/proactived/engine/outbox"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/triggers/jsintake"
	"github.com/proactived/proactived/triggers/natsembed"
)

// The engine decodes events on the consumer's delivery goroutine.
var _ jsintake.Decoder = (*engine.Engine)(nil)

// Options are what a daemon is built from.
type Options struct {
	Config   *config.Config
	Logger   *slog.Logger
	Clock    clock.Clock
	Registry *notifiers.Registry
	// Channels, when set, replace channels built from the config (tests).
	Channels map[string]notifiers.Notifier
	// DispatchEvery is the outbox poll interval (default 200ms).
	DispatchEvery time.Duration
	// WatchDebounce is how long the rules directory must be quiet after a
	// change before the rules are reloaded (default 300ms); negative turns
	// the watcher off (SIGHUP and the API still reload).
	WatchDebounce time.Duration
	// SampleEvery is how often the sampled gauges (consumer backlog, outbox
	// depth, timers) are refreshed (default 5s).
	SampleEvery time.Duration
	// OnCommit is passed to the engine (engine.Options.OnCommit).
	OnCommit func(lastSeq uint64, events int)
	// StoreBusyTimeout, when set, replaces the store's 10 s wait for a
	// lock another connection holds (tests of a failing store).
	StoreBusyTimeout time.Duration
	// HTTPGrace is how long Stop lets HTTP requests in progress finish
	// before it closes their connections (default 5s).
	HTTPGrace time.Duration
	// PruneEvery is how often history older than the config's retention
	// (and expired dedup marks) is deleted (default 1h; the first round
	// runs a minute after start, or after PruneEvery if that is shorter).
	PruneEvery time.Duration
}

// Daemon is a running proactived.
type Daemon struct {
	o        Options
	cfg      *config.Config
	log      *slog.Logger
	ns       *server.Server
	nc       *nats.Conn
	st       *store.Store
	eng      *engine.Engine
	disp     *outbox.Dispatcher
	intake   *jsintake.Intake
	http     *http.Server
	httpLn   net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
	runErr   chan error
	// natsAt is the broker's URL as configured (or the embedded one's).
	natsAt string
	// unlock releases the data directory (lockData).
	unlock func()
	// closing: the daemon closes its NATS connection itself.
	closing atomic.Bool
	ruleSet *rules.Set
	metrics *metrics.Metrics
	reload  reloadState
}

// LoadRules loads the rule directory as the config describes it.
func LoadRules(cfg *config.Config) (*rules.Set, error) {
	return rules.Load(cfg.Rules, RuleOptions(cfg))
}

// RuleOptions are the rule-loading options implied by a config.
func RuleOptions(cfg *config.Config) rules.Options {
	var extra []string
	if cfg.Support.Subject != "" {
		extra = append(extra, cfg.Support.Subject)
	}
	return rules.Options{Channels: cfg.ChannelNames(), DefaultLocale: cfg.Defaults.Locale, ExtraSubjects: extra}
}

// BuildChannels constructs every configured channel. nc may be nil (check).
func BuildChannels(cfg *config.Config, reg *notifiers.Registry, log *slog.Logger, nc *nats.Conn) (map[string]notifiers.Notifier, error) {
	out := map[string]notifiers.Notifier{}
	// One connection pool for every HTTP channel. The default transport
	// keeps 2 idle connections per host while the dispatcher sends to one
	// host from many workers: most requests opened a new connection.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	deps := notifiers.Deps{Logger: log, HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: tr}, NATS: nc}
	var errs []error
	for _, name := range cfg.ChannelNames() {
		ch := cfg.Channels[name]
		f, ok := reg.Lookup(ch.Type)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: channel %q: unknown type %q (known: %v)", ch.Pos, name, ch.Type, reg.Types()))
			continue
		}
		n, err := f(name, ch.Spec, deps)
		if err != nil {
			pos := ch.Pos
			if pos == "" {
				pos = "config"
			}
			errs = append(errs, fmt.Errorf("%s: channel %q: %w", pos, name, err))
			continue
		}
		out[name] = n
	}
	return out, errors.Join(errs...)
}

// New validates and assembles; Start does the I/O.
func New(o Options) (*Daemon, error) {
	if o.Config == nil {
		return nil, errors.New("daemon: config required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Wall{}
	}
	if o.DispatchEvery <= 0 {
		o.DispatchEvery = 200 * time.Millisecond
	}
	if o.WatchDebounce == 0 {
		o.WatchDebounce = 300 * time.Millisecond
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 5 * time.Second
	}
	if o.HTTPGrace <= 0 {
		o.HTTPGrace = 5 * time.Second
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Hour
	}
	// Every line the daemon writes goes through the address mask.
	o.Logger = slog.New(logmask.New(o.Logger.Handler()))
	if err := httpapi.CheckListen(o.Config.HTTP.Addr, o.Config.HTTP.Token.Reveal()); err != nil {
		return nil, err
	}
	if o.Config.NATS.URL == "" {
		if err := natsembed.CheckListen(o.Config.NATS.Listen); err != nil {
			return nil, err
		}
	}
	return &Daemon{o: o, cfg: o.Config, log: o.Logger, runErr: make(chan error, 2), metrics: metrics.New()}, nil
}

// lockWait is how long Start waits for the data directory's lock: long
// enough for a SIGKILLed predecessor to be torn down, or a SIGTERMed one
// to finish its graceful stop (HTTP grace, sends in flight); a second
// daemon started by mistake says at once what it waits for.
const lockWait = 15 * time.Second

// Start brings everything up. On error, whatever started is stopped.
func (d *Daemon) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			d.shutdown(context.Background())
		}
	}()
	cfg := d.cfg
	set, err := LoadRules(cfg)
	if err != nil {
		return fmt.Errorf("load rules from %s:\n%w", cfg.Rules, err)
	}
	d.ruleSet = set
	d.warnBeyondRetention(set)
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if d.unlock, err = lockData(ctx, cfg.Data, lockWait, d.log); err != nil {
		return err
	}
	if err := d.connectNATS(); err != nil {
		return err
	}
	channels := d.o.Channels
	if channels == nil {
		channels, err = BuildChannels(cfg, d.o.Registry, d.log.With("component", "channel"), d.nc)
		if err != nil {
			return err
		}
	}
	d.st, err = store.Open(ctx, filepath.Join(cfg.Data, "proactived.db"))
	if err != nil {
		return err
	}
	if d.o.StoreBusyTimeout > 0 {
		if err := d.st.SetBusyTimeout(ctx, d.o.StoreBusyTimeout); err != nil {
			return err
		}
	}
	timeouts, inFlight := map[string]time.Duration{}, map[string]int{}
	for n, ch := range cfg.Channels {
		timeouts[n], inFlight[n] = ch.Timeout, ch.MaxInFlight
	}
	rc := cfg.Policy.Retry
	d.disp = outbox.New(outbox.Options{
		Store: d.st, Clock: d.o.Clock, Channels: channels, Timeouts: timeouts, MaxInFlight: inFlight, Logger: d.log, Jitter: 0.2,
		Retry:    outbox.Retry{Attempts: rc.Attempts, Backoff: rc.Backoff.D(), MaxBackoff: rc.MaxBackoff.D(), Timeout: rc.Timeout.D()},
		Probe:    rc.Probe.D(),
		Observer: d.metrics,
		SentLog:  filepath.Join(cfg.Data, "outbox-sent.log"),
	})
	d.eng, err = engine.New(ctx, engine.Options{
		Store: d.st, Clock: d.o.Clock, Config: cfg, Rules: set, Logger: d.log, Wake: d.disp.Wake,
		Observer: d.metrics, OnCommit: d.o.OnCommit,
	})
	if err != nil {
		return err
	}
	d.intake, err = jsintake.New(jsintake.Options{
		Conn: d.nc, Stream: cfg.NATS.Stream, Consumer: cfg.NATS.Consumer, Subjects: set.Subjects(),
		DeadPrefix: cfg.NATS.DeadPrefix, MaxBytes: cfg.Intake.MaxEventBytes, Batch: cfg.Intake.Batch,
		CatchUpBatch: cfg.Intake.CatchUpBatch,
		MaxWait:      cfg.Intake.MaxWait.D(), Replicas: cfg.NATS.Replicas, MaxAge: cfg.NATS.MaxAge.D(),
		Handler: d.eng, Logger: d.log, Observer: d.metrics,
	})
	if err != nil {
		return err
	}
	// With the broker there, a stream that cannot fit the rules stops the
	// start here; without it the intake binds the stream once it answers.
	if d.nc.IsConnected() {
		if err := d.intake.EnsureStream(ctx, set.Subjects()); err != nil {
			return err
		}
	}
	if err := d.startHTTP(); err != nil {
		return err
	}
	d.metrics.RulesLoaded(len(set.Rules))
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.startBackground(runCtx)
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		if err := d.intake.Run(runCtx); err != nil {
			d.log.Error("intake stopped", "err", err)
			d.runErr <- err
		}
	}()
	go func() {
		defer d.wg.Done()
		d.disp.Run(runCtx, d.o.DispatchEvery)
	}()
	d.log.Info("proactived started", "rules", len(set.Rules), "entities", len(set.Entities), "nats", redactURL(d.natsAt),
		"http", d.HTTPAddr(), "data", cfg.Data, "subjects", set.Subjects())
	return nil
}

func (d *Daemon) connectNATS() error {
	cfg := d.cfg
	url := cfg.NATS.URL
	if url == "" {
		ns, err := natsembed.Start(natsembed.Options{Listen: cfg.NATS.Listen, StoreDir: filepath.Join(cfg.Data, "nats")})
		if err != nil {
			return err
		}
		d.ns = ns
		url = ns.ClientURL()
	}
	opts := []nats.Option{
		nats.Name("proactived"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		// A connection that went silent (a partition that drops packets
		// without a reset) is noticed within ~12 s instead of the client's
		// default of minutes: readiness drops and time-driven work holds
		// (jsintake's cutOff) while the daemon cannot see the stream.
		nats.PingInterval(3 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				d.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { d.log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		// The client gives up only on what waiting cannot mend (the server
		// refusing the credentials again and again): the daemon stops with
		// the server's reason instead of waiting, not ready, forever.
		nats.ClosedHandler(func(c *nats.Conn) {
			if d.closing.Load() {
				return
			}
			err := c.LastError()
			if err == nil {
				err = nats.ErrConnectionClosed
			}
			select {
			case d.runErr <- fmt.Errorf("nats %s: connection closed for good: %w", redactURL(url), err):
			default:
			}
		}),
	}
	if cfg.NATS.URL != "" {
		// An external broker may be down when the daemon starts (started
		// first, or restarted while the broker is): wait for it, not ready
		// meanwhile, as for a broker lost later.
		opts = append(opts, nats.RetryOnFailedConnect(true),
			nats.ConnectHandler(func(c *nats.Conn) { d.log.Info("nats connected", "url", c.ConnectedUrlRedacted()) }))
	}
	if cfg.NATS.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATS.Creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	d.nc, d.natsAt = nc, url
	if !nc.IsConnected() {
		d.log.Warn("nats not reachable yet; retrying every 500ms (not ready until it answers)", "nats", redactURL(url))
	}
	return nil
}

// redactURL hides a password in a nats://user:pass@host URL.
func redactURL(u string) string {
	p, err := neturl.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	return p.Redacted()
}

func (d *Daemon) startHTTP() error {
	if d.cfg.HTTP.Addr == "" || d.cfg.HTTP.Addr == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", d.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", d.cfg.HTTP.Addr, err)
	}
	d.httpLn = ln
	api := httpapi.New(httpapi.Options{
		Token:   d.cfg.HTTP.Token.Reveal(),
		Ready:   d.Ready,
		Logger:  d.log,
		Store:   d.st,
		Metrics: d.metrics.Handler(),
		Extra: func(mux *http.ServeMux) {
			d.registerAPI(mux)
			httpapi.RegisterReport(mux, d.st.R, d.o.Clock)
		},
	})
	d.http = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := d.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http", "err", err)
		}
	}()
	return nil
}

// Ready: the consumer is bound, the store accepts writes and rules are
// loaded.
func (d *Daemon) Ready(ctx context.Context) error {
	switch {
	case d.nc == nil || !d.nc.IsConnected():
		return errors.New("nats not connected")
	case d.intake == nil:
		return errors.New("starting")
	case d.eng == nil || d.eng.Rules() == nil:
		return errors.New("rules not loaded")
	}
	if err := d.intake.Ready(); err != nil {
		return err
	}
	if err := d.st.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// HTTPAddr is the address HTTP listens on ("" if off).
func (d *Daemon) HTTPAddr() string {
	if d.httpLn == nil {
		return ""
	}
	return d.httpLn.Addr().String()
}

// NATSURL is the URL of the broker in use.
func (d *Daemon) NATSURL() string {
	if d.nc == nil {
		return ""
	}
	return d.nc.ConnectedUrl()
}

// Engine exposes the engine (tests, API).
func (d *Daemon) Engine() *engine.Engine { return d.eng }

// Store exposes the store (tests, API).
func (d *Daemon) Store() *store.Store { return d.st }

// Errors delivers fatal errors of the running loops.
func (d *Daemon) Errors() <-chan error { return d.runErr }

// Stop stops fetching, lets the in-flight batch commit and ack, stops the
// dispatcher after its current sends, and closes everything. It is
// idempotent and bounded by ctx.
func (d *Daemon) Stop(ctx context.Context) error {
	d.stopOnce.Do(func() { d.stopErr = d.shutdown(ctx) })
	return d.stopErr
}

func (d *Daemon) shutdown(ctx context.Context) error {
	var errs []error
	if d.http != nil {
		sctx, cancel := context.WithTimeout(ctx, d.o.HTTPGrace)
		if err := d.http.Shutdown(sctx); err != nil {
			// A client that holds a request open (a slow or half-sent one,
			// or a connection that has not sent its first request yet) must
			// not keep the daemon from stopping: the API has nothing to
			// flush, so its connections are closed.
			d.log.Warn("HTTP requests still open at stop; closing their connections", "after", d.o.HTTPGrace, "err", err)
			if err := d.http.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close HTTP: %w", err))
			}
		}
		cancel()
	}
	if d.cancel != nil {
		d.cancel()
		done := make(chan struct{})
		go func() { d.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, errors.New("stop: timed out waiting for in-flight work"))
		}
	}
	if d.eng != nil {
		// A clean stop leaves nothing for a rebuild to do.
		if err := d.eng.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("write entity state: %w", err))
		}
	}
	if d.nc != nil {
		d.closing.Store(true)
		_ = d.nc.Drain()
		d.nc.Close()
	}
	if d.st != nil {
		errs = append(errs, d.st.Close())
	}
	if d.ns != nil {
		d.ns.Shutdown()
		d.ns.WaitForShutdown()
	}
	if d.unlock != nil {
		d.unlock()
	}
	return errors.Join(errs...)
}
