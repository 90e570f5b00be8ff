package daemon

import (
	"context"
	"time"

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
