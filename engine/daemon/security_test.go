package daemon_test

import (
	"strings"
	"testing"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
)

// TestNewRefusesUnprotectedListeners: the daemon does not start an
// unauthenticated listener beyond loopback (docs/security.md): not the
// HTTP API without http.token, not the embedded NATS server at all.
func TestNewRefusesUnprotectedListeners(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*config.Config)
		want string // "" = accepted
	}{
		{"defaults", func(*config.Config) {}, ""},
		{"http beyond loopback", func(c *config.Config) { c.HTTP.Addr = "0.0.0.0:8080" }, "set http.token"},
		{"http beyond loopback with a token", func(c *config.Config) { c.HTTP.Addr = "0.0.0.0:8080"; c.HTTP.Token = "t0k" }, ""},
		{"embedded nats beyond loopback", func(c *config.Config) { c.NATS.Listen = "0.0.0.0:4222" }, "embedded NATS server has no authentication"},
		{"embedded nats beyond loopback despite a token", func(c *config.Config) { c.NATS.Listen = ":4222"; c.HTTP.Token = "t0k" }, "embedded NATS server has no authentication"},
		{"external nats", func(c *config.Config) { c.NATS.Listen = "0.0.0.0:4222"; c.NATS.URL = "nats://nats.internal:4222" }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Default()
			c.set(cfg)
			_, err := daemon.New(daemon.Options{Config: cfg})
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "t0k") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}
