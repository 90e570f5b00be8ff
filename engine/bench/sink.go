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
	// first and last are the arrival times of the first request and of the
	// latest request that brought a new notification.
	first, last time.Time
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: webhook sink: %w", err)
	}
	s := &sink{keys: map[string]int{}, url: "http://" + ln.Addr().String() + "/hook"}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	key := r.Header.Get("Idempotency-Key")
	now := time.Now()
	s.mu.Lock()
	s.reqs++
	if s.first.IsZero() {
		s.first = now
	}
	s.keys[key]++
	if s.keys[key] == 1 {
		s.last = now
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// count is the number of distinct notifications received.
func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// window is the delivery window so far and the distinct count in it.
func (s *sink) window() (first, last time.Time, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, s.last, len(s.keys)
}

// stats returns distinct notifications and repeated deliveries.
func (s *sink) stats() (distinct, repeats int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys), s.reqs - len(s.keys)
}

func (s *sink) close() { _ = s.srv.Close() }
