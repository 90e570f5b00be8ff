// Package jsintake feeds the engine from a JetStream stream: it creates or
// binds the stream over the subjects the rules need, consumes it with one
// durable pull consumer, hands the engine batches of decoded events and acks
// a batch only after the engine committed it. Bad events go to dead-letter
// subjects with the reason, and the loop carries on.
//
// Ack policy is AckAll: acking the last message of a batch acks the whole
// batch in one protocol message, which is what lets one consumer keep up
// with hundreds of thousands of events per second. Redelivered messages at
// or below the engine's committed stream sequence are acked and skipped.
package jsintake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/rules"
)

// Handler is the engine as the intake sees it.
type Handler interface {
	// Accept decodes-and-prepares one raw message; a rejection goes to the
	// dead-letter subject. The returned value is passed back in Commit.
	Accept(raw event.Raw) (any, *event.Rejection)
	// Commit applies a batch of accepted events durably and records upTo
	// as the committed stream position.
	Commit(ctx context.Context, batch []any, upTo uint64) error
	// LastSeq is the stream sequence of the last committed event.
	LastSeq() uint64
	// ResetSeq is called when the stream was recreated below LastSeq.
	ResetSeq(seq uint64)
	// Tick runs time-driven work; more = call again soon.
	Tick(ctx context.Context) (more bool, err error)
}

// Decoder is a Handler whose Accept comes in two steps. Decode depends on
// the message alone, so the intake runs it as each message is delivered,
// on the consumer's delivery goroutine: the next batch is decoded on the
// other core while the engine commits this one (decoding was a tenth of
// the engine goroutine's time per event). AcceptDecoded finishes Accept on
// the intake's goroutine; a retried batch is accepted afresh from the
// messages.
type Decoder interface {
	Decode(raw event.Raw) (any, *event.Rejection)
	AcceptDecoded(decoded any) (any, *event.Rejection)
}

// Rebuilder is a Handler that keeps state derived from the stream in memory
// before writing it (the engine's write-back): at start and after a failed
// commit it re-reads the retained events of a range.
type Rebuilder interface {
	// RebuildRange is the range (from, to] to read again; from >= to when
	// there is nothing to do.
	RebuildRange() (from, to uint64)
	Rebuild(ctx context.Context, raw event.Raw) error
	RebuildDone(ctx context.Context) error
}

// Options configure the intake.
type Options struct {
	Conn       *nats.Conn
	Stream     string
	Consumer   string
	Subjects   []string // what the rules need (already reduced)
	DeadPrefix string
	MaxBytes   int
	Batch      int
	// CatchUpBatch is the most events one transaction takes when that
	// many are already waiting (the engine is behind: a backlog after a
	// restart, a peak). Bigger transactions cost less per
	// event (fewer pages written per event); Batch stays the size for a
	// stream the engine keeps up with, where latency matters more.
	CatchUpBatch int
	// MaxWait is how long a batch may wait for more messages once none
	// is waiting (0: not at all; fill).
	MaxWait  time.Duration
	Replicas int
	MaxAge   time.Duration
	// TickEvery is how often Tick runs when events are flowing.
	TickEvery time.Duration
	Handler   Handler
	Logger    *slog.Logger
	Observer  Observer
}

// Observer counts what the intake did.
type Observer interface {
	Consumed(n int)
	DeadLettered(reason string)
	Pending(n uint64)
}

type nopObserver struct{}

func (nopObserver) Consumed(int)        {}
func (nopObserver) DeadLettered(string) {}
func (nopObserver) Pending(uint64)      {}

// Intake is a running consumer.
type Intake struct {
	o      Options
	js     jetstream.JetStream
	log    *slog.Logger
	bound  atomic.Bool
	stream jetstream.Stream
	// cons is set by Run and read by Pending from the metrics sampler.
	cons atomic.Pointer[jetstream.Consumer]
	// storeOK is false while commits fail (readiness).
	storeOK atomic.Bool
	// dec is the handler as a Decoder (nil if it is not one): deliveries
	// are then decoded as they arrive.
	dec Decoder
	// behind and lastAt: the watermark last told to a Watermarker (only
	// Run's goroutine touches them).
	behind bool
	lastAt time.Time
}

// managedKey marks streams proactived created, whose subjects it may update.
const managedKey = "managed-by"

// New validates options; it does no I/O.
func New(o Options) (*Intake, error) {
	if o.Conn == nil || o.Handler == nil {
		return nil, errors.New("intake: nats connection and handler are required")
	}
	if o.Stream == "" || o.Consumer == "" {
		return nil, errors.New("intake: stream and consumer names are required")
	}
	if o.Batch <= 0 {
		o.Batch = 512
	}
	if o.CatchUpBatch < o.Batch {
		o.CatchUpBatch = o.Batch
	}
	if o.TickEvery <= 0 {
		o.TickEvery = 250 * time.Millisecond
	}
	if o.DeadPrefix == "" {
		o.DeadPrefix = "proactive.dead"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("intake: %w", err)
	}
	in := &Intake{o: o, js: js, log: o.Logger.With("component", "intake")}
	in.dec, _ = o.Handler.(Decoder)
	in.storeOK.Store(true)
	return in, nil
}

// Ready says why the intake is not consuming (nil when it is): the
// consumer is not bound yet, or the last batch's commit failed.
func (in *Intake) Ready() error {
	switch {
	case !in.bound.Load():
		return errors.New("consumer not bound (binding the stream, rebuilding entity state, or consuming again)")
	case !in.storeOK.Load():
		return errors.New("the last batch's commit failed; retrying it")
	}
	return nil
}

// EnsureStream creates the stream if missing, or binds it. A stream that
// proactived created gets its subjects updated to what the rules need; one
// that ops made is used as it is, and subjects it lacks are an error.
func (in *Intake) EnsureStream(ctx context.Context, subjects []string) error {
	s, err := in.js.Stream(ctx, in.o.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		cfg := jetstream.StreamConfig{
			Name:        in.o.Stream,
			Description: "events captured by proactived",
			Subjects:    subjects,
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      in.o.MaxAge,
			Replicas:    max(1, in.o.Replicas),
			Duplicates:  2 * time.Minute,
			Metadata:    map[string]string{managedKey: "proactived"},
		}
		s, err = in.js.CreateStream(ctx, cfg)
		if err != nil {
			return refused(fmt.Errorf("create stream %s on %s: %w", in.o.Stream, strings.Join(subjects, ", "), err))
		}
		in.log.Info("created stream", "stream", in.o.Stream, "subjects", subjects)
	case err != nil:
		return fmt.Errorf("bind stream %s: %w", in.o.Stream, err)
	default:
		info := s.CachedInfo()
		if info.Config.Metadata[managedKey] == "proactived" {
			if !slices.Equal(sorted(info.Config.Subjects), sorted(subjects)) {
				cfg := info.Config
				cfg.Subjects = subjects
				if s, err = in.js.UpdateStream(ctx, cfg); err != nil {
					return refused(fmt.Errorf("update stream %s subjects to %s: %w", in.o.Stream, strings.Join(subjects, ", "), err))
				}
				in.log.Info("updated stream subjects", "stream", in.o.Stream, "subjects", subjects)
			}
		} else if missing := Uncovered(subjects, info.Config.Subjects); len(missing) > 0 {
			return ConfigError{fmt.Errorf("stream %s (not created by proactived) lacks subjects the rules need: %s (it has: %s); add them to the stream, or delete it and let proactived create it",
				in.o.Stream, strings.Join(missing, ", "), strings.Join(info.Config.Subjects, ", "))}
		}
	}
	in.stream = s
	in.ensureDeadStream(ctx)
	return nil
}

// ConfigError is a stream set-up the broker refused, or a stream that does
// not fit the rules: waiting for the broker cannot fix it.
type ConfigError struct{ error }

func (e ConfigError) Unwrap() error { return e.error }

// refused marks err a ConfigError if the broker answered it with an API
// error, except "unavailable" (503): JetStream comes up a moment after the
// server, and a request then is answered so.
func refused(err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.Code != 503 {
		return ConfigError{err}
	}
	return err
}

// ensureDeadStream keeps dead letters for a week, so a rejected event is
// never lost even when nobody listens on the dead-letter subjects.
func (in *Intake) ensureDeadStream(ctx context.Context) {
	name := in.o.Stream + "_DEAD"
	if _, err := in.js.Stream(ctx, name); err == nil {
		return
	}
	_, err := in.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{in.o.DeadPrefix + ".>"}, Storage: jetstream.FileStorage,
		MaxAge: 7 * 24 * time.Hour, Replicas: max(1, in.o.Replicas),
		Metadata: map[string]string{managedKey: "proactived"},
	})
	if err != nil {
		in.log.Warn("could not create dead-letter stream; dead letters are published without retention", "stream", name, "err", err)
	}
}

// Uncovered lists the needed subjects no stream subject covers.
func Uncovered(need, have []string) []string {
	var out []string
	for _, n := range need {
		ok := false
		for _, h := range have {
			if rules.Covers(h, n) {
				ok = true
				break
			}
		}
		if !ok {
			out = append(out, n)
		}
	}
	return out
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// Run consumes until ctx ends. It returns after the in-flight batch is
// committed and acked.
func (in *Intake) Run(ctx context.Context) error {
	sub, err := in.start(ctx)
	if err != nil || sub == nil {
		return err // a ConfigError, or ctx ended
	}
	defer func() { sub.stop() }()
	in.bound.Store(true)
	defer in.bound.Store(false)
	in.settleWatermark(ctx)
	in.log.Info("consuming", "stream", in.o.Stream, "consumer", in.o.Consumer, "subjects", in.o.Subjects, "from_seq", in.o.Handler.LastSeq()+1)

	tick := time.NewTicker(in.o.TickEvery)
	defer tick.Stop()
	lastTick := time.Now()
	batch := make([]delivery, 0, in.o.CatchUpBatch)
	backoff := time.Duration(0)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m := <-sub.msgs:
			batch = append(batch, m)
			batch = in.fill(ctx, sub.msgs, batch)
			batch = in.catchUp(sub.msgs, batch)
		case <-tick.C:
		case <-sub.broken:
		}
		var gap bool
		batch, gap = sub.cut(batch)
		select {
		case <-sub.broken:
			// What was delivered before is handled; nothing follows it.
			gap = len(sub.msgs) == 0 || gap
		default:
		}
		if len(batch) > 0 {
			for retry := false; ; retry = true {
				err := in.handle(ctx, batch, retry)
				if err == nil {
					in.storeOK.Store(true)
					backoff = 0
					in.watermark(batch, len(sub.msgs))
					break
				}
				// The store refused the batch: nothing is acked, readiness
				// drops, and the same batch is retried with backoff so no
				// event is lost or reordered.
				in.storeOK.Store(false)
				backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
				in.log.Error("commit failed; retrying the batch", "events", len(batch), "in", backoff.String(), "err", err)
				for _, d := range batch {
					_ = d.m.InProgress()
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				// The failed commit dropped the state it had in memory:
				// no event is evaluated before it is whole again.
				if !in.retry(ctx, "rebuild entity state", func() error { return in.rebuild(ctx) }) {
					return nil
				}
			}
		}
		if gap {
			// Deliveries were lost on the way (the connection broke after
			// the server sent them). The server counts them as delivered
			// and acking anything after them would ack them too, so start
			// over from the committed position on a new consumer.
			in.log.Warn("missed deliveries from the stream; consuming again from the committed position", "from_seq", in.o.Handler.LastSeq()+1)
			sub.stop()
			in.bound.Store(false)
			next, err := in.resubscribe(ctx)
			if err != nil {
				return nil // ctx ended
			}
			sub = next
			in.bound.Store(true)
		}
		// (Not while disconnected: the question would wait out its timeout.)
		if len(batch) == 0 && len(sub.msgs) == 0 && in.behind && in.o.Conn.IsConnected() {
			in.settleWatermark(ctx)
		}
		in.cutOff()
		if time.Since(lastTick) >= in.o.TickEvery || len(batch) == 0 {
			lastTick = time.Now()
			for i := 0; i < 50; i++ {
				more, err := in.o.Handler.Tick(ctx)
				if err != nil {
					in.log.Error("tick", "err", err)
					break
				}
				if !more || len(sub.msgs) > 0 {
					break
				}
			}
		}
	}
}

// Watermarker is a Handler that wants to know how far behind the stream
// it is: time-driven work (deadlines, hold-downs, schedules, deferred
// notifications) must not act on an instant whose events it has not
// applied yet. Watermark(at, false) says every event stored up to at is
// applied and later ones wait; Watermark(_, true) says nothing waits.
type Watermarker interface {
	Watermark(at time.Time, caughtUp bool)
}

// delivery is a message as the consumer delivered it: its metadata parsed
// once, and, if the handler is a Decoder, Decode's answer (for every
// message with metadata that is not a dead letter).
type delivery struct {
	m   jetstream.Msg
	md  *jetstream.MsgMetadata // nil if the metadata could not be parsed
	dec any
	rej *event.Rejection
}

// subscription is one consumer (re)created by subscribe and the messages
// it delivered.
type subscription struct {
	cc     jetstream.ConsumeContext
	msgs   chan delivery
	cancel context.CancelFunc
	once   sync.Once
	// next is the delivery expected next: the consumer numbers its
	// deliveries (redeliveries included) 1, 2, 3…
	next uint64
	// broken is closed when the server says the consumer is gone (deleted
	// by an operator, lost by the broker): nothing more will come on it.
	broken    chan struct{}
	breakOnce sync.Once
	checking  atomic.Bool // a checkConsumer is running
}

// checkConsumer marks sub gone if the server no longer knows its consumer.
// One check at a time: errors come in bursts.
func (in *Intake) checkConsumer(ctx context.Context, sub *subscription, cons jetstream.Consumer) {
	if !sub.checking.CompareAndSwap(false, true) {
		return
	}
	defer sub.checking.Store(false)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cons.Info(ictx); err != nil {
		in.consumerGone(sub, err)
	}
}

// consumerGone ends sub if err means its consumer will deliver nothing
// more, and says so once (the error handler and a check may both see it).
func (in *Intake) consumerGone(sub *subscription, err error) bool {
	if !errors.Is(err, jetstream.ErrConsumerDeleted) && !errors.Is(err, jetstream.ErrConsumerNotFound) &&
		!errors.Is(err, jetstream.ErrStreamNotFound) {
		return false
	}
	sub.breakOnce.Do(func() {
		in.log.Warn("the consumer is gone; consuming again from the committed position", "err", err)
		close(sub.broken)
	})
	return true
}

func (s *subscription) stop() {
	s.once.Do(func() {
		s.cancel()
		s.cc.Stop()
	})
}

// cut returns the messages of batch before the first delivery that skips a
// number, and whether one did. A message after a lost delivery must not be
// processed on this consumer: its AckAll would ack the lost one too.
func (s *subscription) cut(batch []delivery) ([]delivery, bool) {
	for i, dl := range batch {
		md := dl.md
		if md == nil {
			continue
		}
		d := md.Sequence.Consumer
		if d > s.next {
			return batch[:i], true
		}
		// d < next too: a restarted server may restore an older numbering.
		s.next = d + 1
	}
	return batch, false
}

// start sets the intake up (setUp) and retries with backoff until the
// broker answers, readiness false meanwhile: a daemon started before its
// broker, or restarted while the broker is down, waits for it. Only a
// ConfigError ends it (nil, nil: ctx ended).
func (in *Intake) start(ctx context.Context) (*subscription, error) {
	var sub *subscription
	var cfgErr error
	if !in.retry(ctx, "cannot consume yet", func() (err error) {
		sub, err = in.setUp(ctx)
		if errors.As(err, new(ConfigError)) {
			cfgErr, err = err, nil
		}
		return err
	}) {
		return nil, nil
	}
	return sub, cfgErr
}

// resubscribe sets the intake up again from the committed position until
// it works or ctx ends (the broker may still be coming back; the stream
// may have been deleted with the consumer).
func (in *Intake) resubscribe(ctx context.Context) (*subscription, error) {
	var sub *subscription
	if !in.retry(ctx, "could not consume again", func() (err error) {
		sub, err = in.setUp(ctx)
		return err
	}) {
		return nil, ctx.Err()
	}
	return sub, nil
}

// setUp makes sure the stream exists (created again if it was deleted),
// notices one that was recreated, merges again what the last run left
// unwritten (resumable: a retry skips the events already merged; nothing
// to do mid-run) and subscribes.
func (in *Intake) setUp(ctx context.Context) (*subscription, error) {
	if in.stream == nil {
		if err := in.EnsureStream(ctx, in.o.Subjects); err != nil {
			return nil, err
		}
	}
	if err := in.checkPosition(ctx); err != nil {
		return nil, err
	}
	if err := in.rebuild(ctx); err != nil {
		return nil, err
	}
	return in.subscribe(ctx)
}

// retry runs f until it returns nil, with backoff from 100 ms to 5 s, and
// logs each failure with what; false if ctx ended first.
func (in *Intake) retry(ctx context.Context, what string, f func() error) bool {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := f()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		in.log.Warn(what+"; retrying", "in", backoff.String(), "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
	}
}

// subscribe creates the durable consumer from the event after the
// committed position and starts consuming it. The committed position in
// SQLite is the source of truth: the consumer is recreated at every start
// (and after lost deliveries) to deliver from there, in order. (Resuming
// the old consumer would wait out the ack deadline of whatever was in
// flight, and with AckAll a later ack could cover events that were never
// committed.)
func (in *Intake) subscribe(ctx context.Context) (*subscription, error) {
	if err := in.js.DeleteConsumer(ctx, in.o.Stream, in.o.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			in.stream = nil // deleted: the next try creates it
		}
		return nil, fmt.Errorf("reset consumer %s: %w", in.o.Consumer, err)
	}
	buffered, maxAckPending := Flow(in.o.Batch, in.o.CatchUpBatch)
	ccfg := jetstream.ConsumerConfig{
		Durable:       in.o.Consumer,
		Description:   "proactived engine",
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
	}
	if last := in.o.Handler.LastSeq(); last > 0 {
		ccfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		ccfg.OptStartSeq = last + 1
	}
	cons, err := in.js.CreateConsumer(ctx, in.o.Stream, ccfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", in.o.Consumer, in.o.Stream, err)
	}
	in.cons.Store(&cons)
	sub := &subscription{msgs: make(chan delivery, buffered), next: 1, broken: make(chan struct{})}
	msgs := sub.msgs
	sctx, cancel := context.WithCancel(ctx)
	sub.cancel = cancel
	cc, err := cons.Consume(func(m jetstream.Msg) {
		d := delivery{m: m}
		if md, err := m.Metadata(); err == nil {
			d.md = md
			if in.dec != nil && !in.isDeadLetter(m) {
				d.dec, d.rej = in.dec.Decode(RawOf(m, md))
			}
		}
		select {
		case msgs <- d:
		case <-sctx.Done():
		}
	}, jetstream.PullMaxMessages(buffered), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if in.consumerGone(sub, err) {
			return
		}
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoHeartbeat) {
			// A broker that restarted without the consumer (its state
			// lost) says only this: ask whether the consumer still exists.
			go in.checkConsumer(sctx, sub, cons)
		}
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			in.log.Warn("consume", "err", err)
		}
	}))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("consume %s: %w", in.o.Stream, err)
	}
	sub.cc = cc
	return sub, nil
}

// Flow sizes a consumer of batches of batch events that grow to catchUp
// over a backlog: how many messages it buffers (the pull size) and its
// max ack pending. The buffer holds a whole catch-up batch beyond the
// batch being filled, so "a catch-up batch is waiting" can be seen before
// the buffer is full.
func Flow(batch, catchUp int) (buffered, maxAckPending int) {
	buffered = 2 * batch
	if catchUp > batch {
		buffered = catchUp + batch
	}
	return buffered, 4 * max(2*batch, catchUp)
}

// lingerGap is how long fill waits for one more message once none is
// waiting. Under load messages arrive microseconds apart, so batches still
// fill up; a quiet stream is not held back for the whole MaxWait (which
// cost its events up to 20 ms of latency each, for no throughput gain).
const lingerGap = time.Millisecond

// fill gathers more messages for the batch: it stops when the batch is
// full, when no message came for lingerGap, or after MaxWait in all.
//
// With MaxWait 0 (the default) it takes only what is already waiting: a
// batch is what arrived while the engine handled the one before, so it
// grows with the load by itself and an event never waits for others to
// come. Lingering for more cost each event of a steady 10,000 events/s
// stream ~8 ms at the median (p50 10–11 ms against 3.0–3.3 ms without;
// BENCHMARKS.md, tenth round) for fewer, bigger transactions the engine
// did not need at that rate.
func (in *Intake) fill(ctx context.Context, msgs <-chan delivery, batch []delivery) []delivery {
	deadline := time.Now().Add(in.o.MaxWait)
	var idle *time.Timer
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	for len(batch) < in.o.Batch {
		select {
		case m := <-msgs:
			batch = append(batch, m)
			continue
		default:
		}
		wait := min(lingerGap, time.Until(deadline))
		if wait <= 0 {
			return batch
		}
		if idle == nil {
			idle = time.NewTimer(wait)
		} else {
			idle.Reset(wait)
		}
		select {
		case m := <-msgs:
			batch = append(batch, m)
		case <-idle.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// catchUp grows a full batch to CatchUpBatch when that many messages are
// already waiting, without waiting for more: only a real backlog makes a
// transaction bigger than Batch. (Growing on any queue at all made a
// stream near the engine's capacity run in big batches after every
// short stall, each event waiting for its whole batch: p50 latency 12 →
// 120 ms at 6,000 events/s in the bench.)
func (in *Intake) catchUp(msgs <-chan delivery, batch []delivery) []delivery {
	if len(batch) < in.o.Batch || len(batch)+len(msgs) < in.o.CatchUpBatch {
		return batch
	}
	for len(batch) < in.o.CatchUpBatch {
		select {
		case m := <-msgs:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// handle decodes a batch, dead-letters the bad, commits the good and acks.
// A retry accepts every message afresh instead of reusing what was decoded
// on delivery: the failed attempt may have changed decoded events.
func (in *Intake) handle(ctx context.Context, batch []delivery, retry bool) error {
	accepted := make([]any, 0, len(batch))
	last := in.o.Handler.LastSeq()
	upTo := last
	for _, d := range batch {
		m, md := d.m, d.md
		if md == nil {
			continue
		}
		upTo = max(upTo, md.Sequence.Stream)
		if md.Sequence.Stream <= last {
			continue // already committed: acked below with the batch
		}
		if in.isDeadLetter(m) {
			continue
		}
		var p any
		var rej *event.Rejection
		switch {
		case in.dec == nil || retry:
			p, rej = in.o.Handler.Accept(RawOf(m, md))
		case d.rej != nil:
			rej = d.rej
		default:
			p, rej = in.dec.AcceptDecoded(d.dec)
		}
		if rej != nil {
			if err := in.deadLetter(ctx, m, rej); err != nil {
				return err
			}
			continue
		}
		accepted = append(accepted, p)
	}
	if err := in.o.Handler.Commit(ctx, accepted, upTo); err != nil {
		return err
	}
	// AckAll: the last message acks the batch. Ack is fire-and-forget; if
	// it is lost the batch is redelivered and skipped by sequence.
	if err := batch[len(batch)-1].m.Ack(); err != nil {
		in.log.Warn("ack", "err", err)
	}
	in.o.Observer.Consumed(len(batch))
	return nil
}

// isDeadLetter says m is on the dead-letter subjects (which the stream
// may hold too): never processed.
func (in *Intake) isDeadLetter(m jetstream.Msg) bool {
	return strings.HasPrefix(m.Subject(), in.o.DeadPrefix+".")
}

func (in *Intake) deadLetter(ctx context.Context, m jetstream.Msg, rej *event.Rejection) error {
	msg := nats.NewMsg(in.o.DeadPrefix + "." + rej.Reason)
	msg.Data = m.Data()
	msg.Header.Set("Proactive-Error", rej.Msg)
	msg.Header.Set("Proactive-Subject", m.Subject())
	if id := m.Headers().Get(jetstream.MsgIDHeader); id != "" {
		msg.Header.Set("Proactive-Msg-Id", id)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := in.js.PublishMsg(pctx, msg); err != nil {
		if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("dead-letter %s: %w", msg.Subject, err)
		}
		if err := in.o.Conn.PublishMsg(msg); err != nil {
			return fmt.Errorf("dead-letter %s: %w", msg.Subject, err)
		}
	}
	in.o.Observer.DeadLettered(rej.Reason)
	in.log.Warn("dead-lettered event", "subject", m.Subject(), "reason", rej.Reason, "err", rej.Msg)
	return nil
}

// rebuild feeds the handler the retained events it must merge again.
func (in *Intake) rebuild(ctx context.Context) error {
	rb, ok := in.o.Handler.(Rebuilder)
	if !ok {
		return nil
	}
	from, to := rb.RebuildRange()
	if from >= to {
		return nil
	}
	began := time.Now()
	info, err := in.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("rebuild: stream info: %w", err)
	}
	start := from + 1
	if first := info.State.FirstSeq; first > start {
		in.log.Error("entity state cannot be fully rebuilt: the stream no longer keeps the events it needs",
			"stream", in.o.Stream, "need_from_seq", start, "stream_first_seq", first)
		start = first
	}
	n := 0
	if start <= to && info.State.Msgs > 0 {
		cons, err := in.js.OrderedConsumer(ctx, in.o.Stream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
			InactiveThreshold: time.Minute, // named by the client: a fixed prefix would clash with the last run's
		})
		if err != nil {
			return fmt.Errorf("rebuild: read stream %s: %w", in.o.Stream, err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(1024))
		if err != nil {
			return fmt.Errorf("rebuild: read stream %s: %w", in.o.Stream, err)
		}
		defer it.Stop()
		for {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m, err := it.Next(jetstream.NextContext(wctx))
			cancel()
			if err != nil {
				return fmt.Errorf("rebuild: read stream %s after %d events: %w", in.o.Stream, n, err)
			}
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			seq := md.Sequence.Stream
			if seq > to {
				break
			}
			if !in.isDeadLetter(m) {
				if err := rb.Rebuild(ctx, RawOf(m, md)); err != nil {
					return err
				}
				n++
			}
			if seq >= to || md.NumPending == 0 {
				break
			}
		}
	}
	if err := rb.RebuildDone(ctx); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	in.log.Info("rebuilt entity state from the stream", "events", n, "from_seq", start, "to_seq", to, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// checkPosition notices a stream that was recreated (its last sequence is
// below what we committed) and starts over from its beginning.
func (in *Intake) checkPosition(ctx context.Context) error {
	info, err := in.stream.Info(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			in.stream = nil // deleted meanwhile: the next try creates it
		}
		return fmt.Errorf("stream info: %w", err)
	}
	if last := in.o.Handler.LastSeq(); info.State.LastSeq < last {
		in.log.Warn("stream is behind the committed position; it was recreated — starting from its first event",
			"stream", in.o.Stream, "committed", last, "stream_last", info.State.LastSeq)
		in.o.Handler.ResetSeq(0)
	}
	return nil
}

// watermark tells a Watermarker how far the committed batch reached:
// caught up when its last message had nothing pending behind it and no
// delivered message waits in the buffer, else behind at that message's
// stream time.
func (in *Intake) watermark(batch []delivery, buffered int) {
	w, ok := in.o.Handler.(Watermarker)
	if !ok || len(batch) == 0 {
		return
	}
	md := batch[len(batch)-1].md
	if md == nil {
		return
	}
	in.behind = md.NumPending > 0 || buffered > 0
	in.lastAt = md.Timestamp
	w.Watermark(md.Timestamp, !in.behind)
}

// settleWatermark asks the server whether events wait for the consumer
// and tells a Watermarker: caught up when none do, else behind at the
// last event applied (none yet at the start: nothing is due until the
// first batch). Run calls it when it binds, so a restart onto a backlog
// does not fire a deadline whose cancelling event is in that backlog, and
// on a tick with nothing delivered while behind (messages the stream's
// limits deleted never come). If the server cannot say, it stays behind.
func (in *Intake) settleWatermark(ctx context.Context) {
	w, ok := in.o.Handler.(Watermarker)
	if !ok {
		return
	}
	// Caught up: nothing left to deliver, and nothing delivered that is
	// not applied yet (still on its way to this goroutine).
	info, err := in.consumerInfo(ctx)
	in.behind = err != nil || info.NumPending > 0 || info.NumAckPending > 0
	w.Watermark(in.lastAt, !in.behind)
}

// cutOff holds time-driven work at the last applied event's time while
// the broker cannot be reached: producers may go on publishing to it (a
// partition between the daemon and the broker), and a deadline must not
// fire for want of an event that is waiting in the stream. The next
// settleWatermark after the connection is back says when it caught up.
func (in *Intake) cutOff() {
	if in.o.Conn.IsConnected() || in.behind {
		return
	}
	in.behind = true
	if w, ok := in.o.Handler.(Watermarker); ok {
		w.Watermark(in.lastAt, false)
	}
}

// Pending reports the consumer's backlog, for metrics and status.
func (in *Intake) Pending(ctx context.Context) (uint64, error) {
	info, err := in.consumerInfo(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending, nil
}

// consumerInfo asks the server about the consumer (and tells the observer
// how many events wait).
func (in *Intake) consumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	cons := in.cons.Load()
	if cons == nil {
		return nil, errors.New("not consuming")
	}
	info, err := (*cons).Info(ctx)
	if err != nil {
		return nil, err
	}
	in.o.Observer.Pending(info.NumPending)
	return info, nil
}

// RawOf is a stream message as the decoder takes it: body, stream position
// and time, Nats-Msg-Id, and CloudEvents binary-mode (ce-*) headers.
func RawOf(m jetstream.Msg, md *jetstream.MsgMetadata) event.Raw {
	raw := event.Raw{Subject: m.Subject(), Body: m.Data(), Seq: md.Sequence.Stream, Time: md.Timestamp}
	if h := m.Headers(); h != nil {
		raw.MsgID = h.Get(jetstream.MsgIDHeader)
		// CloudEvents binary content mode (NATS protocol binding).
		if v := h.Get("ce-specversion"); v != "" {
			raw.CE = &event.CEHeaders{SpecVersion: v, ID: h.Get("ce-id"), Type: h.Get("ce-type"), Time: h.Get("ce-time"), Source: h.Get("ce-source")}
		}
	}
	return raw
}
