package tests

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/daemon"
)

// TestStopClosesHeldRequests: a client that holds a request open (here
// half its header, sent and never finished) does not keep the daemon from
// stopping. Stop waits the HTTP grace period, closes the connection, says
// so in the log and returns no error.
func TestStopClosesHeldRequests(t *testing.T) {
	const grace = 300 * time.Millisecond
	e := startWith(t, testdata("shop"), shopConfig, func(o *daemon.Options) { o.HTTPGrace = grace })
	conn, err := net.Dial("tcp", e.d.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\nHost: proactived\r\n")); err != nil {
		t.Fatal(err)
	}
	// The server has read the partial header once the connection counts
	// as active; give it a moment, then stop.
	time.Sleep(100 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	if err := e.d.Stop(ctx); err != nil {
		t.Fatalf("stop with a held request: %v", err)
	}
	took := time.Since(began)
	e.d = nil
	// Well below the server's 10 s header timeout: the grace period, not
	// the client, bounded the stop.
	if took > 5*time.Second {
		t.Fatalf("stop took %v with a %v grace period", took, grace)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err == nil {
		t.Fatalf("the held connection is still open after stop (read %q)", buf[:n])
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the held connection was not closed by stop")
	}
	if !strings.Contains(e.logs.String(), "HTTP requests still open at stop") {
		t.Fatalf("stop did not say it closed open requests; log:\n%s", e.logs.String())
	}
}
