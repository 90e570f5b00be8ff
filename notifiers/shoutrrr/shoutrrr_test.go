package shoutrrr

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

// fakeService stands in for one HTTP API (ntfy's publish endpoint, or any
// webhook for generic://): it records the request and answers as told.
type fakeService struct {
	mu     sync.Mutex
	status int
	body   string
	delay  time.Duration
	reqs   []recorded
}

type recorded struct {
	Method, Path string
	Header       http.Header
	Body         string
}

func (f *fakeService) set(status int, body string, delay time.Duration) func(testing.TB) {
	return func(testing.TB) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.status, f.body, f.delay = status, body, delay
	}
}

func (f *fakeService) last(t testing.TB) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the service received no request")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.Header.Clone(), string(b)})
	status, body, delay := f.status, f.body, f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status == 0 {
		status = 200
	}
	if strings.HasPrefix(body, "{") {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// ntfyOK is what ntfy answers to a successful publish.
const ntfyOK = `{"id":"sPs71M8A2T","time":1700000000,"expires":1700043200,"event":"message","topic":"shop-ops-q7","message":"x"}`

func newChan(t *testing.T, url string) notifiers.Notifier {
	t.Helper()
	n, err := New("ops", notifiertest.Node(t, "url: \""+url+"\""), notifiers.Deps{HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func hostPort(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// TestNtfy talks to a fake ntfy server: shoutrrr's ntfy service accepts any
// host and, with scheme=http, plain HTTP, so the real client code runs
// against httptest.
func TestNtfy(t *testing.T) {
	f := &fakeService{status: 200, body: ntfyOK}
	srv := httptest.NewServer(f)
	defer srv.Close()
	const token = "tk_8f2kq0demotoken"
	n := newChan(t, "ntfy://:"+token+"@"+hostPort(srv)+"/shop-ops-q7?scheme=http&priority=high&tags=warning")

	doc := notifiertest.Sample()
	retry, err := n.Notify(t.Context(), doc)
	notifiertest.CheckResult(t, retry, err, false, false)
	got := f.last(t)
	if got.Method != http.MethodPost || got.Path != "/shop-ops-q7" {
		t.Errorf("request %s %s", got.Method, got.Path)
	}
	if want := doc.Subject + "\n\n" + doc.Body; got.Body != want {
		t.Errorf("body %q, want %q", got.Body, want)
	}
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+token)); got.Header.Get("Authorization") != want {
		t.Errorf("Authorization %q, want %q", got.Header.Get("Authorization"), want)
	}
	if got.Header.Get("Priority") != "High" || got.Header.Get("Tags") != "warning" {
		t.Errorf("Priority=%q Tags=%q", got.Header.Get("Priority"), got.Header.Get("Tags"))
	}

	doc.Subject = ""
	if _, err := n.Notify(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t); got.Body != doc.Body {
		t.Errorf("body without subject %q, want %q", got.Body, doc.Body)
	}

	notifiertest.RunCases(t, n, []notifiertest.Case{
		{Name: "200", Behave: f.set(200, ntfyOK, 0)},
		{Name: "429 retry", Behave: f.set(429, `{"code":42901,"http":429,"error":"limit reached"}`, 0), WantErr: true, WantRetry: true,
			Check: func(t testing.TB, err error) {
				if !strings.Contains(err.Error(), "status 429") || !strings.Contains(err.Error(), "limit reached") {
					t.Errorf("err = %v", err)
				}
			}},
		{Name: "500 retry", Behave: f.set(500, "oops", 0), WantErr: true, WantRetry: true},
		{Name: "502 retry", Behave: f.set(502, `{"code":50201,"http":502,"error":"upstream"}`, 0), WantErr: true, WantRetry: true},
		{Name: "403 permanent", Behave: f.set(403, `{"code":40301,"http":403,"error":"forbidden"}`, 0), WantErr: true},
		{Name: "400 permanent", Behave: f.set(400, "bad request", 0), WantErr: true},
		{Name: "200 with odd body is delivered", Behave: f.set(200, "not json", 0)},
		{Name: "timeout retry", Behave: f.set(200, ntfyOK, 2*time.Second), Timeout: 100 * time.Millisecond, WantErr: true, WantRetry: true},
	})
}

// TestGeneric covers services that keep their own HTTP client (generic://
// here): the status comes from the error text.
func TestGeneric(t *testing.T) {
	f := &fakeService{status: 200}
	srv := httptest.NewServer(f)
	defer srv.Close()
	n := newChan(t, "generic+"+srv.URL+"/hooks/ops")
	notifiertest.RunCases(t, n, []notifiertest.Case{
		{Name: "200", Behave: f.set(200, "", 0), Check: func(t testing.TB, _ error) {
			if got := f.last(t); got.Path != "/hooks/ops" || !strings.Contains(got.Body, "Your order o-1 is late") {
				t.Errorf("request %+v", got)
			}
		}},
		{Name: "503 retry", Behave: f.set(503, "", 0), WantErr: true, WantRetry: true},
		{Name: "404 permanent", Behave: f.set(404, "", 0), WantErr: true},
		{Name: "timeout retry", Behave: f.set(200, "", time.Second), Timeout: 100 * time.Millisecond, WantErr: true, WantRetry: true},
	})
}

func TestConnectionRefusedRetries(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	for _, u := range []string{"ntfy://" + addr + "/topic?scheme=http", "generic+http://" + addr + "/hook"} {
		retry, err := newChan(t, u).Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, true, true)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"", `missing required key "url"`},
		{"url: ntfy://h/t\nurls: x\n", `line 2:1: unknown key "urls"`},
		{"url: \"not a url\"\n", `line 1:6: key "url": not a valid shoutrrr URL`},
		{"url: nosuch://x/y\n", `key "url": unknown shoutrrr service "nosuch"`},
		{"url: ntfy://ntfy.sh\n", `key "url": shoutrrr service "ntfy": topic is required`},
		{"url: ntfy://ntfy.sh/t?priority=loudest\n", `key "url": shoutrrr service "ntfy"`},
	} {
		_, err := New("ops", notifiertest.Node(t, tc.src), notifiers.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestURLNeverLeaks(t *testing.T) {
	const token = "tk_LEAKCHECK_93jd"
	const topic = "private-topic-8812"
	// Bad configs whose URL carries the token.
	for _, src := range []string{
		"url: \"ntfy://:" + token + "@ntfy.sh\"\n",                                      // no topic
		"url: \"ntfy://:" + token + "@ntfy.sh/" + topic + "?priority=" + token + "\"\n", // bad param value
		"url: \"nosuch://:" + token + "@x/" + topic + "\"\n",
		"url: \"ntfy://:" + token + "@h/" + topic + "\"\nextra: 1\n",
		"url: \"::" + token + "\"\n",
	} {
		_, err := New("ops", notifiertest.Node(t, src), notifiers.Deps{})
		if err == nil {
			t.Fatalf("%q: want an error", src)
		}
		notifiertest.AssertNotLeaked(t, token, err)
		notifiertest.AssertNotLeaked(t, topic, err)
	}

	// Failed sends: the service echoes the credentials; then it is gone.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		io.WriteString(w, `{"code":40101,"http":401,"error":"bad auth `+r.Header.Get("Authorization")+` for `+r.URL.Path+`"}`)
	}))
	defer srv.Close()
	for _, u := range []string{
		"ntfy://:" + token + "@" + hostPort(srv) + "/" + topic + "?scheme=http",
		"generic+" + srv.URL + "/" + topic + "?token=" + token,
	} {
		n := newChan(t, u)
		retry, err := n.Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, false, true)
		notifiertest.AssertNotLeaked(t, token, err, n)
		notifiertest.AssertNotLeaked(t, topic, err, n)
		notifiertest.AssertNotLeaked(t, base64.StdEncoding.EncodeToString([]byte(":"+token)), err)
	}
	srv.Close()
	for _, u := range []string{
		"ntfy://:" + token + "@" + hostPort(srv) + "/" + topic + "?scheme=http",
		"generic+" + srv.URL + "/" + topic + "?token=" + token,
	} {
		n := newChan(t, u)
		retry, err := n.Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, true, true)
		notifiertest.AssertNotLeaked(t, token, err, n)
		notifiertest.AssertNotLeaked(t, topic, err, n)
	}

	var c Config
	if err := notifiers.DecodeStrict(notifiertest.Node(t, "url: ntfy://:"+token+"@h/"+topic), &c); err != nil {
		t.Fatal(err)
	}
	notifiertest.AssertNotLeaked(t, token, c, &c)
}

func TestConcurrentSends(t *testing.T) {
	f := &fakeService{status: 200, body: ntfyOK}
	srv := httptest.NewServer(f)
	defer srv.Close()
	for _, u := range []string{"ntfy://" + hostPort(srv) + "/t?scheme=http", "generic+" + srv.URL + "/hook"} {
		n := newChan(t, u)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := n.Notify(t.Context(), notifiertest.Sample()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 16 {
		t.Errorf("service got %d requests, want 16", len(f.reqs))
	}
}
