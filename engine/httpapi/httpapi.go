// Package httpapi serves proactived's HTTP surface: health and readiness,
// the JSON API under /api/v1 and metrics. A bearer token (http.token) guards
// everything but /healthz and /readyz; without a token the daemon refuses to
// listen beyond loopback.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/store"
)

// Options are the API's dependencies.
type Options struct {
	Token  string
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	Store  *store.Store
	// Extra registers more handlers on the authenticated mux.
	Extra func(mux *http.ServeMux)
	// Metrics, when set, is served at GET /metrics, behind the token like
	// the API (scrapers send it as a bearer token).
	Metrics http.Handler
}

// CheckListen refuses an address beyond loopback without a token.
func CheckListen(addr, token string) error {
	if addr == "" || addr == "off" || token != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("http.addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("http.addr %q listens beyond loopback: set http.token (e.g. token: \"${PROACTIVED_TOKEN}\") to require a bearer token, or listen on 127.0.0.1", addr)
	}
	return nil
}

// New builds the handler.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	api := http.NewServeMux()
	if o.Metrics != nil {
		api.Handle("GET /metrics", o.Metrics)
	}
	if o.Extra != nil {
		o.Extra(api)
	}
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	root.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if o.Ready == nil {
			_, _ = w.Write([]byte("ready\n"))
			return
		}
		if err := o.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	root.Handle("/", requireToken(o.Token, api))
	return root
}

// TokenCookie is the cookie that lets a browser into the console when
// http.token is set: opening any page once with ?token=TOKEN sets it
// (HttpOnly, SameSite=Strict, for the browser session) and redirects to
// the same page without the token. It holds a digest of the token, not
// the token, so the browser never stores the API's bearer token.
const TokenCookie = "proactived_session"

// cookieValue is what TokenCookie holds for a token.
func cookieValue(token string) string {
	sum := sha256.Sum256([]byte("proactived console session\x00" + token))
	return hex.EncodeToString(sum[:])
}

func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return loopbackHostOnly(next)
	}
	want := []byte("Bearer " + token)
	wantCookie := []byte(cookieValue(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(TokenCookie); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), wantCookie) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query(); r.Method == http.MethodGet && q.Has("token") &&
			subtle.ConstantTimeCompare([]byte(q.Get("token")), []byte(token)) == 1 {
			http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: string(wantCookie), Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			// The token leaves the address bar (and the history) at once.
			q.Del("token")
			path := r.URL.Path
			if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
				path = "/" // never a redirect off this host
			}
			u := url.URL{Path: path, RawQuery: q.Encode()}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="proactived"`)
		WriteError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token (in a browser: open the console once as /?token=TOKEN)"))
	})
}

// loopbackHostOnly guards the token-less API (which CheckListen keeps on
// loopback) against DNS rebinding: a web page whose name the attacker
// points at 127.0.0.1 could otherwise read customer data from the
// operator's browser. Browsers send that name in Host; only loopback
// addresses and localhost are served.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			WriteError(w, http.StatusForbidden, errors.New("without http.token only requests to a loopback address or localhost are served"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names a loopback address or
// localhost, with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes {"error": "..."}.
func WriteError(w http.ResponseWriter, status int, err error) {
	WriteJSON(w, status, map[string]string{"error": strings.TrimSpace(err.Error())})
}
