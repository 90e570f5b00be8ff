package engine

import (
	"context"

	"github.com/proactived/proactived/engine/event"
)

// Accept decodes a raw message and computes its entity keys. It is the
// engine's side of triggers/jsintake.Handler.
func (e *Engine) Accept(raw event.Raw) (any, *event.Rejection) {
	ev, rej := e.Decode(raw)
	if rej != nil {
		return nil, rej
	}
	return e.AcceptDecoded(ev)
}

// Decode is the first step of Accept, which depends on the message alone
// (jsintake.Decoder): the intake runs it as messages are delivered, beside
// the batch being committed.
func (e *Engine) Decode(raw event.Raw) (any, *event.Rejection) {
	ev, rej := event.DecodeWith(raw, e.cfg.Intake.MaxEventBytes, e.keys)
	if rej != nil {
		return nil, rej
	}
	return ev, nil
}

// AcceptDecoded finishes Accept on what Decode returned: it computes the
// event's entity keys with the rule set in force.
func (e *Engine) AcceptDecoded(decoded any) (any, *event.Rejection) {
	p, rej := e.Prepare(decoded.(*event.Event))
	if rej != nil {
		return nil, rej
	}
	return p, nil
}

// Commit applies accepted events in one transaction and moves the
// committed stream position to upTo (which covers dead-lettered and
// skipped messages of the batch too).
func (e *Engine) Commit(ctx context.Context, batch []any, upTo uint64) error {
	ps := make([]*Prepared, 0, len(batch))
	for _, b := range batch {
		if p, ok := b.(*Prepared); ok {
			ps = append(ps, p)
		}
	}
	return e.handleBatch(ctx, ps, upTo)
}

// PutEntity merges fields into an entity's state outside the event stream
// (rule-test seeds, the preference centre API). It commits at once.
func (e *Engine) PutEntity(ctx context.Context, typ, key string, fields map[string]any) error {
	ctx = stmtCtx(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	// Everything queued is written with it: a rebuild after a crash must
	// not merge older events over a change made here.
	return e.withTxAll(ctx, func() error {
		ent, err := e.load(ctx, typ, key)
		if err != nil {
			return err
		}
		if ent.state == nil {
			ent.state = make(map[string]any, len(fields))
		}
		for k, v := range fields {
			ent.state[k] = event.Normalize(v)
		}
		now := e.now()
		if ent.created.IsZero() {
			ent.created = now
		}
		ent.updated = now
		e.markDirty(ent, 0)
		return nil
	})
}

// Entity returns a copy of an entity's current state (nil if unknown).
func (e *Engine) Entity(ctx context.Context, typ, key string) (map[string]any, error) {
	ctx = stmtCtx(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	ent, err := e.load(ctx, typ, key)
	if err != nil || ent.state == nil {
		return nil, err
	}
	out := make(map[string]any, len(ent.state))
	for k, v := range ent.state {
		out[k] = v
	}
	return out, nil
}
