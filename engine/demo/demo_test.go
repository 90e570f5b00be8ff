package demo_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/demo"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/simulate"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/all"
	"github.com/proactived/proactived/notifiers/logchan"
)

// starter loads the shipped proactived.yaml and rules.d, the setup the
// demo is tuned for.
func starter(t *testing.T) (*config.Config, *rules.Set) {
	t.Helper()
	cfg, err := config.Load("../../proactived.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = "../../rules.d"
	set, err := daemon.LoadRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, set
}

func compressed(t *testing.T, seed uint64) (*store.Store, *demo.Result, map[string]int64) {
	t.Helper()
	ctx := context.Background()
	cfg, set := starter(t)
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "proactived.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	end := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	span := 48 * time.Hour
	var days []demo.Progress
	res, err := demo.Compressed(ctx, demo.CompressedOptions{
		Store: st, Config: cfg, Rules: set, Shop: demo.Shop(seed, end.Add(-span), span, 600), End: end,
		Progress: func(p demo.Progress) { days = append(days, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 2 || days[1].Events != res.Events || !days[1].At.Equal(end) || len(days[1].Verdicts) == 0 {
		t.Fatalf("progress %+v, want one report per shop day ending at %s with verdicts", days, end)
	}
	v, err := demo.Verdicts(ctx, st.R, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return st, res, v
}

// TestCompressedShowsEveryKindOfDecision: two days of the simulated shop
// through the real engine on a virtual clock fill the store with what a
// newcomer should see — notifications sent and delivered, deferrals for
// customers whose night it was, hold-downs, and each suppression the
// starter rules can produce — stop at End, leave the stream position
// alone, and do it the same way every time for a seed.
func TestCompressedShowsEveryKindOfDecision(t *testing.T) {
	st, res, v := compressed(t, 1)
	t.Logf("%d events in %s: %v; truth %+v; verdicts %v", res.Events, res.Took, res.BySubject, res.Truth, v)
	for _, verdict := range []string{"sent", "delivered", "deferred", "released", "pending", "armed", "held_out", "capped", "deduped"} {
		if v[verdict] == 0 {
			t.Errorf("no %s decision in two days of the shop", verdict)
		}
	}
	for _, subj := range []string{simulate.SubjectCustomer, simulate.SubjectCreated, simulate.SubjectDispatched, simulate.SubjectETA,
		simulate.SubjectCancelled, simulate.SubjectStockout, simulate.SubjectContact} {
		if res.BySubject[subj] == 0 {
			t.Errorf("no %s event", subj)
		}
	}
	if int64(res.Sent) != v["delivered"] {
		t.Errorf("channels accepted %d notifications, the store records %d delivered", res.Sent, v["delivered"])
	}
	if res.Truth.Informed+res.Truth.Uninformed == 0 || res.Truth.Informed == 0 {
		t.Errorf("no delayed customer was told before deciding: %+v", res.Truth)
	}
	if !res.End.Equal(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("ended at %s", res.End)
	}
	var maxAt int64
	if err := st.R.QueryRow(`SELECT coalesce(max(at), 0) FROM decisions`).Scan(&maxAt); err != nil {
		t.Fatal(err)
	}
	if end := res.End.UnixMilli(); maxAt > end {
		t.Errorf("a decision at %d after the end %d", maxAt, end)
	}
	var pos string
	if err := st.R.QueryRow(`SELECT v FROM meta WHERE k = 'last_seq'`).Scan(&pos); !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("the stream position was set to %q (%v): a daemon on this store would skip its own stream", pos, err)
	}
	// The dispatch carries the carrier's first ETA, so no rule reading
	// order.eta of a parcel in transit errs.
	if v["error"] != 0 {
		var reason string
		_ = st.R.QueryRow(`SELECT rule || ': ' || reason FROM decisions WHERE verdict = 'error' LIMIT 1`).Scan(&reason)
		t.Errorf("%d error decisions, e.g. %s", v["error"], reason)
	}
	_, again, v2 := compressed(t, 1)
	if again.Events != res.Events || again.Sent != res.Sent || len(v2) != len(v) {
		t.Fatalf("seed 1 twice: %d/%d events, %d/%d sent", res.Events, again.Events, res.Sent, again.Sent)
	}
	for k, n := range v {
		if v2[k] != n {
			t.Errorf("seed 1 twice: %s %d vs %d", k, n, v2[k])
		}
	}
}

// TestLivePublishesToADaemon: the live demo against a real daemon over
// NATS (embedded JetStream, as `demo --embedded` runs it): the events are
// consumed and decided within the run, the summary reads the decisions
// back, and every id carries the run's prefix.
func TestLivePublishesToADaemon(t *testing.T) {
	ctx := context.Background()
	cfg, set := starter(t)
	cfg.Data = t.TempDir()
	cfg.NATS.URL, cfg.NATS.Listen = "", "127.0.0.1:-1"
	cfg.HTTP.Addr = "off"
	cfg.Intake.MaxWait = config.Duration(5 * time.Millisecond)
	chans := map[string]notifiers.Notifier{}
	for _, name := range cfg.ChannelNames() {
		n, err := logchan.New(name, nil, notifiers.Deps{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		chans[name] = n
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Registry: all.Registry(), Channels: chans, DispatchEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Stop(sctx); err != nil {
			t.Error(err)
		}
	})
	nc, err := nats.Connect(d.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now().UTC()
	prefix := demo.RunPrefix(began)
	if len(prefix) != 5 || !strings.HasSuffix(prefix, "-") {
		t.Fatalf("prefix %q", prefix)
	}
	shop := demo.LiveShop(7, began, 1500, 1500*time.Millisecond, prefix)
	var progress []demo.Progress
	res, err := demo.Live(ctx, demo.LiveOptions{
		JS: js, DB: d.Store().R, Shop: shop, InformedBy: demo.InformedBy(set), Rate: 1500, Duration: 1500 * time.Millisecond,
		ProgressEvery: 500 * time.Millisecond, Progress: func(p demo.Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events in %s: %v", res.Events, res.Took, res.BySubject)
	if res.Events < 500 || res.Uncaptured != 0 || !res.CaughtUp || res.LastSeq != uint64(res.Events) {
		t.Fatalf("published %d (uncaptured %d, caught up %v, last seq %d)", res.Events, res.Uncaptured, res.CaughtUp, res.LastSeq)
	}
	if res.Took > 10*time.Second {
		t.Errorf("a 1.5s run took %s", res.Took)
	}
	if len(progress) < 2 || progress[len(progress)-1].Events != res.Events {
		t.Errorf("progress %+v", progress)
	}
	s, err := demo.Summarize(ctx, d.Store().R, began.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verdicts %v", s.Verdicts)
	// Within the run: orders armed their dispatch deadline, delays started
	// their 15-minute hold-down, cancellations and stock-outs notified.
	if s.Verdicts["armed"] == 0 || s.Verdicts["pending"] == 0 || s.Verdicts["sent"]+s.Verdicts["deferred"] == 0 {
		t.Fatalf("verdicts %v: want armed, pending and sent or deferred decisions", s.Verdicts)
	}
	if len(s.Examples) == 0 {
		t.Fatal("no example entity to explain")
	}
	for _, ex := range s.Examples {
		if !strings.HasPrefix(ex.Entity, "order:"+prefix+"o-") {
			t.Errorf("example %s is not one of this run's orders (prefix %q)", ex.Entity, prefix)
		}
	}
}
