package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/demo"
	"github.com/proactived/proactived/engine/explain"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/simulate"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/all"
	"github.com/proactived/proactived/notifiers/logchan"
)

const demoUsage = `usage: proactived demo [--rate N/s] [--duration D] [--seed S] [--orders N]
                       [--embedded] [--simulate SPAN] [--serve=false] [--data DIR] [--config FILE]

  (no mode)        publish a simulated shop to the running daemon's NATS (start
                   'proactived run' first), at --rate for --duration
  --embedded       start a daemon in-process (embedded NATS, the console on
                   --http), on a fresh temporary data dir unless --data is given,
                   and publish to it
  --simulate SPAN  play SPAN (e.g. 7d) of the shop through the real engine on a
                   virtual clock in seconds, into a fresh data dir, then serve the
                   console on it (add --duration to publish live on top)
  --serve=false    with --embedded or --simulate: exit after the summary instead
                   of serving the console until Ctrl-C`

// demoFlags are the demo's own flags.
type demoFlags struct {
	rate     float64
	duration time.Duration
	seed     uint64
	orders   int
	embedded bool
	simulate time.Duration
	serve    bool
	prefix   string
	// set records the flags given on the command line.
	set map[string]bool
}

// cmdDemo shows a newcomer the engine at work on a simulated shop
// (engine/demo).
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := newFlags("demo", stderr)
	fset.Usage = func() { fmt.Fprintln(stderr, demoUsage) }
	var c common
	c.register(fset)
	df := demoFlags{rate: 100, duration: time.Minute, seed: 1, serve: true}
	fset.Func("rate", "events per second (100, or 100/s)", func(s string) error {
		v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("want a positive number of events per second, such as 100 or 100/s")
		}
		df.rate = v
		return nil
	})
	fset.Func("duration", "how long to publish live (default 1m)", func(s string) error {
		d, err := rules.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 30s or 2m")
		}
		df.duration = d
		return nil
	})
	fset.Uint64Var(&df.seed, "seed", 1, "simulation seed: the same seed, the same shop")
	fset.IntVar(&df.orders, "orders", 0, "orders in the simulated shop (default: sized to --rate × --duration, or 850 a day with --simulate)")
	fset.BoolVar(&df.embedded, "embedded", false, "start a daemon in-process and publish to it")
	fset.Func("simulate", "play this much shop time (e.g. 7d) on a virtual clock into a fresh data dir", func(s string) error {
		d, err := rules.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 7d or 48h")
		}
		df.simulate = d
		return nil
	})
	fset.BoolVar(&df.serve, "serve", true, "with --embedded or --simulate: keep the daemon and console running after the summary, until Ctrl-C")
	fset.StringVar(&df.prefix, "prefix", "", "prefix of the ids a live run publishes (default: a tag of this run, so runs do not collide)")
	pos, err := parseInterspersed(fset, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintln(stderr, demoUsage)
		return 2
	}
	df.set = map[string]bool{}
	fset.Visit(func(f *flag.Flag) { df.set[f.Name] = true })
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r := &demoRun{cfg: cfg, df: df, c: c, out: stdout, errw: stderr}
	if err := r.run(ctx); err != nil {
		fmt.Fprintln(stderr, "proactived: demo:", err)
		return 1
	}
	return 0
}

type demoRun struct {
	cfg       *config.Config
	df        demoFlags
	c         common
	out, errw io.Writer
	// dataArg is the --data argument the printed commands need ("" when
	// they use the configured data dir).
	dataArg string
}

func (r *demoRun) printf(format string, a ...any) { fmt.Fprintf(r.out, format, a...) }

func (r *demoRun) run(ctx context.Context) error {
	if !r.df.embedded && r.df.simulate == 0 {
		return r.againstRunning(ctx)
	}
	dir, err := r.dataDir()
	if err != nil {
		return err
	}
	r.cfg.Data, r.dataArg = dir, dir
	if r.df.simulate > 0 {
		if err := r.compressed(ctx); err != nil {
			return err
		}
		if !r.df.serve && !r.df.set["duration"] {
			r.pointers("")
			return nil
		}
	}
	d, err := r.startDaemon(ctx)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Stop(sctx); err != nil {
			fmt.Fprintln(r.errw, "proactived: demo: stop:", err)
		}
	}()
	console := "http://" + d.HTTPAddr() + "/"
	// --simulate publishes live only when asked to (--duration).
	if r.df.simulate == 0 || r.df.set["duration"] {
		nc, err := nats.Connect(d.NATSURL(), nats.Name("proactived-demo"))
		if err != nil {
			return fmt.Errorf("connect to the embedded nats: %w", err)
		}
		defer nc.Close()
		if err := r.liveWithDB(ctx, nc, d.Store().R); err != nil {
			return err
		}
	}
	r.pointers(console)
	if !r.df.serve || ctx.Err() != nil {
		return nil
	}
	r.printf("\nServing the console at %s (data in %s). Ctrl-C to stop.\n", console, r.cfg.Data)
	select {
	case <-ctx.Done():
	case err := <-d.Errors():
		return err
	}
	return nil
}

// dataDir is --data when given, else a new temporary directory: the
// demo's made-up customers stay out of the configured data dir unless
// asked. It is kept after the demo so report and explain can read it.
func (r *demoRun) dataDir() (string, error) {
	if r.c.data != "" {
		if r.df.simulate > 0 {
			// A compressed run writes a fresh store: never mix it into one
			// a daemon already uses.
			db := filepath.Join(r.c.data, "proactived.db")
			if _, err := os.Stat(db); err == nil {
				return "", fmt.Errorf("--simulate writes a fresh store, but %s exists: choose another --data, or delete it", db)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
		}
		return r.c.data, nil
	}
	dir, err := os.MkdirTemp("", "proactived-demo-")
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return dir, nil
}

// compressed plays --simulate of shop time into the data dir.
func (r *demoRun) compressed(ctx context.Context) error {
	set, err := daemon.LoadRules(r.cfg)
	if err != nil {
		return fmt.Errorf("load rules from %s:\n%w", r.cfg.Rules, err)
	}
	if err := os.MkdirAll(r.cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(ctx, filepath.Join(r.cfg.Data, "proactived.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	span := r.df.simulate
	orders := r.df.orders
	if orders <= 0 {
		orders = int(850 * span.Hours() / 24)
	}
	end := time.Now().UTC()
	shop := demo.Shop(r.df.seed, end.Add(-span), span, orders)
	r.printf("Playing %s of a simulated shop (%d orders, %d customers in 10 timezones, seed %d) through the real engine on a virtual clock, into %s\n",
		formatSpan(span), orders, shop.Customers, r.df.seed, r.cfg.Data)
	r.printf("Channels are counted, not called: nothing is sent.\n\n")
	res, err := demo.Compressed(ctx, demo.CompressedOptions{
		Store: st, Config: r.cfg, Rules: set, Shop: shop, End: end,
		Progress: func(p demo.Progress) { r.printf("%s\n", p) },
	})
	if err != nil {
		return err
	}
	r.printf("\n%s of shop time in %s: %d events (%s).\n", formatSpan(res.End.Sub(res.Start)), res.Took.Round(100*time.Millisecond), res.Events, subjectsLine(res.BySubject))
	r.printf("%d notifications went out. Of the customers of a delayed order, %d were told before they decided whether to call (%d called) and %d were not (%d called).\n",
		res.Sent, res.Truth.Informed, res.Truth.ContactedInformed, res.Truth.Uninformed, res.Truth.ContactedUninformed)
	if err := r.summary(ctx, st.R, time.Time{}); err != nil {
		return err
	}
	return r.reportLines(ctx, st.R, end, &res.Shop)
}

// startDaemon runs the daemon in-process on the data dir, with the
// embedded NATS on a free port (a `proactived run` may hold the usual
// one) and every channel a log channel: a demo never sends for real.
func (r *demoRun) startDaemon(ctx context.Context) (*daemon.Daemon, error) {
	cfg := r.cfg
	cfg.NATS.URL, cfg.NATS.Listen = "", "127.0.0.1:-1"
	if r.c.http == "" && !freeAddr(cfg.HTTP.Addr) {
		cfg.HTTP.Addr = "127.0.0.1:0"
	}
	log := newLogger(cfg, r.errw)
	chans := map[string]notifiers.Notifier{}
	for _, name := range cfg.ChannelNames() {
		n, err := logchan.New(name, nil, notifiers.Deps{Logger: log.With("component", "channel")})
		if err != nil {
			return nil, err
		}
		chans[name] = n
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log, Registry: all.Registry(), Channels: chans})
	if err != nil {
		return nil, err
	}
	if err := d.Start(ctx); err != nil {
		return nil, err
	}
	r.printf("\nDaemon started in-process: data %s, embedded NATS %s, console http://%s/ — every channel logs its notifications (stderr).\n",
		cfg.Data, d.NATSURL(), d.HTTPAddr())
	return d, nil
}

// againstRunning publishes to the NATS of a daemon started with
// `proactived run` (the same config and flags find it).
func (r *demoRun) againstRunning(ctx context.Context) error {
	nc, err := dial(r.cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	// The store is read for progress and the summary; without it (a daemon
	// on another machine) the demo still publishes.
	path := filepath.Join(r.cfg.Data, "proactived.db")
	db, err := explain.OpenReadOnly(ctx, path)
	if err != nil {
		r.printf("(cannot read the daemon's store, so no verdicts below: %v)\n", err)
	} else {
		defer db.Close()
	}
	if err := r.liveWithDB(ctx, nc, db); err != nil {
		return err
	}
	r.pointers("http://" + r.cfg.HTTP.Addr + "/")
	return nil
}

// liveWithDB publishes the shop at --rate for --duration.
func (r *demoRun) liveWithDB(ctx context.Context, nc *nats.Conn, db *sql.DB) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var informedBy []string
	if set, err := daemon.LoadRules(r.cfg); err == nil {
		informedBy = demo.InformedBy(set)
	}
	prefix := r.df.prefix
	if !r.df.set["prefix"] {
		prefix = demo.RunPrefix(time.Now())
	}
	now := time.Now().UTC()
	shop := demo.LiveShop(r.df.seed, now, r.df.rate, r.df.duration, prefix)
	if r.df.orders > 0 {
		shop.Orders, shop.Customers = r.df.orders, max(r.df.orders/6, 3)
	}
	r.printf("\nPublishing a simulated shop to %s: %.0f events/s for %s, ids prefixed %q (seed %d).\n",
		nc.ConnectedUrlRedacted(), r.df.rate, r.df.duration, prefix, r.df.seed)
	r.printf("%d customers in 10 timezones and 6 locales; up to %d orders placed over a day of shop time, with dispatches, ETA changes (some late), cancellations, stock-outs and support contacts.\n\n",
		shop.Customers, shop.Orders)
	res, err := demo.Live(ctx, demo.LiveOptions{
		JS: js, DB: db, Shop: shop, InformedBy: informedBy, Rate: r.df.rate, Duration: r.df.duration,
		Progress: func(p demo.Progress) { r.printf("%s\n", p) },
	})
	if err != nil {
		return err
	}
	r.printf("\nPublished %d events in %s (%.0f/s): %s.\n", res.Events, res.Took.Round(100*time.Millisecond),
		float64(res.Events)/max(res.Took.Seconds(), 0.001), subjectsLine(res.BySubject))
	if res.Uncaptured > 0 {
		r.printf("%d events had a subject no rule or entity of the daemon uses (no stream captured them).\n", res.Uncaptured)
	}
	if db == nil {
		return nil
	}
	if !res.CaughtUp {
		r.printf("(the daemon had not processed every event yet; the counts below are partial)\n")
	}
	return r.summary(ctx, db, now.Add(-time.Second))
}

// summary prints what the engine decided, with explain pointers.
func (r *demoRun) summary(ctx context.Context, db *sql.DB, since time.Time) error {
	s, err := demo.Summarize(ctx, db, since)
	if err != nil {
		return err
	}
	r.printf("\nWhat the engine decided:\n")
	for _, v := range demo.VerdictOrder() {
		if n := s.Verdicts[v]; n > 0 {
			r.printf("  %-11s %6d  %s\n", v, n, verdictGloss(v))
		}
	}
	if len(s.Verdicts) == 0 {
		r.printf("  nothing yet\n")
	}
	if len(s.Examples) > 0 {
		r.printf("\nWhy, entity by entity:\n")
		w := 0
		for _, ex := range s.Examples {
			w = max(w, len(r.cmd("explain", ex.Entity)))
		}
		for _, ex := range s.Examples {
			r.printf("  %-*s  # %s: %s\n", w, r.cmd("explain", ex.Entity), ex.Verdict, ex.Reason)
		}
	}
	return nil
}

// reportLines prints the effectiveness of the rules with a control group.
// shop, when known, is the simulated shop (its planted behaviour).
func (r *demoRun) reportLines(ctx context.Context, db *sql.DB, now time.Time, shop *simulate.Config) error {
	rep, err := report.Compute(ctx, db, report.Options{Until: now.Add(time.Second)})
	if err != nil {
		return err
	}
	r.printf("\nEffectiveness (contacts within %s of the notification, notified vs held out):\n", rep.Window)
	shown := false
	for _, rr := range rep.Rules {
		if rr.Control.N == 0 {
			continue
		}
		shown = true
		r.printf("  %s: notified %d, %.1f%% contacted support; held out %d, %.1f%%", rr.Rule,
			rr.Treated.N, 100*float64(rr.Treated.Rate.Value), rr.Control.N, 100*float64(rr.Control.Rate.Value))
		if a := rr.AbsoluteReduction; a.Value.Valid() {
			r.printf("; %.1f points fewer (95%% CI %.1f to %.1f), about %.0f contacts avoided", 100*float64(a.Value), 100*float64(a.Low), 100*float64(a.High), float64(rr.ContactsAvoided.Value))
		}
		r.printf(" — %s\n", rr.Verdict)
	}
	if !shown {
		r.printf("  no rule with a holdout fired yet\n")
		return nil
	}
	if shop != nil {
		r.printf("  (The simulated customers of a late order contact support %.0f%% of the time when nobody told them, %.0f%% when told.\n"+
			"   The report compares notified with held-out orders as the engine decided them, so notices deferred past a customer's\n"+
			"   decision, and contact windows still open at the end, pull the measured difference towards zero.)\n",
			100*shop.PUninformed, 100*shop.PInformed)
	}
	return nil
}

// pointers prints where to look next.
func (r *demoRun) pointers(console string) {
	r.printf("\nNext:\n")
	r.printf("  %-58s # effectiveness per rule, with confidence intervals\n", r.cmd("report"))
	if console != "" {
		r.printf("  %-58s # the ops console: rules, notifications, timelines, report\n", console)
		if r.cfg.HTTP.Token.Reveal() != "" {
			r.printf("  %-58s # http.token is set: open the console once with ?token=… (it sets a cookie)\n", "")
		}
	}
	if r.df.simulate == 0 {
		r.printf("delivery-delayed holds for 15m (carriers flap ETAs): its notices — and its 5%% held-out control group — appear about 15 minutes after the delays were published, if the daemon still runs. `proactived demo --simulate 7d` shows a whole week in seconds.\n")
	}
}

// cmd renders a proactived command line that reads the demo's data.
func (r *demoRun) cmd(verb string, args ...string) string {
	parts := append([]string{"proactived", verb}, args...)
	if r.c.config != "" {
		parts = append(parts, "--config", r.c.config)
	}
	if r.dataArg != "" {
		parts = append(parts, "--data", r.dataArg)
	} else if r.c.data != "" {
		parts = append(parts, "--data", r.c.data)
	}
	return strings.Join(parts, " ")
}

func verdictGloss(v string) string {
	switch v {
	case "sent":
		return "queued for the customer's preferred channel"
	case "delivered":
		return "delivered (in the daemon's log: one \"notification\" line each)"
	case "deferred":
		return "quiet hours where the customer lives: sent when their morning comes"
	case "released":
		return "deferred notifications sent after quiet hours"
	case "pending":
		return "a for: hold-down is running (delivery-delayed waits 15m: carriers flap ETAs)"
	case "armed":
		return "a deadline is armed (not-dispatched-in-time: 48h to dispatch)"
	case "cancelled":
		return "a hold-down or deadline ended without firing (the order shipped, the ETA recovered)"
	case "deduped":
		return "already told (dedup key seen)"
	case "held_out":
		return "control group (holdout): decided, not sent, to measure the effect"
	case "inhibited":
		return "silenced by an open support contact or an earlier notification (e.g. a cancellation)"
	case "capped":
		return "frequency cap: too many messages to this customer today"
	case "opted_out":
		return "the customer opted out of the channel"
	case "no_channel":
		return "no address on any channel the customer accepts"
	case "superseded":
		return "dropped on re-check before sending: no longer true"
	case "promise":
		return "a promised follow-up kept or broken"
	case "fallback":
		return "a channel failed; fell back to the next one"
	case "failed":
		return "every channel failed"
	case "error":
		return "a rule expression failed on this data"
	}
	return ""
}

// subjectsLine counts events by subject in words.
func subjectsLine(by map[string]int) string {
	p := demo.Progress{BySubject: by}
	var parts []string
	for _, s := range p.Subjects() {
		parts = append(parts, fmt.Sprintf("%d %s", by[s], s))
	}
	return strings.Join(parts, ", ")
}

func formatSpan(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.Round(time.Minute).String()
}

// freeAddr says whether addr can be listened on now.
func freeAddr(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
