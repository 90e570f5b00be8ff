// Package shoutrrr is the `shoutrrr` channel: it sends "subject\n\nbody"
// to any service nicholas-fedor/shoutrrr knows (Slack, Teams, Telegram,
// Discord, ntfy, Gotify, Mattermost, PagerDuty, generic webhooks, …),
// configured by one service URL. It is meant for ops/agent notifications.
package shoutrrr

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/ntfy"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
	"github.com/nicholas-fedor/shoutrrr/pkg/util/jsonclient"
	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Type is the channel type name in proactived.yaml.
const Type = "shoutrrr"

//go:embed example.yaml
var example []byte

// Example returns the sample configuration (example.yaml).
func Example() []byte { return append([]byte(nil), example...) }

// Config is the `shoutrrr` channel's configuration.
type Config struct {
	// URL is a shoutrrr service URL, e.g. "slack://xoxb:…@C0123" or
	// "ntfy://:tk_…@ntfy.example.com/ops". It carries tokens: a Secret.
	URL notifiers.Secret `yaml:"url" required:"true"`
}

// httpClientSetter is implemented by services whose HTTP client can be
// replaced (ntfy, pagerduty in shoutrrr v0.13).
type httpClientSetter interface{ SetHTTPClient(*http.Client) }

// Shoutrrr delivers notifications through a shoutrrr service.
type Shoutrrr struct {
	name   string
	scheme string
	s      *sender // behind a pointer: fmt must not print the URL's parts
}

// sender holds everything derived from the secret URL.
type sender struct {
	url    string
	redact []string // URL parts that may be tokens, scrubbed from errors
	// perCall: the service takes our HTTP client, so each Notify builds a
	// fresh instance whose client is bound to the attempt's context and
	// records the HTTP status.
	perCall   bool
	transport http.RoundTripper
	// shared is used otherwise; sends are serialised (services mutate their
	// config while sending) and abandoned, not cancelled, on ctx expiry.
	shared types.Service
	sem    chan struct{}
	logger *slog.Logger
}

var _ notifiers.Notifier = (*Shoutrrr)(nil)

// New builds a `shoutrrr` channel; it matches notifiers.Factory. It parses
// the URL and initialises the service (which validates its parameters)
// without sending anything.
func New(name string, cfg *yaml.Node, deps notifiers.Deps) (notifiers.Notifier, error) {
	var c Config
	if err := notifiers.DecodeStrict(cfg, &c); err != nil {
		return nil, err
	}
	raw := c.URL.Reveal()
	s := &sender{url: raw, redact: sensitiveParts(raw), sem: make(chan struct{}, 1)}
	svc, scheme, err := locate(raw)
	if err != nil {
		return nil, notifiers.ErrorAt(cfg, "url", "%s", s.scrub(err.Error()))
	}
	s.logger = deps.Logger
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.logger = s.logger.With("component", "notifier", "channel", name)
	if _, ok := svc.(httpClientSetter); ok {
		s.perCall = true
		s.transport = http.DefaultTransport
		if deps.HTTPClient != nil && deps.HTTPClient.Transport != nil {
			s.transport = deps.HTTPClient.Transport
		}
		if ns, ok := svc.(*ntfy.Service); ok && ns.Config != nil && ns.Config.DisableTLSVerification {
			// Honour ntfy's disabletlsverification=yes, which our client
			// would otherwise override.
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // explicit opt-in in the URL
			s.transport = tr
		}
	} else {
		s.shared = svc
	}
	return &Shoutrrr{name: name, scheme: scheme, s: s}, nil
}

// String describes the channel without secrets.
func (c *Shoutrrr) String() string { return fmt.Sprintf("shoutrrr %q (%s)", c.name, c.scheme) }

// locate builds and initialises the service for a URL, like shoutrrr's
// router, but returning the service's own validation error.
func locate(raw string) (types.Service, string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil, "", errors.New("not a valid shoutrrr URL (want service://…)")
	}
	scheme, _, _ := strings.Cut(u.Scheme, "+")
	var r router.ServiceRouter
	svc, err := r.NewService(scheme)
	if err != nil {
		known := r.ListServices()
		slices.Sort(known)
		return nil, scheme, fmt.Errorf("unknown shoutrrr service %q (known: %s)", scheme, strings.Join(known, ", "))
	}
	if u.Scheme != scheme {
		cs, ok := svc.(types.CustomURLService)
		if !ok {
			return nil, scheme, fmt.Errorf("shoutrrr service %q does not support %q URLs", scheme, u.Scheme)
		}
		if u, err = cs.GetConfigURLFromCustom(u); err != nil {
			return nil, scheme, fmt.Errorf("shoutrrr service %q: %w", scheme, err)
		}
	}
	if err := svc.Initialize(u, nil); err != nil {
		return nil, scheme, fmt.Errorf("shoutrrr service %q: %w", scheme, err)
	}
	return svc, scheme, nil
}

// Message renders a notification as the text shoutrrr sends:
// subject + "\n\n" + body, or the body alone without a subject.
func Message(n *notifiers.Notification) string {
	if n.Subject == "" {
		return n.Body
	}
	return n.Subject + "\n\n" + n.Body
}

// Notify sends one message. With an HTTP status known (always for ntfy and
// pagerduty, whose client proactived supplies; otherwise when the service's
// error carries it) 408, 429 and 5xx retry and other statuses are
// permanent. Timeouts, connection errors and errors without a status retry.
func (c *Shoutrrr) Notify(ctx context.Context, n *notifiers.Notification) (bool, error) {
	ctx, cancel := notifiers.WithDefaultDeadline(ctx)
	defer cancel()
	msg := Message(n)
	var (
		err    error
		status int
	)
	if c.s.perCall {
		status, err = c.s.sendPerCall(ctx, msg)
	} else {
		status, err = c.s.sendShared(ctx, msg)
	}
	if err == nil {
		return false, nil
	}
	text := c.s.scrub(err.Error())
	switch {
	case ctx.Err() != nil:
		return true, fmt.Errorf("shoutrrr %q (%s): %s", c.name, c.scheme, text)
	case status >= 200 && status < 300:
		// The service accepted the message but its answer confused
		// shoutrrr; a retry would post it twice.
		c.s.logger.Warn("service accepted the message but the reply was unexpected", "status", status, "err", text)
		return false, nil
	case status != 0:
		return retryableStatus(status), fmt.Errorf("shoutrrr %q (%s): status %d: %s", c.name, c.scheme, status, text)
	default:
		return true, fmt.Errorf("shoutrrr %q (%s): %s", c.name, c.scheme, text)
	}
}

func retryableStatus(s int) bool {
	return s == http.StatusTooManyRequests || s == http.StatusRequestTimeout || s >= 500
}

func (s *sender) sendPerCall(ctx context.Context, msg string) (int, error) {
	svc, _, err := locate(s.url)
	if err != nil {
		return 0, err
	}
	rec := &recorder{ctx: ctx, base: s.transport}
	svc.(httpClientSetter).SetHTTPClient(&http.Client{Transport: rec})
	err = svc.Send(msg, &types.Params{})
	return int(rec.status.Load()), err
}

func (s *sender) sendShared(ctx context.Context, msg string) (int, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for the previous send: %w", ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-s.sem }()
		done <- s.shared.Send(msg, &types.Params{})
	}()
	select {
	case err := <-done:
		return statusOf(err), err
	case <-ctx.Done():
		// The service's own HTTP timeout ends the send in the background.
		return 0, fmt.Errorf("send: %w", ctx.Err())
	}
}

// statusOf extracts an HTTP status from a shoutrrr error, 0 if none.
func statusOf(err error) int {
	if err == nil {
		return 0
	}
	var je jsonclient.Error
	if errors.As(err, &je) && je.StatusCode != 0 {
		return je.StatusCode
	}
	// An HTTP status line ("503 Service Unavailable") in the error text.
	statusLine := regexp.MustCompile(`\b([1-5][0-9][0-9]) ([A-Z][A-Za-z -]+)`)
	for _, m := range statusLine.FindAllStringSubmatch(err.Error(), -1) {
		code, _ := strconv.Atoi(m[1])
		if text := http.StatusText(code); text != "" && strings.HasPrefix(m[2], text) {
			return code
		}
	}
	return 0
}

// recorder binds a service's requests to the attempt's context and
// records the last HTTP status.
type recorder struct {
	ctx    context.Context
	base   http.RoundTripper
	status atomic.Int32
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req.WithContext(r.ctx))
	if err == nil {
		r.status.Store(int32(resp.StatusCode))
	}
	return resp, err
}

func (s *sender) scrub(text string) string {
	return notifiers.Scrub(text, s.redact...)
}

// sensitiveParts lists the pieces of a service URL that may be tokens: the
// whole URL, user name, password, a host that is not a DNS name, path
// segments and long query values, raw and escaped, longest first.
func sensitiveParts(raw string) []string {
	parts := []string{raw}
	add := func(p string) {
		if len(p) < 4 {
			return
		}
		if _, err := strconv.Atoi(p); err == nil {
			return // ports, chat ids, priorities
		}
		parts = append(parts, p, url.PathEscape(p), url.QueryEscape(p))
	}
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			add(u.User.Username())
			if p, ok := u.User.Password(); ok {
				add(p)
				// HTTP basic auth as a service might echo it back.
				parts = append(parts, base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+p)))
			}
		}
		if h := u.Hostname(); !strings.Contains(h, ".") {
			add(h) // not a DNS name or IP: an id or token (slack://…@channel)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			add(seg)
		}
		for _, vals := range u.Query() {
			for _, v := range vals {
				if len(v) >= 8 {
					add(v)
				}
			}
		}
		add(u.Fragment)
	}
	slices.SortFunc(parts, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(parts)
}
