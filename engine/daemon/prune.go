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
	p.IDKeep = d.cfg.Intake.IDWindowOrDefault()
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

// pruneRound runs one round of p and says what it deleted. A failed
// round (the store is failing, a backup holds a lock) is tried again at
// the next; nothing is lost by waiting.
func (d *Daemon) pruneRound(ctx context.Context, p *store.Pruner) {
	start := time.Now()
	total, err := d.prune(ctx, p)
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Warn("pruning old history failed; trying again next round", "err", err, "next", d.o.PruneEvery)
	case err == nil && len(total) > 0:
		d.log.Info("pruned old history", "retention", d.cfg.Retention, "id_window", p.IDKeep, "rows", total, "took", time.Since(start).Round(time.Millisecond))
	}
}

// prune marks the round's arrivals and steps p until every table is
// done, counting the rows deleted by table.
func (d *Daemon) prune(ctx context.Context, p *store.Pruner) (map[string]int64, error) {
	keep := d.cfg.Retention.D()
	if err := p.Mark(ctx, d.o.Clock.Now(), keep); err != nil {
		return nil, err
	}
	total := map[string]int64{}
	for more := true; more; {
		got, m, err := p.Step(ctx, d.o.Clock.Now(), keep)
		d.metrics.Pruned(got)
		for k, v := range got {
			total[k] += v
		}
		if err != nil {
			return total, err
		}
		more = m
	}
	return total, nil
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
