// Package smtp is the `smtp` channel: it sends each notification as an
// e-mail (text/plain, plus a text/html alternative when the notification
// has HTML) through an SMTP submission server, using wneessen/go-mail.
package smtp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Type is the channel type name in proactived.yaml.
const Type = "smtp"

// HeaderIdempotencyKey carries the notification's idempotency key.
const HeaderIdempotencyKey = "X-Proactive-Idempotency-Key"

//go:embed example.yaml
var example []byte

// Example returns the sample configuration (example.yaml).
func Example() []byte { return append([]byte(nil), example...) }

// SMTP delivers notifications by e-mail.
//
// The configuration (with the password) is kept behind a pointer so that
// fmt never prints it: fmt cannot call Secret.String on unexported fields.
type SMTP struct {
	name   string
	cfg    *Config
	domain string // of From, for Message-IDs
	tlsCfg *tls.Config
	client *gomail.Client
	logger *slog.Logger
}

var _ notifiers.Notifier = (*SMTP)(nil)

// New builds an `smtp` channel; it matches notifiers.Factory. It validates
// the configuration and prepares the client without connecting.
func New(name string, cfg *yaml.Node, deps notifiers.Deps) (notifiers.Notifier, error) {
	c, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &SMTP{
		name:   name,
		cfg:    c,
		domain: "proactived.invalid",
		tlsCfg: &tls.Config{
			ServerName:         c.Host,
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // explicit opt-in
		},
		logger: logger.With("component", "notifier", "channel", name),
	}
	if from, err := mail.ParseAddress(c.From); err == nil {
		if _, d, ok := strings.Cut(from.Address, "@"); ok && d != "" {
			s.domain = d
		}
	}

	opts := []gomail.Option{
		gomail.WithPort(c.Port),
		gomail.WithTLSConfig(s.tlsCfg),
		gomail.WithDialContextFunc(s.dial),
	}
	switch c.TLS {
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSImplicit:
		// s.dial does the TLS handshake; WithSSL stops go-mail from
		// attempting STARTTLS on top of it.
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if c.Auth != AuthNone {
		var mech gomail.SMTPAuthType
		switch {
		case c.Auth == AuthPlain && c.TLS == TLSNone:
			mech = gomail.SMTPAuthPlainNoEnc
		case c.Auth == AuthPlain:
			mech = gomail.SMTPAuthPlain
		case c.TLS == TLSNone:
			mech = gomail.SMTPAuthLoginNoEnc
		default:
			mech = gomail.SMTPAuthLogin
		}
		if c.TLS == TLSNone {
			s.logger.Warn("smtp auth without TLS sends the password in clear text", "host", c.Host)
		}
		opts = append(opts, gomail.WithSMTPAuth(mech), gomail.WithUsername(c.Username), gomail.WithPassword(c.Password.Reveal()))
	}
	if c.HELO != "" {
		opts = append(opts, gomail.WithHELO(c.HELO))
	}
	client, err := gomail.NewClient(c.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp %q: %s", name, notifiers.Scrub(err.Error(), c.Password.Reveal()))
	}
	s.client = client
	return s, nil
}

// String describes the channel without secrets.
func (s *SMTP) String() string {
	return fmt.Sprintf("smtp %q -> %s:%d (%s)", s.name, s.cfg.Host, s.cfg.Port, s.cfg.TLS)
}

// MessageID returns the Message-ID (without angle brackets) used for an
// idempotency key: the same notification always gets the same ID, so a
// resend after an ambiguous failure is recognisable as a duplicate.
func MessageID(idempotencyKey, domain string) string {
	sum := sha256.Sum256([]byte(idempotencyKey))
	return "proactive." + hex.EncodeToString(sum[:16]) + "@" + domain
}

// Notify sends one e-mail to n.To.Address. 4xx replies, connection errors
// and timeouts ask for a retry; 5xx replies, an empty or invalid address,
// certificate and auth-mechanism mismatches are permanent.
func (s *SMTP) Notify(ctx context.Context, n *notifiers.Notification) (bool, error) {
	addr := strings.TrimSpace(n.To.Address)
	if addr == "" {
		return false, fmt.Errorf("smtp %q: notification has no recipient address", s.name)
	}
	m := gomail.NewMsg()
	if err := m.From(s.cfg.From); err != nil {
		return false, fmt.Errorf("smtp %q: from: %w", s.name, err)
	}
	if err := m.To(addr); err != nil {
		return false, fmt.Errorf("smtp %q: invalid recipient address %s", s.name, notifiers.MaskAddress(addr))
	}
	m.Subject(n.Subject)
	m.SetBodyString(gomail.TypeTextPlain, n.Body)
	if n.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, n.HTML)
	}
	m.SetGenHeader(HeaderIdempotencyKey, oneLine(n.IdempotencyKey))
	m.SetMessageIDWithValue(MessageID(n.IdempotencyKey, s.domain))
	if n.Locale != "" {
		m.SetGenHeader(gomail.HeaderContentLang, oneLine(n.Locale))
	}
	m.SetDate()

	ctx, cancel := notifiers.WithDefaultDeadline(ctx)
	defer cancel()
	a := &attempt{}
	a.deadline, _ = ctx.Deadline()
	stop := context.AfterFunc(ctx, a.abort) // cancellation closes the connection
	defer stop()
	err := s.client.DialAndSendWithContext(context.WithValue(ctx, attemptKey{}, a), m)
	if err == nil {
		return false, nil
	}
	if m.IsDelivered() {
		// The server accepted the message; only RSET/QUIT failed. Retrying
		// would send a duplicate.
		s.logger.Warn("message accepted, closing the session failed", "err", s.clean(err, addr))
		return false, nil
	}
	retry := retryable(err)
	if ctx.Err() != nil {
		retry = true
	}
	return retry, fmt.Errorf("smtp %q: send to %s via %s:%d: %s", s.name,
		notifiers.MaskAddress(addr), s.cfg.Host, s.cfg.Port, s.clean(err, addr))
}

// clean renders err without the password and with the recipient masked.
func (s *SMTP) clean(err error, addr string) string {
	msg := notifiers.Scrub(err.Error(), s.cfg.Password.Reveal())
	return strings.ReplaceAll(msg, addr, notifiers.MaskAddress(addr))
}

// retryable classifies a go-mail error.
func retryable(err error) bool {
	var se *gomail.SendError
	if errors.As(err, &se) {
		switch code := se.ErrorCode(); {
		case code >= 500:
			return false
		case code >= 400:
			return true
		}
		switch se.Reason {
		case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
			return false
		}
		return true // connection lost mid-transaction
	}
	var tpe *textproto.Error
	if errors.As(err, &tpe) { // greeting, EHLO, STARTTLS, AUTH replies
		return tpe.Code < 500
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return false // fix the certificate or set insecure_skip_verify
	}
	for _, e := range []error{
		gomail.ErrPlainAuthNotSupported, gomail.ErrLoginAuthNotSupported,
	} {
		if errors.Is(err, e) {
			return false
		}
	}
	if strings.Contains(err.Error(), "does not support STARTTLS") || strings.Contains(err.Error(), "does not support SMTP AUTH") {
		return false
	}
	return true // network errors, timeouts, anything unexpected
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// attemptKey carries one Notify call's *attempt through go-mail to dial.
type attemptKey struct{}

// attempt ties one connection to one Notify call: its deadline bounds every
// read and write, and cancelling the call closes the connection.
type attempt struct {
	deadline time.Time
	mu       sync.Mutex
	conn     net.Conn
	aborted  bool
}

func (a *attempt) set(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn = c
	return !a.aborted
}

func (a *attempt) abort() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.aborted = true
	if a.conn != nil {
		_ = a.conn.Close()
	}
}

// dial connects for go-mail. go-mail resets connection deadlines to its own
// per-command timeout; deadlineConn clamps them to the attempt's deadline so
// the dispatcher's per-attempt timeout holds for the whole session.
func (s *SMTP) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	var conn net.Conn = raw
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		if !a.set(raw) {
			raw.Close()
			return nil, context.Canceled
		}
		conn = &deadlineConn{Conn: raw, limit: a.deadline}
		if !a.deadline.IsZero() {
			_ = raw.SetDeadline(a.deadline)
		}
	}
	if s.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, s.tlsCfg.Clone())
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		conn = tc
	}
	return conn, nil
}

type deadlineConn struct {
	net.Conn
	limit time.Time
}

func (c *deadlineConn) clamp(t time.Time) time.Time {
	if !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)) {
		return c.limit
	}
	return t
}

func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}
