package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/proactived/proactived/engine/bench"
)

// cmdBench measures this machine: `proactived bench [--rules N] [--events M] …`.
// It needs nothing running: it embeds NATS and works in a temp directory.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", stderr)
	var o bench.Options
	journal := true
	asJSON := false
	fs.IntVar(&o.Rules, "rules", 1000, "number of generated rules")
	fs.IntVar(&o.Matching, "matching", 5, "rules per subject, i.e. evaluated for each event")
	fs.IntVar(&o.Events, "events", 500_000, "events in the throughput run")
	fs.IntVar(&o.Rate, "rate", 20_000, "fixed publish rate of one latency run (events/s; -1 skips it)")
	fs.DurationVar(&o.LatencyFor, "latency-for", 5*time.Second, "how long each latency run publishes")
	fs.IntVar(&o.Orders, "orders", 0, "order keys (default: min(4000, events/20))")
	fs.Float64Var(&o.FireShare, "fire-share", 0.4, "share of events that fire a rule, 0 < x ≤ 1 (with many --orders, 1 makes nearly every event a new notification: the outbox's write rate)")
	fs.IntVar(&o.Burst, "burst", 0, "events in the outbox run, in which nearly every event is a new notification (default: events/5; -1 skips it)")
	fs.IntVar(&o.Customers, "customers", 0, "customer keys (default: orders/4)")
	fs.IntVar(&o.Batch, "batch", 0, "intake.batch (default: the daemon's)")
	fs.IntVar(&o.CatchUpBatch, "catch-up-batch", 0, "intake.catch_up_batch (default: the daemon's)")
	fs.DurationVar(&o.MaxWait, "max-wait", 0, "intake.max_wait (default: the daemon's)")
	fs.IntVar(&o.EntityCache, "entity-cache", 0, "intake.entity_cache (default: the daemon's)")
	fs.BoolVar(&journal, "journal", true, "keep the per-event journal (intake.journal)")
	fs.BoolVar(&o.IDs, "ids", false, "publish every event with a Nats-Msg-Id, as producers that set event ids do (the engine records each id to drop redelivered copies)")
	fs.StringVar(&o.Dir, "dir", "", "work directory (default: a temporary one, removed after)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the engine run to FILE, and of the outbox burst to FILE.burst")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write the allocations of the engine run to FILE (and those before it to FILE.base: go tool pprof -sample_index=alloc_space -base FILE.base FILE)")
	fs.StringVar(&o.Trace, "trace", "", "write an execution trace of the engine draining the backlog to FILE (go tool trace)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&o.Embedded, "embedded", false, "with --memory: the daemon runs its own embedded NATS server (counted in its RSS)")
	memory := fs.Bool("memory", false, "instead: measure the daemon's own RSS (a child process) while it tracks --orders orders and --customers customers")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "proactived bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.FireShare <= 0 || o.FireShare > 1 {
		fmt.Fprintf(stderr, "proactived bench: --fire-share %g: want a share above 0 and at most 1\n", o.FireShare)
		return 2
	}
	o.Journal = &journal
	o.Progress = stderr
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *memory {
		return benchMemory(ctx, o, asJSON, stdout, stderr)
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "proactived bench: interrupted by a signal; no figures")
			return 1
		}
		fmt.Fprintln(stderr, "proactived bench:", err)
		return 1
	}
	return printReport(rep, asJSON, stdout, stderr)
}

// printReport prints a bench report as text or JSON.
func printReport(rep interface{ WriteText(io.Writer) error }, asJSON bool, stdout, stderr io.Writer) int {
	var err error
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "proactived bench:", err)
		return 1
	}
	return 0
}

// benchMemory runs `proactived bench --memory`.
func benchMemory(ctx context.Context, o bench.Options, asJSON bool, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "proactived bench:", err)
		return 1
	}
	rep, err := bench.RunRSS(ctx, o, exe)
	if err != nil {
		fmt.Fprintln(stderr, "proactived bench:", err)
		return 1
	}
	return printReport(rep, asJSON, stdout, stderr)
}
