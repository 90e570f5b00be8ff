// Package webhook is the `webhook` channel: it POSTs the notification
// document as JSON to a URL, with an Idempotency-Key header and, when a
// secret is configured, an HMAC-SHA256 signature of the body.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Type is the channel type name in proactived.yaml.
const Type = "webhook"

// Header names set on every request.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderSignature      = "Proactive-Signature"
)

// snippetLen bounds the response body quoted in an error.
const snippetLen = 256

//go:embed example.yaml
var example []byte

// Example returns the sample configuration (example.yaml).
func Example() []byte { return append([]byte(nil), example...) }

// Webhook delivers notifications over HTTP.
//
// Secrets live behind the cfg pointer: fmt prints a nested pointer as an
// address, whereas it cannot call Secret's String/GoString on an unexported
// field and would print the raw value.
type Webhook struct {
	name   string
	target string // scheme://host, for error messages (path/query may hold tokens)
	url    *url.URL
	cfg    *Config
	client *http.Client
}

var _ notifiers.Notifier = (*Webhook)(nil)

// New builds a `webhook` channel; it matches notifiers.Factory. It only
// validates: no network activity. deps.HTTPClient is reused (a private
// client is made once when it is nil); redirects are never followed.
func New(name string, cfg *yaml.Node, deps notifiers.Deps) (notifiers.Notifier, error) {
	c, u, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	var client http.Client
	if deps.HTTPClient != nil {
		client = *deps.HTTPClient // shares the Transport and its connection pool
	}
	// A 3xx is the receiver's misconfiguration; following a 302 would turn
	// the POST into a GET and report success.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Webhook{
		name:   name,
		target: u.Scheme + "://" + u.Host,
		url:    u,
		cfg:    c,
		client: &client,
	}, nil
}

// Sign returns the Proactive-Signature header value for body:
// "sha256=" + hex(HMAC-SHA256(secret, body)).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature (a Proactive-Signature header value) is
// valid for body; receivers written in Go can use it directly.
func Verify(secret, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// Notify POSTs n. 2xx is delivered; 408, 429, 5xx, timeouts and connection
// errors ask for a retry; any other status is permanent.
func (w *Webhook) Notify(ctx context.Context, n *notifiers.Notification) (bool, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return false, fmt.Errorf("webhook %q: encode notification: %w", w.name, err)
	}
	ctx, cancel := notifiers.WithDefaultDeadline(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url.String(), bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("webhook %q: build request: %s", w.name, notifiers.Scrub(err.Error(), w.url.String()))
	}
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v.Reveal())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "proactived")
	req.Header.Set(HeaderIdempotencyKey, n.IdempotencyKey)
	if w.cfg.Secret != "" {
		req.Header.Set(HeaderSignature, Sign([]byte(w.cfg.Secret.Reveal()), body))
	}

	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error repeats the full URL, whose path or query may carry a
		// token: report only scheme://host and the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, fmt.Errorf("webhook %q: post %s: %s", w.name, w.target, w.scrub(err.Error()))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, snippetLen+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	retry := retryable(resp.StatusCode)
	msg := fmt.Sprintf("webhook %q: post %s: status %d", w.name, w.target, resp.StatusCode)
	if ra := resp.Header.Get("Retry-After"); ra != "" && retry {
		if _, err := strconv.Atoi(ra); err == nil {
			msg += " (retry after " + ra + "s)"
		}
	}
	if s := notifiers.Snippet(snippet, snippetLen); s != "" {
		msg += ": " + s
	}
	return retry, errors.New(w.scrub(msg))
}

func (w *Webhook) scrub(s string) string {
	secrets := []string{w.cfg.Secret.Reveal()}
	for _, v := range w.cfg.Headers {
		secrets = append(secrets, v.Reveal())
	}
	return notifiers.Scrub(s, secrets...)
}

// retryable says whether an HTTP status is worth retrying.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500
}

// String describes the channel without secrets.
func (w *Webhook) String() string { return fmt.Sprintf("webhook %q -> %s", w.name, w.target) }
