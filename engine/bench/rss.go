package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// RSSReport is what RunRSS measured. JSON field names are stable.
type RSSReport struct {
	Machine  Machine `json:"machine"`
	Load     string  `json:"load_before"`
	Entities int     `json:"entities"`
	Events   int     `json:"events"`
	Rules    int     `json:"rules"`
	// EngineRate is events/s through the daemon from its start (start-up
	// included) to its last commit.
	EngineRate float64 `json:"engine_events_per_sec"`
	// Embedded says the daemon ran its own NATS server (in its process,
	// so in its RSS); otherwise the server runs in the bench.
	Embedded bool `json:"embedded_nats"`
	// IDs: every event carried a Nats-Msg-Id (Options.IDs).
	IDs bool `json:"event_ids"`
	// PeakRSSMB and RSSMB are the daemon process's VmHWM and its VmRSS once
	// every entity was in.
	PeakRSSMB float64 `json:"daemon_peak_rss_mb"`
	RSSMB     float64 `json:"daemon_rss_mb"`
	// Stored is the number of entities in the daemon's database after it
	// stopped.
	Stored int `json:"entities_stored"`
}

// RunRSS measures the daemon's own memory while it tracks o.Orders orders
// and o.Customers customers: one customers.updated per customer and one
// orders.created per order are published to the bench's NATS server, and
// the daemon — exe run as a child process, so its memory is its own — takes
// them in. exe is this binary.
func RunRSS(ctx context.Context, o Options, exe string) (*RSSReport, error) {
	if o.Orders <= 0 {
		return nil, errors.New("bench: the memory run needs --orders")
	}
	o.Events = o.Orders + max(o.Customers, 1)
	o.defaults()
	rep := &RSSReport{Machine: machine(), Load: loadAvg(), Rules: o.Rules, IDs: o.IDs}
	r, done, err := newRunner(o)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	n := len(r.w.customers) + len(r.w.orders) // the world's boot events
	rep.Entities, rep.Events, rep.Embedded = n, n, o.Embedded
	publish := func() error {
		r.progress("publishing %d customers and %d orders", len(r.w.customers), len(r.w.orders))
		_, err := r.publish(ctx, n, 0)
		return err
	}
	cfgText := r.cfgText
	args := []string{"run", "--rules", r.cfg.Rules, "--data", r.cfg.Data, "--log-level", "warn"}
	var natsURL string
	if o.Embedded {
		// The daemon's own server, in its process: the bench publishes to it.
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		cfgText += fmt.Sprintf("nats: { listen: %q }\n", addr)
		natsURL = "nats://" + addr
	} else {
		if err := publish(); err != nil {
			return nil, err
		}
		args = append(args, "--nats", r.ns.ClientURL())
	}
	cfgPath := filepath.Join(r.dir, "proactived.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, append(args, "--config", cfgPath)...)
	cmd.Stdout, cmd.Stderr = r.o.Progress, r.o.Progress
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	r.progress("daemon: taking in %d events as a child process (%s run)", n, exe)
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start the daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			return errors.New("bench: the daemon did not stop within a minute")
		}
	}
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	if o.Embedded {
		if err := r.useDaemonNATS(ctx, natsURL, exited); err != nil {
			_ = stop()
			return nil, err
		}
		if err := publish(); err != nil {
			_ = stop()
			return nil, err
		}
	}
	dbPath := filepath.Join(r.cfg.Data, "proactived.db")
	var (
		db   *sql.DB
		last time.Time
	)
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	deadline := time.Now().Add(10*time.Minute + time.Duration(n)*time.Millisecond)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("bench: the daemon exited early: %v", err)
		case <-ctx.Done():
			_ = stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, errors.New("bench: the daemon did not take in every event in time")
		}
		if db == nil {
			if _, err := os.Stat(dbPath); err != nil {
				continue
			}
			var err error
			if db, err = sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=5000"); err != nil {
				_ = stop()
				return nil, fmt.Errorf("bench: %w", err)
			}
		}
		var v string
		if err := db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'last_seq'`).Scan(&v); err != nil {
			continue // not created yet
		}
		seq, _ := strconv.ParseUint(v, 10, 64)
		if seq >= uint64(n) {
			last = time.Now()
			break
		}
		if seq/100_000 != (seq-1)/100_000 {
			r.progress("daemon: %d/%d", seq, n)
		}
	}
	rep.EngineRate = float64(n) / last.Sub(started).Seconds()
	// Let write-back and the checkpointer settle, then read the figures.
	time.Sleep(3 * time.Second)
	rep.PeakRSSMB = procStatusMB(status, "VmHWM:")
	rep.RSSMB = procStatusMB(status, "VmRSS:")
	if err := stop(); err != nil {
		return nil, fmt.Errorf("bench: stop the daemon: %w", err)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM entities`).Scan(&rep.Stored); err != nil {
		return nil, fmt.Errorf("bench: count entities: %w", err)
	}
	return rep, nil
}

// WriteText prints the memory report.
func (rep *RSSReport) WriteText(w io.Writer) error {
	where := "engine and SQLite; the NATS server runs in the bench"
	if rep.Embedded {
		where = "engine, SQLite and the embedded NATS server with the stream"
	}
	_, err := fmt.Fprintf(w, `machine                %d CPU (%s), %d MB, %s
load (1/5/15 min)      %s before
workload               %d entities (one event each), %d rules, event ids %t
daemon                 %.0f events/s taking them in (from its start)
entities stored        %d
daemon RSS             peak %.0f MB, %.0f MB with every entity in (%s)
`, rep.Machine.CPUs, rep.Machine.Model, rep.Machine.MemMB, rep.Machine.GoVer+" "+rep.Machine.GOARCH, rep.Load, rep.Entities, rep.Rules, rep.IDs, rep.EngineRate, rep.Stored, rep.PeakRSSMB, rep.RSSMB, where)
	return err
}

// useDaemonNATS waits for the daemon's embedded server and its stream, and
// points the bench's publisher at it.
func (r *runner) useDaemonNATS(ctx context.Context, url string, exited <-chan error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("bench: the daemon exited early: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("bench: the daemon's NATS server and stream did not come up within a minute")
		}
		nc, js, err := r.dial(url)
		if err != nil {
			continue
		}
		if _, err := js.Stream(ctx, r.cfg.NATS.Stream); err != nil {
			nc.Close()
			continue
		}
		r.nc.Close()
		r.nc, r.js = nc, js
		return nil
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// processCPU is the CPU time this process used so far (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
