// Package natsembed runs the NATS server (with JetStream) inside the
// daemon's process, so `proactived run` works with no broker installed.
// Tests use the same code on a random port with t.TempDir() storage.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures the embedded server.
type Options struct {
	// Listen is host:port; port 0 or -1 picks a free port.
	Listen string
	// StoreDir holds JetStream data.
	StoreDir string
}

// Start runs an embedded NATS server with JetStream and waits until it
// accepts connections.
func Start(o Options) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: bad port: %w", o.Listen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: empty store dir")
	}
	opts := &server.Options{
		ServerName: "proactived-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// Events can be up to max_event_bytes (1 MiB by default) plus headers.
		MaxPayload: 8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s after 10s", o.Listen)
	}
	return s, nil
}
