package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/proactived/proactived/engine/metrics"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/triggers/jsintake"
)

// ReloadStatus is the outcome of the last reload. A zero At means the
// rules were not reloaded since start.
type ReloadStatus struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Errors are the problems that made it fail, one per entry, each as
	// file:line:col: message.
	Errors []string `json:"errors,omitempty"`
	// Rules is the size of the rule set in force after the reload.
	Rules int `json:"rules"`
	// DroppedTimers counts the timers of removed rules that were cancelled.
	DroppedTimers int `json:"dropped_timers,omitempty"`
}

// reloadState serialises reloads (SIGHUP, the file watcher and the API may
// ask at once) and keeps the last outcome.
type reloadState struct {
	run  sync.Mutex // held for a whole reload
	mu   sync.Mutex // guards last
	last ReloadStatus
}

// Reload recompiles the rules directory and swaps the rule set only if all
// of it compiles and the stream covers its subjects; on error the old set
// keeps running and the error lists every problem with file:line:col.
// State (for: pending, timers, dedup) is keyed by rule name and carries
// over; the timers of removed rules are dropped and recorded as cancelled.
// The outcome is logged, counted in reloads_total and kept for LastReload.
func (d *Daemon) Reload(ctx context.Context) error {
	if d.eng == nil || d.intake == nil {
		return errors.New("reload: daemon not started")
	}
	d.reload.run.Lock()
	defer d.reload.run.Unlock()
	old := d.eng.Rules()
	st := ReloadStatus{At: d.o.Clock.Now()}
	set, err := d.swapRules(ctx)
	if err != nil {
		var list *rules.ErrorList
		if errors.As(err, &list) {
			st.Errors = list.Strings()
		} else {
			st.Errors = []string{err.Error()}
		}
		st.Rules = len(old.Rules)
		d.metrics.Reloaded(false, 0)
		d.setLastReload(st)
		d.log.Error("reload failed; keeping the old rules", "problems", len(st.Errors), "err", err)
		return err
	}
	st.OK, st.Rules = true, len(set.Rules)
	n, err := d.eng.DropRemoved(ctx, old, set)
	if err != nil {
		// The new set is in force; a timer left behind is dropped when it
		// falls due (the rule no longer exists), so this is not a failure.
		d.log.Warn("reload: could not drop the timers of removed rules now", "err", err)
	}
	st.DroppedTimers = n
	d.metrics.Reloaded(true, len(set.Rules))
	d.setLastReload(st)
	d.log.Info("rules reloaded", "rules", len(set.Rules), "files", len(set.Files), "subjects", set.Subjects(), "dropped_timers", n)
	d.warnBeyondRetention(set)
	return nil
}

// swapRules loads the new set, makes the stream cover its subjects and puts
// it in force.
func (d *Daemon) swapRules(ctx context.Context) (*rules.Set, error) {
	set, err := LoadRules(d.cfg)
	if err != nil {
		return nil, fmt.Errorf("reload %s:\n%w", d.cfg.Rules, err)
	}
	if err := d.intake.EnsureStream(ctx, set.Subjects()); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	d.eng.SetRules(set)
	d.ruleSet = set
	return set, nil
}

func (d *Daemon) setLastReload(st ReloadStatus) {
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	d.reload.last = st
}

// LastReload is the outcome of the last reload (zero At: none since start).
func (d *Daemon) LastReload() ReloadStatus {
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	st := d.reload.last
	st.Errors = append([]string(nil), st.Errors...)
	return st
}

// Metrics exposes the daemon's metrics (tests, embedding).
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// Intake exposes the JetStream intake (tests, status).
func (d *Daemon) Intake() *jsintake.Intake { return d.intake }

// startBackground starts the metrics sampler and the rules watcher; both
// stop with ctx and are waited for by Stop.
func (d *Daemon) startBackground(ctx context.Context) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.metrics.RunSamplers(ctx, d.o.SampleEvery, d.log.With("component", "metrics"),
			func(ctx context.Context) error { return d.metrics.SampleStore(ctx, d.st.R) },
			func(ctx context.Context) error { _, err := d.intake.Pending(ctx); return err },
		)
	}()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.runPruner(ctx)
	}()
	if d.o.WatchDebounce < 0 {
		return
	}
	w, err := newRuleWatcher(d.cfg.Rules, d.log.With("component", "watch"))
	if err != nil {
		d.log.Warn("not watching the rules directory; reload with SIGHUP or POST /api/v1/reload", "dir", d.cfg.Rules, "err", err)
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		w.run(ctx, d.o.WatchDebounce, func() { _ = d.Reload(ctx) })
	}()
}
