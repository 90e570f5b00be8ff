// Package natstest starts a real NATS server with JetStream for tests, on a
// random loopback port with t.TempDir() storage, shut down in t.Cleanup.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/proactived/proactived/triggers/natsembed"
)

// Server is a running test server.
type Server struct {
	*server.Server
	URL string
}

// Run starts a server; it fails the test loudly if it cannot.
func Run(t testing.TB) *Server {
	t.Helper()
	s, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return &Server{Server: s, URL: s.ClientURL()}
}

// Connect opens a client connection closed in t.Cleanup.
func (s *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
