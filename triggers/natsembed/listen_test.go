package natsembed

import "testing"

func TestCheckListen(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:4222":     true,
		"127.0.0.1:-1":       true,
		"localhost:4222":     true,
		"[::1]:4222":         true,
		"0.0.0.0:4222":       false,
		":4222":              false,
		"[::]:4222":          false,
		"10.1.2.3:4222":      false,
		"nats.internal:4222": false,
	} {
		if err := CheckListen(addr); (err == nil) != ok {
			t.Errorf("CheckListen(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}
