package simulate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSTarget publishes the stream to JetStream, where a running daemon
// consumes it, and answers Notified from that daemon's store. Time is the
// daemon's own (the wall clock): simulated times only order the stream,
// and Pace may space it out.
type NATSTarget struct {
	JS jetstream.JetStream
	// DB reads the daemon's store (its read-only pool, or the file opened
	// read-only).
	DB *sql.DB
	// EntityType is the entity orders are (default "order").
	EntityType string
	// InformedBy lists the rules whose notifications tell a customer about
	// a delay; empty = a notification of any rule.
	InformedBy []string
	// Pace, when set, is called before each event with its simulated
	// time, e.g. to sleep so that the stream runs at N events a second.
	Pace func(ctx context.Context, at time.Time) error
	// CatchUp bounds how long Notified waits for the daemon to process
	// what was published and deliver what it decided (default 30s).
	CatchUp time.Duration
	// Uncaptured counts events no stream took (their subject is used by
	// no rule or entity of the daemon).
	Uncaptured int

	lastSeq uint64
}

// Advance paces the stream; the daemon keeps its own time.
func (t *NATSTarget) Advance(ctx context.Context, at time.Time) error {
	if t.Pace == nil {
		return nil
	}
	return t.Pace(ctx, at)
}

// Publish sends the event with its id as Nats-Msg-Id.
func (t *NATSTarget) Publish(ctx context.Context, ev Event) error {
	body, err := ev.JSON()
	if err != nil {
		return err
	}
	m := nats.NewMsg(ev.Subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	ack, err := t.JS.PublishMsg(ctx, m)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		// No stream captures the subject: no rule or entity of the daemon
		// uses it (the rule set has no stock-out rule, say). Nothing
		// would read it; the rest of the stream goes on.
		t.Uncaptured++
		return nil
	}
	if err != nil {
		return fmt.Errorf("simulate: publish %s %s: %w", ev.Subject, ev.ID, err)
	}
	t.lastSeq = max(t.lastSeq, ack.Sequence)
	return nil
}

// Notified waits until the daemon has committed everything published so
// far and has no notification about the order still on its way, then
// says whether one was delivered.
func (t *NATSTarget) Notified(ctx context.Context, orderID string, _ time.Time) (bool, error) {
	typ := t.EntityType
	if typ == "" {
		typ = "order"
	}
	wait := t.CatchUp
	if wait <= 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := t.caughtUp(ctx, typ, orderID)
		if err != nil {
			return false, err
		}
		if done {
			return DeliveredBefore(ctx, t.DB, typ, orderID, time.Now().Add(24*time.Hour), t.InformedBy)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("simulate: the daemon did not process stream sequence %d and deliver %s:%s within %s: %w", t.lastSeq, typ, orderID, wait, ctx.Err())
		case <-tick.C:
		}
	}
}

func (t *NATSTarget) caughtUp(ctx context.Context, typ, key string) (bool, error) {
	var v string
	err := t.DB.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'last_seq'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("simulate: read consumer position: %w", err)
	}
	if seq, _ := strconv.ParseUint(v, 10, 64); seq < t.lastSeq {
		return false, nil
	}
	var inFlight int
	if err := t.DB.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE etype = ? AND ekey = ? AND status IN ('pending', 'sending', 'retry')`, typ, key).Scan(&inFlight); err != nil {
		return false, fmt.Errorf("simulate: read outbox: %w", err)
	}
	return inFlight == 0, nil
}
