package engine

import (
	"context"
	"fmt"

	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/rules"
)

// DropRemoved deletes the pending timers (absence deadlines, for:
// hold-downs, promises) of rules that are in old but not in cur, and
// records a cancelled decision for each, so explain shows why a deadline
// never fired. Rules that still exist keep their timers: state is keyed by
// rule name. It returns how many timers it dropped.
//
// The daemon calls it right after SetRules on reload; without it the
// timers would linger until due and be dropped then (fireTimer).
func (e *Engine) DropRemoved(ctx context.Context, old, cur *rules.Set) (int, error) {
	ctx = stmtCtx(ctx)
	if old == nil || cur == nil {
		return 0, nil
	}
	var gone []string
	for name := range old.ByName {
		if _, ok := cur.ByName[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	dropped := 0
	err := e.withTx(ctx, func() error {
		for _, name := range gone {
			rows, err := e.cur.reader(tTimers).QueryContext(ctx, `SELECT etype, ekey, kind FROM timers WHERE rule = ?`, name)
			if err != nil {
				return fmt.Errorf("timers of rule %q: %w", name, err)
			}
			type tk struct{ etype, ekey, kind string }
			var list []tk
			for rows.Next() {
				var t tk
				if err := rows.Scan(&t.etype, &t.ekey, &t.kind); err != nil {
					rows.Close()
					return fmt.Errorf("timers of rule %q: %w", name, err)
				}
				list = append(list, t)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("timers of rule %q: %w", name, err)
			}
			for _, t := range list {
				if _, err := e.cur.deleteTimer(ctx, name, t.etype, t.ekey, t.kind); err != nil {
					return err
				}
				// The old rule gives the decision its mode (a removed shadow
				// rule stays shadow in the record).
				e.decide(ctx, decision{rule: old.ByName[name], etype: t.etype, ekey: t.ekey, verdict: policy.VerdictCancelled,
					reason: "rule removed by reload; " + t.kind + " timer dropped"})
				dropped++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("drop timers of removed rules: %w", err)
	}
	return dropped, nil
}
