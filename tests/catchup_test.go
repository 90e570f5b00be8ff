package tests

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/daemon"
)

// commitSizes records the engine's transactions: events in each and the
// last stream sequence committed.
type commitSizes struct {
	mu    sync.Mutex
	sizes []int
	last  uint64
}

func (c *commitSizes) add(seq uint64, events int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if events > 0 {
		c.sizes = append(c.sizes, events)
	}
	c.last = max(c.last, seq)
}

func (c *commitSizes) snapshot() ([]int, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.sizes...), c.last
}

// TestBacklogIsTakenInCatchUpBatches: over a backlog (the daemon was down
// while events arrived) transactions grow past intake.batch up to
// intake.catch_up_batch — never beyond — and every event is applied once:
// each parcel that went late is notified exactly once.
func TestBacklogIsTakenInCatchUpBatches(t *testing.T) {
	// late stays under the shop's frequency cap (100 a day per customer).
	const parcels, late = 600, 90
	cs := &commitSizes{}
	e := startWith(t, testdata("shop"), shopConfig+"intake: { batch: 20, catch_up_batch: 300 }\n",
		func(o *daemon.Options) { o.OnCommit = cs.add })
	seedCustomers(e)
	waitFor(t, 10*time.Second, func() error {
		if _, last := cs.snapshot(); last < 2 {
			return fmt.Errorf("customers not committed yet (last seq %d)", last)
		}
		return nil
	})
	e.stop()
	cs.mu.Lock()
	cs.sizes = nil
	cs.mu.Unlock()

	// The backlog: parcels are created, then some go late and the others
	// get an ETA within their promise.
	for i := range parcels {
		e.publish("logistics.parcel.created", fmt.Sprintf(`{"parcel_ref":"p-%d","cust":"c-en","promised":"2026-11-20T18:00:00Z"}`, i), "")
	}
	for i := range parcels {
		eta := "2026-11-20T12:00:00Z"
		if i < late {
			eta = "2026-11-22T12:00:00Z"
		}
		e.publish("logistics.parcel.eta", fmt.Sprintf(`{"parcel_ref":"p-%d","eta":"%s"}`, i, eta), "")
	}
	want := uint64(2 + 2*parcels)
	e.boot()
	waitFor(t, 30*time.Second, func() error {
		if _, last := cs.snapshot(); last < want {
			return fmt.Errorf("committed up to seq %d of %d", last, want)
		}
		return nil
	})
	sizes, _ := cs.snapshot()
	total, biggest := 0, 0
	for _, n := range sizes {
		total += n
		biggest = max(biggest, n)
	}
	if total != 2*parcels {
		t.Errorf("transactions held %d events, want %d (each once)", total, 2*parcels)
	}
	if biggest <= 20 || biggest > 300 {
		t.Errorf("largest transaction over the backlog held %d events, want more than intake.batch (20) and at most intake.catch_up_batch (300); sizes %v", biggest, sizes)
	}
	waitFor(t, 30*time.Second, func() error {
		if n := len(e.sink.all()); n < late {
			return fmt.Errorf("%d of %d notifications", n, late)
		}
		return nil
	})
	seen := map[string]int{}
	for _, r := range e.sink.all() {
		if r.Doc.Rule == "parcel-late" {
			seen[r.Doc.Entity.Key]++
		}
	}
	if len(seen) != late {
		t.Errorf("%d parcels notified, want the %d late ones", len(seen), late)
	}
	for k, n := range seen {
		if i, _ := strconv.Atoi(strings.TrimPrefix(k, "p-")); i >= late {
			t.Errorf("parcel %s was on time and got notified", k)
		}
		if n != 1 {
			t.Errorf("parcel %s notified %d times", k, n)
		}
	}
}
