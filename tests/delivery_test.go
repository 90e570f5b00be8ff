package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// mailbox is a real SMTP server (go-smtp) that keeps what it receives.
type mailbox struct {
	mu   sync.Mutex
	msgs []mail
}

type mail struct {
	From string
	To   []string
	Data string
}

func (m *mailbox) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &mailSession{m: m}, nil }

func (m *mailbox) all() []mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]mail(nil), m.msgs...)
}

type mailSession struct {
	m   *mailbox
	cur mail
}

func (s *mailSession) Mail(from string, _ *gosmtp.MailOptions) error { s.cur.From = from; return nil }
func (s *mailSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.cur.To = append(s.cur.To, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = string(b)
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, s.cur)
	s.m.mu.Unlock()
	return nil
}
func (s *mailSession) Reset()        { s.cur = mail{} }
func (s *mailSession) Logout() error { return nil }

func runSMTP(t *testing.T) (*mailbox, int) {
	t.Helper()
	mb := &mailbox{}
	srv := gosmtp.NewServer(mb)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return mb, l.Addr().(*net.TCPAddr).Port
}

// TestOneCustomerThroughThePolicy: one customer gets a fallback (the SMS
// gateway is down → e-mail over real SMTP), a promised follow-up, an
// inhibited and a capped notification — every verdict in the decisions
// table.
func TestOneCustomerThroughThePolicy(t *testing.T) {
	mb, port := runSMTP(t)
	cfg := fmt.Sprintf(`
channels:
  sms:   { type: webhook, url: "{{SINK}}/sms", address_field: phone }
  email: { type: smtp, host: 127.0.0.1, port: %d, tls: none, from: "Shop <noreply@shop.test>" }
defaults: { channels: [email], locale: en, timezone: UTC }
policy:
  quiet_hours: { start: "00:00", end: "00:00" }
  frequency_cap: { max: 3, per: 24h }
  retry: { attempts: 2, backoff: 100ms, max_backoff: 200ms, timeout: 2s }
`, port)
	e := start(t, testdata("delivery"), cfg)
	e.sink.status = func(int) int { return http.StatusServiceUnavailable } // the SMS gateway is down
	e.publish("customers.updated", `{"customer_id":"c-1","email":"ann@example.com","phone":"+15550001","channels":["sms","email"]}`, "")

	// 1. late o-1: sms fails twice → fallback to e-mail; promise in 2s.
	e.publish("orders.created", `{"order_id":"o-1","customer_id":"c-1"}`, "")
	e.publish("orders.eta", `{"order_id":"o-1","eta":"2026-11-25T10:00:00Z","late":true}`, "")
	// 2. o-2 cancelled (sent), then late: inhibited by the cancellation.
	e.publish("orders.created", `{"order_id":"o-2","customer_id":"c-1"}`, "")
	e.publish("orders.cancelled", `{"order_id":"o-2"}`, "")
	e.publish("orders.eta", `{"order_id":"o-2","eta":"2026-11-25T10:00:00Z","late":true}`, "")
	// 3. After the promise's follow-up the budget (3/24h) is spent: o-3 is capped.
	waitFor(t, 15*time.Second, func() error {
		if len(e.decisions("late order:o-1 promise")) == 0 {
			return fmt.Errorf("no promise verdict yet: %v", e.decisions(""))
		}
		return nil
	})
	e.publish("orders.created", `{"order_id":"o-3","customer_id":"c-1"}`, "")
	e.publish("orders.eta", `{"order_id":"o-3","eta":"2026-11-26T10:00:00Z","late":true}`, "")

	waitFor(t, 15*time.Second, func() error {
		if len(mb.all()) != 3 || len(e.decisions("late order:o-3 capped")) != 1 {
			return fmt.Errorf("%d mails; decisions %v", len(mb.all()), e.decisions(""))
		}
		return nil
	})
	for _, want := range []string{
		"late order:o-1 sent", "late order:o-1 fallback", "late order:o-1 delivered",
		"late order:o-1 promise", "cancelled order:o-2 sent", "late order:o-2 inhibited", "late order:o-3 capped",
	} {
		if len(e.decisions(want)) == 0 {
			t.Errorf("no %q decision in:\n%s", want, strings.Join(e.decisions(""), "\n"))
		}
	}
	if r := e.decisions("late order:o-1 fallback")[0]; !strings.Contains(r, "sms failed after 2 attempt(s)") || !strings.Contains(r, "falling back to email") {
		t.Errorf("fallback reason: %s", r)
	}
	if r := e.decisions("late order:o-2 inhibited")[0]; !strings.Contains(r, "inhibited by rule cancelled") {
		t.Errorf("inhibited reason: %s", r)
	}
	if r := e.decisions("late order:o-3 capped")[0]; !strings.Contains(r, "budget 3 per 24h0m0s spent") {
		t.Errorf("capped reason: %s", r)
	}
	// The mails, as the SMTP server received them.
	subjects := map[string]mail{}
	for _, m := range mb.all() {
		if len(m.To) != 1 || m.To[0] != "ann@example.com" || !strings.Contains(m.From, "noreply@shop.test") {
			t.Errorf("envelope %s → %v", m.From, m.To)
		}
		for _, line := range strings.Split(m.Data, "\r\n") {
			if strings.HasPrefix(line, "Subject: ") {
				subjects[strings.TrimPrefix(line, "Subject: ")] = m
			}
		}
	}
	late, ok := subjects["Order o-1 is late"]
	if !ok {
		t.Fatalf("no late mail; subjects %v", keys(subjects))
	}
	if !strings.Contains(late.Data, "text/html") || !strings.Contains(late.Data, "X-Proactive-Idempotency-Key: late/o-1/2026-11-25T10:00:00Z") {
		t.Errorf("late mail lacks the html part or idempotency header:\n%s", late.Data)
	}
	if _, ok := subjects["Update on order o-1"]; !ok {
		t.Errorf("no follow-up mail; subjects %v", keys(subjects))
	}
	if _, ok := subjects["Order o-2 cancelled"]; !ok {
		t.Errorf("no cancellation mail; subjects %v", keys(subjects))
	}
}

func keys(m map[string]mail) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
