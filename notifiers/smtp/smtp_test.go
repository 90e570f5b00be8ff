package smtp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

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

// ---- a real SMTP server (emersion/go-smtp) that stores what it receives ----

type received struct {
	From, To string
	Data     []byte
	User     string
}

type backend struct {
	user, pass string // when set, AUTH PLAIN is required

	mu   sync.Mutex
	msgs []received
}

func (b *backend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &session{b: b}, nil }

func (b *backend) messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	b        *backend
	authUser string
	cur      received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.b.user || pass != s.b.pass {
			return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.authUser = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.b.user != "" && s.authUser == "" {
		return gosmtp.ErrAuthRequired
	}
	s.cur = received{From: from, User: s.authUser}
	return nil
}

// Recipients choose the server's answer: temp451@… gets 451, reject550@…
// gets 550, anything else is accepted.
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "reject550@"):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable"}
	case strings.HasPrefix(to, "temp451@"):
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.cur.To = to
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

type serverOpts struct {
	startTLS   bool // offer STARTTLS
	implicit   bool // TLS from the first byte
	user, pass string
}

// runServer starts go-smtp on 127.0.0.1:0 and returns its backend and port.
func runServer(t *testing.T, o serverOpts) (*backend, int) {
	t.Helper()
	be := &backend{user: o.user, pass: o.pass}
	srv := gosmtp.NewServer(be)
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.AllowInsecureAuth = !o.startTLS && !o.implicit
	var l net.Listener
	var err error
	if o.startTLS || o.implicit {
		srv.TLSConfig = selfSigned(t)
	}
	if o.implicit {
		l, err = tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return be, l.Addr().(*net.TCPAddr).Port
}

// selfSigned makes a throw-away certificate for 127.0.0.1/localhost.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func newSMTP(t *testing.T, src string) notifiers.Notifier {
	t.Helper()
	n, err := New("email", notifiertest.Node(t, src), notifiers.Deps{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func cfgFor(port int, extra string) string {
	return "host: 127.0.0.1\nport: " + strconv.Itoa(port) + "\nfrom: \"Shop <noreply@shop.example>\"\nhelo: proactived.test\n" + extra
}

// parsed is a received message split into the parts the tests check.
type parsed struct {
	hdr         mail.Header
	plain, html string
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse message: %v\n%s", err, data)
	}
	p := parsed{hdr: m.Header}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		b, _ := io.ReadAll(m.Body)
		p.plain = string(b)
		return p
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(part) // quoted-printable is decoded by NextPart
		switch ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); ct {
		case "text/plain":
			p.plain = string(b)
		case "text/html":
			p.html = string(b)
		}
	}
	return p
}

func TestSendsPlainAndHTML(t *testing.T) {
	be, port := runServer(t, serverOpts{})
	n := newSMTP(t, cfgFor(port, "tls: none\n"))
	doc := notifiertest.Sample()
	retry, err := n.Notify(t.Context(), doc)
	notifiertest.CheckResult(t, retry, err, false, false)

	msgs := be.messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages", len(msgs))
	}
	got := msgs[0]
	if got.From != "noreply@shop.example" || got.To != doc.To.Address {
		t.Errorf("envelope from=%q to=%q", got.From, got.To)
	}
	p := parse(t, got.Data)
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(p.hdr.Get("Subject"))
	for k, want := range map[string]string{
		"From":                        `"Shop" <noreply@shop.example>`,
		"To":                          "<" + doc.To.Address + ">",
		"X-Proactive-Idempotency-Key": doc.IdempotencyKey,
		"Message-Id":                  "<" + MessageID(doc.IdempotencyKey, "shop.example") + ">",
		"Content-Language":            "ru",
	} {
		if g := p.hdr.Get(k); g != want {
			t.Errorf("%s = %q, want %q", k, g, want)
		}
	}
	if subject != doc.Subject {
		t.Errorf("Subject = %q, want %q", subject, doc.Subject)
	}
	if strings.TrimSpace(p.plain) != doc.Body {
		t.Errorf("text/plain = %q, want %q", p.plain, doc.Body)
	}
	if strings.TrimSpace(p.html) != doc.HTML {
		t.Errorf("text/html = %q, want %q", p.html, doc.HTML)
	}

	// A resend of the same notification carries the same Message-ID.
	if _, err := n.Notify(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	again := parse(t, be.messages()[1].Data)
	if again.hdr.Get("Message-Id") != p.hdr.Get("Message-Id") {
		t.Errorf("Message-ID changed on resend: %q vs %q", again.hdr.Get("Message-Id"), p.hdr.Get("Message-Id"))
	}
}

func TestPlainOnlyWithoutHTML(t *testing.T) {
	be, port := runServer(t, serverOpts{})
	n := newSMTP(t, cfgFor(port, "tls: none\n"))
	doc := notifiertest.Sample()
	doc.HTML = ""
	if _, err := n.Notify(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	p := parse(t, be.messages()[0].Data)
	if p.html != "" || strings.TrimSpace(p.plain) != doc.Body {
		t.Errorf("plain=%q html=%q", p.plain, p.html)
	}
}

// TestStartTLSWithAuth: STARTTLS on a self-signed certificate, then AUTH
// PLAIN with a password that reached the config through ${ENV} expansion.
func TestStartTLSWithAuth(t *testing.T) {
	t.Setenv("PROACTIVE_TEST_SMTP_PASSWORD", "pw-from-env-71")
	be, port := runServer(t, serverOpts{startTLS: true, user: "mailer", pass: "pw-from-env-71"})
	// What the config loader does with ${VAR} before the node reaches New.
	src := os.ExpandEnv(cfgFor(port, "tls: starttls\nusername: mailer\npassword: ${PROACTIVE_TEST_SMTP_PASSWORD}\ninsecure_skip_verify: true\n"))
	n := newSMTP(t, src)
	retry, err := n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, false, false)
	if msgs := be.messages(); len(msgs) != 1 || msgs[0].User != "mailer" {
		t.Fatalf("messages: %+v", msgs)
	}

	t.Run("wrong password is permanent", func(t *testing.T) {
		n := newSMTP(t, cfgFor(port, "username: mailer\npassword: wrong-pass-99\ninsecure_skip_verify: true\n"))
		retry, err := n.Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, false, true)
		notifiertest.AssertNotLeaked(t, "wrong-pass-99", err, n)
	})
	t.Run("untrusted certificate is permanent", func(t *testing.T) {
		n := newSMTP(t, cfgFor(port, "username: mailer\npassword: pw\n"))
		retry, err := n.Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, false, true)
	})
	t.Run("server without STARTTLS is permanent", func(t *testing.T) {
		_, plainPort := runServer(t, serverOpts{})
		n := newSMTP(t, cfgFor(plainPort, "tls: starttls\n"))
		retry, err := n.Notify(t.Context(), notifiertest.Sample())
		notifiertest.CheckResult(t, retry, err, false, true)
	})
}

func TestImplicitTLS(t *testing.T) {
	be, port := runServer(t, serverOpts{implicit: true, user: "mailer", pass: "pw-implicit"})
	n := newSMTP(t, cfgFor(port, "tls: tls\nusername: mailer\npassword: pw-implicit\ninsecure_skip_verify: true\n"))
	retry, err := n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, false, false)
	if len(be.messages()) != 1 {
		t.Fatal("message not received")
	}
}

func TestRetryDecision(t *testing.T) {
	_, port := runServer(t, serverOpts{})
	n := newSMTP(t, cfgFor(port, "tls: none\n"))
	to := func(addr string) *notifiers.Notification {
		d := notifiertest.Sample()
		d.To.Address = addr
		return d
	}
	// A listener that accepts and never greets: the attempt deadline must
	// hold even though go-mail's own timeout is longer.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	silentN := newSMTP(t, cfgFor(silent.Addr().(*net.TCPAddr).Port, "tls: none\n"))
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	refused := newSMTP(t, cfgFor(closedPort, "tls: none\n"))

	notifiertest.RunCases(t, n, []notifiertest.Case{
		{Name: "accepted", Notification: to("bob@example.com")},
		{Name: "550 permanent", Notification: to("reject550@example.com"), WantErr: true,
			Check: func(t testing.TB, err error) {
				if !strings.Contains(err.Error(), "550") || strings.Contains(err.Error(), "reject550@example.com") {
					t.Errorf("err = %v (want the code and a masked address)", err)
				}
			}},
		{Name: "451 retry", Notification: to("temp451@example.com"), WantErr: true, WantRetry: true},
		{Name: "empty address permanent", Notification: to(""), WantErr: true},
		{Name: "invalid address permanent", Notification: to("not an address"), WantErr: true},
	})
	notifiertest.RunCases(t, refused, []notifiertest.Case{
		{Name: "connection refused retry", WantErr: true, WantRetry: true},
	})
	start := time.Now()
	notifiertest.RunCases(t, silentN, []notifiertest.Case{
		{Name: "silent server times out, retry", Timeout: 300 * time.Millisecond, WantErr: true, WantRetry: true},
	})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("attempt took %v, want about the 300ms deadline", d)
	}
}

func TestConfig(t *testing.T) {
	c, err := parseConfig(notifiertest.Node(t, "host: mx\nfrom: a@b.c\nusername: u\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 587 || c.TLS != "starttls" || c.Auth != "plain" {
		t.Errorf("defaults: %+v", c)
	}
	c, _ = parseConfig(notifiertest.Node(t, "host: mx\nfrom: a@b.c\ntls: tls\n"))
	if c.Port != 465 || c.Auth != "none" {
		t.Errorf("implicit TLS defaults: %+v", c)
	}
	for _, tc := range []struct{ src, want string }{
		{"from: a@b.c\n", `missing required key "host"`},
		{"host: mx\n", `missing required key "from"`},
		{"host: mx\nfrom: a@b.c\nprot: 25\n", `line 3:1: unknown key "prot"`},
		{"host: mx\nfrom: a@b.c\nport: 99999\n", `line 3:7: key "port": want 1-65535`},
		{"host: mx\nfrom: a@b.c\nport: abc\n", `line 3:7: key "port": want an integer, got "abc"`},
		{"host: mx\nfrom: a@b.c\ntls: ssl\n", `line 3:6: key "tls": want starttls, tls or none`},
		{"host: mx\nfrom: not-an-address\n", `line 2:7: key "from"`},
		{"host: mx\nfrom: a@b.c\nauth: cram\n", `key "auth": want plain, login or none`},
		{"host: mx\nfrom: a@b.c\nauth: login\n", `key "auth": auth login needs a username`},
		{"host: mx\nfrom: a@b.c\npassword: x\n", `key "password": password is set but auth is none`},
		{"host: smtp://mx\nfrom: a@b.c\n", `key "host": want a host name`},
		{"host: mx\nfrom: a@b.c\ninsecure_skip_verify: maybe\n", `want true or false`},
	} {
		_, err := New("email", notifiertest.Node(t, tc.src), notifiers.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestPasswordNeverLeaks(t *testing.T) {
	const secret = "Pw-Zx81-UNIQUE-secret"
	// Bad configs around the password.
	for _, src := range []string{
		"host: mx\nfrom: a@b.c\npassword: " + secret + "\n",
		"host: mx\nfrom: a@b.c\nusername: u\npassword: " + secret + "\nport: nope\n",
		"host: mx\nfrom: a@b.c\nusername: u\npassword: [" + secret + "]\n",
		"host: mx\nfrom: a@b.c\nusername: u\npassword: " + secret + "\npasword: " + secret + "\n",
	} {
		_, err := New("email", notifiertest.Node(t, src), notifiers.Deps{})
		if err == nil {
			t.Fatalf("%q: want an error", src)
		}
		notifiertest.AssertNotLeaked(t, secret, err)
	}

	// Failed sends: rejected credentials, refused connection.
	_, port := runServer(t, serverOpts{user: "u", pass: "other"})
	n := newSMTP(t, cfgFor(port, "tls: none\nusername: u\npassword: "+secret+"\n"))
	retry, err := n.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, false, true)
	notifiertest.AssertNotLeaked(t, secret, err, n)

	c, err := parseConfig(notifiertest.Node(t, cfgFor(1, "username: u\npassword: "+secret+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	notifiertest.AssertNotLeaked(t, secret, c, *c)
	refused := newSMTP(t, cfgFor(1, "tls: none\nusername: u\npassword: "+secret+"\n"))
	retry, err = refused.Notify(t.Context(), notifiertest.Sample())
	notifiertest.CheckResult(t, retry, err, true, true)
	notifiertest.AssertNotLeaked(t, secret, err, refused)
}

func TestConcurrentSends(t *testing.T) {
	be, port := runServer(t, serverOpts{startTLS: true, user: "u", pass: "p"})
	n := newSMTP(t, cfgFor(port, "username: u\npassword: p\ninsecure_skip_verify: true\n"))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			d := notifiertest.Sample()
			d.IdempotencyKey += strconv.Itoa(i)
			if _, err := n.Notify(t.Context(), d); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(be.messages()); got != 8 {
		t.Errorf("server got %d messages, want 8", got)
	}
}
