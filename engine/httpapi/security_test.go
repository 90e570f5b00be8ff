package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The claims of docs/security.md about the HTTP surface.

func TestCheckListenRefusesNonLoopbackWithoutToken(t *testing.T) {
	for _, c := range []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:8080", "", true},
		{"127.0.0.2:8080", "", true}, // all of 127/8 is loopback
		{"[::1]:8080", "", true},
		{"localhost:8080", "", true},
		{"", "", true},    // HTTP off
		{"off", "", true}, // HTTP off
		{"0.0.0.0:8080", "", false},
		{":8080", "", false}, // every interface
		{"[::]:8080", "", false},
		{"10.0.0.5:8080", "", false},
		{"example.com:8080", "", false}, // a name is not known to be loopback
		{"127.0.0.1", "", false},        // no port: not an address
		{"0.0.0.0:8080", "s3cret", true},
		{":8080", "s3cret", true},
	} {
		err := CheckListen(c.addr, c.token)
		if (err == nil) != c.ok {
			t.Errorf("CheckListen(%q, token %v) = %v, want ok %v", c.addr, c.token != "", err, c.ok)
		}
		if err != nil && c.token != "" && strings.Contains(err.Error(), c.token) {
			t.Errorf("error shows the token: %v", err)
		}
	}
}

// TestTokenGuardsEverythingButHealth: with a token, the API (here a stand-in
// handler registered through Extra, as the daemon registers /api/v1) and
// /metrics need "Authorization: Bearer <token>" exactly; /healthz and
// /readyz do not.
func TestTokenGuardsEverythingButHealth(t *testing.T) {
	const token = "tok-3a9f"
	secret := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "the data") })
	srv := httptest.NewServer(New(Options{
		Token:   token,
		Metrics: secret,
		Extra:   func(mux *http.ServeMux) { mux.Handle("/api/v1/", secret) },
	}))
	t.Cleanup(srv.Close)
	get := func(path, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/api/v1/rules", "/metrics", "/", "/api/v1/../api/v1/rules", "/API/v1/rules"} {
		for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer tok-3a9", "Bearer tok-3a9f0", "bearer " + token, "Basic " + token, token, "Bearer  " + token} {
			code, body := get(path, auth)
			if code != http.StatusUnauthorized || strings.Contains(body, "the data") {
				t.Errorf("GET %s with %q: %d %q, want 401", path, auth, code, body)
			}
			if strings.Contains(body, token) {
				t.Errorf("GET %s: the answer shows the token: %q", path, body)
			}
		}
	}
	for _, path := range []string{"/api/v1/rules", "/metrics"} {
		if code, body := get(path, "Bearer "+token); code != http.StatusOK || body != "the data" {
			t.Errorf("GET %s with the token: %d %q", path, code, body)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path, ""); code != http.StatusOK || strings.Contains(body, "the data") {
			t.Errorf("GET %s without a token: %d %q", path, code, body)
		}
	}
}

// TestNoTokenOnLoopback: without a token (loopback only, see CheckListen)
// the API answers requests addressed to a loopback address or localhost,
// and refuses any other Host: a DNS-rebinding page in the operator's
// browser cannot read it.
func TestNoTokenOnLoopback(t *testing.T) {
	srv := httptest.NewServer(New(Options{Extra: func(mux *http.ServeMux) {
		mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "open") })
	}}))
	t.Cleanup(srv.Close)
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	for host, want := range map[string]int{
		"":                           http.StatusOK, // the listener's own address
		"localhost:" + port:          http.StatusOK,
		"LOCALHOST":                  http.StatusOK,
		"127.0.0.1":                  http.StatusOK,
		"[::1]:" + port:              http.StatusOK,
		"attacker.example:" + port:   http.StatusForbidden,
		"localhost.attacker.example": http.StatusForbidden,
		"127.0.0.1.attacker.example": http.StatusForbidden,
		"10.0.0.1:" + port:           http.StatusForbidden,
		"[::ffff:10.0.0.1]:" + port:  http.StatusForbidden,
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/rules", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == http.StatusForbidden && strings.Contains(string(b), "open")) {
			t.Errorf("Host %q: %d %q, want %d", host, resp.StatusCode, b, want)
		}
	}
	// Health answers whatever the Host (probes use the pod's address).
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/healthz", nil)
	req.Host = "attacker.example"
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}
