package daemon

import (
	"context"
	"time"

	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// runPruner deletes history older than the retention (store/prune.go)
// every PruneEvery until ctx ends.
func (d *Daemon) runPruner(ctx context.Context) {
	p := d.st.NewPruner()
	t := time.NewTimer(min(d.o.PruneEvery, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.pruneRound(ctx, p)
		t.Reset(d.o.PruneEvery)
	}
}

// pruneRound steps p until every table is done. A failed step (the store
// is failing, a backup holds a lock) ends the round; the next round starts
// over, and nothing is lost by waiting.
func (d *Daemon) pruneRound(ctx context.Context, p *store.Pruner) {
	keep := d.cfg.Retention.D()
	start := time.Now()
	if err := p.Mark(ctx, d.o.Clock.Now(), keep); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("pruning old history failed; trying again next round", "err", err, "next", d.o.PruneEvery)
		}
		return
	}
	total := map[string]int64{}
	for {
		got, more, err := p.Step(ctx, d.o.Clock.Now(), keep)
		d.metrics.Pruned(got)
		for k, v := range got {
			total[k] += v
		}
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("pruning old history failed; trying again next round", "err", err, "next", d.o.PruneEvery)
			}
			return
		}
		if !more {
			break
		}
	}
	if len(total) > 0 {
		d.log.Info("pruned old history", "retention", d.cfg.Retention, "rows", total, "took", time.Since(start).Round(time.Millisecond))
	}
}

// warnBeyondRetention logs each rule whose window looks back further than
// the history retention keeps: it would see only the kept part.
func (d *Daemon) warnBeyondRetention(set *rules.Set) {
	keep := d.cfg.Retention.D()
	if keep <= 0 {
		return
	}
	for _, r := range set.Rules {
		if r.InhibitFor > keep {
			d.log.Warn("a rule's inhibit_window is longer than the history kept; it sees only the kept part",
				"rule", r.Name, "inhibit_window", r.InhibitFor, "retention", d.cfg.Retention, "at", r.Pos.String())
		}
		if r.Cap != nil && r.Cap.Per > keep {
			d.log.Warn("a rule's frequency cap window is longer than the history kept; it counts only the kept part",
				"rule", r.Name, "per", r.Cap.Per, "retention", d.cfg.Retention, "at", r.Pos.String())
		}
	}
}
