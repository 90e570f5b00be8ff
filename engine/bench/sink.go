package bench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// sink is the local webhook the notifications go to: it counts distinct
// idempotency keys and repeats, and when they arrived.
type sink struct {
	srv  *http.Server
	url  string
	mu   sync.Mutex
	keys map[string]int
	reqs int
	// last is when the latest new notification arrived.
	last time.Time
	// gate holds every request until it is closed (open), so the outbox
	// fills while the engine is measured and delivery is measured alone.
	// hold shuts it again for the outbox run.
	gate     chan struct{}
	openedAt time.Time // the first opening
	atOpen   int       // distinct notifications received before it
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: webhook sink: %w", err)
	}
	s := &sink{keys: map[string]int{}, url: "http://" + ln.Addr().String() + "/hook", gate: make(chan struct{})}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	select {
	case <-gate:
	case <-r.Context().Done():
		return
	}
	if r.Context().Err() != nil {
		return // the sender gave up while the gate was shut: not delivered
	}
	_, _ = io.Copy(io.Discard, r.Body)
	key := r.Header.Get("Idempotency-Key")
	now := time.Now()
	s.mu.Lock()
	s.reqs++
	s.keys[key]++
	if s.keys[key] == 1 {
		s.last = now
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// open lets requests through from now on.
func (s *sink) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
		return // open already
	default:
	}
	if s.openedAt.IsZero() {
		s.openedAt, s.atOpen = time.Now(), len(s.keys)
	}
	close(s.gate)
}

// hold shuts the gate again: requests wait until the next open.
func (s *sink) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
		s.gate = make(chan struct{})
	default:
	}
}

// drained is the delivery since the gate opened: notifications and the
// time from the opening to the last new one.
func (s *sink) drained() (n int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys) - s.atOpen, s.last.Sub(s.openedAt)
}

// count is the number of distinct notifications received.
func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// stats returns distinct notifications and repeated deliveries.
func (s *sink) stats() (distinct, repeats int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys), s.reqs - len(s.keys)
}

func (s *sink) close() {
	s.open()
	_ = s.srv.Close()
}
