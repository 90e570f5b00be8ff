package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestConsoleCookie: with a token, a browser gets in by opening a page
// once with ?token=: the answer sets an HttpOnly, SameSite=Strict cookie
// (a digest, not the token) and redirects to the same page without the
// token; the cookie then opens every guarded path. A wrong token, a
// forged cookie or ?token= on a POST gets nothing.
func TestConsoleCookie(t *testing.T) {
	const token = "tok-7c1e"
	srv := httptest.NewServer(New(Options{
		Token: token,
		Extra: func(mux *http.ServeMux) {
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "the console "+r.URL.RequestURI())
			})
		},
	}))
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, cookie *http.Cookie) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := do("GET", "/notifications?rule=r1&token="+token, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/notifications?rule=r1" {
		t.Fatalf("?token=: %d Location %q %q, want 303 to the page without the token", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == TokenCookie {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Fatalf("cookie %+v, want HttpOnly SameSite=Strict Path=/", c)
	}
	if strings.Contains(c.Value, token) || strings.Contains(resp.Header.Get("Set-Cookie"), token) {
		t.Fatalf("the cookie holds the token itself: %q", resp.Header.Get("Set-Cookie"))
	}
	for _, path := range []string{"/notifications?rule=r1", "/", "/api/v1/rules"} {
		if resp, body := do("GET", path, c); resp.StatusCode != http.StatusOK || body != "the console "+path {
			t.Errorf("GET %s with the cookie: %d %q", path, resp.StatusCode, body)
		}
	}
	if resp, _ := do("POST", "/api/v1/reload", c); resp.StatusCode != http.StatusOK {
		t.Errorf("POST with the cookie: %d", resp.StatusCode)
	}

	forged := &http.Cookie{Name: TokenCookie, Value: token}
	for _, k := range []*http.Cookie{forged, {Name: TokenCookie, Value: c.Value[:len(c.Value)-1] + "0"}, {Name: "other", Value: c.Value}} {
		if resp, body := do("GET", "/", k); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "the console /") {
			t.Errorf("cookie %s=%s: %d %q, want 401", k.Name, k.Value, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/?token=tok-7c1", "/?token=", "/?token=" + token + "x"} {
		resp, body := do("GET", path, nil)
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || strings.Contains(body, token) {
			t.Errorf("GET %s: %d cookies %v %q, want 401 and no cookie", path, resp.StatusCode, resp.Cookies(), body)
		}
	}
	if resp, _ := do("POST", "/api/v1/reload?token="+token, nil); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("POST ?token=: %d, want 401 (only a GET trades the token for a cookie)", resp.StatusCode)
	}
}
