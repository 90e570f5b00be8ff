package webhook

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/notifiertest"
)

func TestExampleParses(t *testing.T) {
	for name, node := range notifiertest.ExampleChannels(t, Example(), Type) {
		if _, err := New(name, node, notifiers.Deps{}); err != nil {
			t.Errorf("example channel %q: %v", name, err)
		}
	}
}

// fake is a webhook receiver whose answer each test case sets.
type fake struct {
	mu     sync.Mutex
	status int
	body   string
	delay  time.Duration
	header http.Header
	got    []byte
	hdr    http.Header
}

func (f *fake) set(status int, body string, delay time.Duration) func(testing.TB) {
	return func(testing.TB) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.status, f.body, f.delay = status, body, delay
	}
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.got, f.hdr = b, r.Header.Clone()
	status, body, delay := f.status, f.body, f.delay
	for k, v := range f.header {
		w.Header()[k] = v
	}
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	if status >= 300 && status < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func newWebhook(t *testing.T, src string) notifiers.Notifier {
	t.Helper()
	n, err := New("sms", notifiertest.Node(t, src), notifiers.Deps{HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func TestDeliversSignedDocument(t *testing.T) {
	f := &fake{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	n := newWebhook(t, "url: "+srv.URL+"/send?tenant=shop\nsecret: hmac-key\nheaders: {Authorization: Bearer tok, X-Tenant: shop}\n")

	doc := notifiertest.Sample()
	retry, err := n.Notify(t.Context(), doc)
	notifiertest.CheckResult(t, retry, err, false, false)

	f.mu.Lock()
	defer f.mu.Unlock()
	for k, want := range map[string]string{
		"Content-Type":    "application/json",
		"Idempotency-Key": doc.IdempotencyKey,
		"Authorization":   "Bearer tok",
		"X-Tenant":        "shop",
	} {
		if got := f.hdr.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	sig := f.hdr.Get("Proactive-Signature")
	if !strings.HasPrefix(sig, "sha256=") || !Verify([]byte("hmac-key"), f.got, sig) {
		t.Errorf("signature %q does not verify", sig)
	}
	if Verify([]byte("other-key"), f.got, sig) {
		t.Error("signature verifies with the wrong key")
	}
	var back notifiers.Notification
	if err := json.Unmarshal(f.got, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, doc) {
		t.Errorf("body round trip:\n got %+v\nwant %+v", back, *doc)
	}
}

func TestNoSignatureWithoutSecret(t *testing.T) {
	f := &fake{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	n := newWebhook(t, "url: "+srv.URL)
	if _, err := n.Notify(t.Context(), notifiertest.Sample()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.hdr["Proactive-Signature"]; ok {
		t.Error("signature header sent without a secret")
	}
}

func TestRetryDecision(t *testing.T) {
	f := &fake{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	n := newWebhook(t, "url: "+srv.URL)

	wantInErr := func(parts ...string) func(testing.TB, error) {
		return func(t testing.TB, err error) {
			for _, p := range parts {
				if err == nil || !strings.Contains(err.Error(), p) {
					t.Errorf("error %v does not contain %q", err, p)
				}
			}
		}
	}
	notifiertest.RunCases(t, n, []notifiertest.Case{
		{Name: "200", Behave: f.set(200, "ok", 0)},
		{Name: "204", Behave: f.set(204, "", 0)},
		{Name: "400 permanent", Behave: f.set(400, `{"error":"bad phone number"}`, 0), WantErr: true,
			Check: wantInErr("status 400", "bad phone number")},
		{Name: "404 permanent", Behave: f.set(404, "not found", 0), WantErr: true},
		{Name: "302 permanent", Behave: f.set(302, "", 0), WantErr: true, Check: wantInErr("status 302")},
		{Name: "408 retry", Behave: f.set(408, "", 0), WantErr: true, WantRetry: true},
		{Name: "429 retry", Behave: f.set(429, "slow down", 0), WantErr: true, WantRetry: true, Check: wantInErr("status 429", "slow down")},
		{Name: "500 retry", Behave: f.set(500, strings.Repeat("x", 5000), 0), WantErr: true, WantRetry: true,
			Check: func(t testing.TB, err error) {
				if len(err.Error()) > 400 {
					t.Errorf("error not truncated: %d bytes", len(err.Error()))
				}
			}},
		{Name: "503 retry", Behave: f.set(503, "", 0), WantErr: true, WantRetry: true},
		{Name: "timeout retry", Behave: f.set(200, "", 2*time.Second), Timeout: 100 * time.Millisecond, WantErr: true, WantRetry: true},
	})
}

func TestConnectionErrorRetries(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	n := newWebhook(t, "url: http://"+addr+"/send")
	retry, err := n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, true, true)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"url: http://x\nurll: http://y\n", `line 2:1: unknown key "urll"`},
		{"secret: k\n", `line 1:1: missing required key "url"`},
		{"url: ftp://x/y\n", `line 1:6: key "url": want an absolute http or https URL`},
		{"url: /relative\n", `line 1:6: key "url": want an absolute http or https URL`},
		{"url: https://u:p@x/\n", `line 1:6: key "url": credentials in the URL`},
		{"url: https://x/\nheaders: {\"Bad Name\": v}\n", `line 2:23: key "Bad Name": invalid header name`},
		{"url: https://x/\nheaders: {Idempotency-Key: v}\n", `key "Idempotency-Key": header is set by the webhook channel`},
		{"url: https://x/\nheaders: [a, b]\n", `line 2:10: key "headers": want a mapping, got a list`},
	} {
		_, err := New("sms", notifiertest.Node(t, tc.src), notifiers.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	const secret = "s3cr3t-HMAC-kQ9zX"
	const token = "tok-Zq81-PRIVATE"

	// Bad config: the secret sits next to the mistakes.
	for _, src := range []string{
		"url: ftp://x\nsecret: " + secret + "\n",
		"url: https://x\nsecret: [" + secret + "]\n",
		"url: https://x\nsecret: " + secret + "\nheaders: {X-A: \"" + token + "\\nX-B: 1\"}\n",
		"url: https://x\nsecret: " + secret + "\nbogus: 1\n",
	} {
		_, err := New("sms", notifiertest.Node(t, src), notifiers.Deps{})
		if err == nil {
			t.Fatalf("%q: want an error", src)
		}
		notifiertest.AssertNotLeaked(t, secret, err)
		notifiertest.AssertNotLeaked(t, token, err)
	}

	// Failed sends: a receiver that echoes the request headers back.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, "got auth="+r.Header.Get("Authorization")+" sig="+r.Header.Get("Proactive-Signature"))
	}))
	defer srv.Close()
	src := "url: " + srv.URL + "\nsecret: " + secret + "\nheaders: {Authorization: \"" + token + "\"}\n"
	n := newWebhook(t, src)
	retry, err := n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, true, true)
	notifiertest.AssertNotLeaked(t, secret, err, n)
	notifiertest.AssertNotLeaked(t, token, err, n)

	srv.Close() // now a connection error
	retry, err = n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, true, true)
	notifiertest.AssertNotLeaked(t, secret, err)
	notifiertest.AssertNotLeaked(t, token, err)

	c, _, err := parseConfig(notifiertest.Node(t, src))
	if err != nil {
		t.Fatal(err)
	}
	notifiertest.AssertNotLeaked(t, secret, c, *c)
	notifiertest.AssertNotLeaked(t, token, c, *c)
}
