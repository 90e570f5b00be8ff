// Package natsreq is the `nats` channel: it sends the notification document
// as a NATS request to a subject and reads the plugin's verdict from the
// reply. Any program, in any language, that answers requests on that
// subject is a channel plugin (see README.md for the protocol).
package natsreq

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Type is the channel type name in proactived.yaml.
const Type = "nats"

// HeaderIdempotencyKey is set on every request message.
const HeaderIdempotencyKey = "Idempotency-Key"

//go:embed example.yaml
var example []byte

// Example returns the sample configuration (example.yaml).
func Example() []byte { return append([]byte(nil), example...) }

// Config is the `nats` channel's configuration.
type Config struct {
	// Subject the plugin serves; a literal subject, no wildcards.
	Subject string `yaml:"subject" required:"true"`
}

// Reply is what a plugin answers. OK true means delivered; otherwise Error
// says why and Retry whether proactived should try again later.
type Reply struct {
	OK    *bool  `json:"ok"`
	Error string `json:"error,omitempty"`
	Retry bool   `json:"retry,omitempty"`
}

// NATS delivers notifications through a NATS request/reply plugin.
type NATS struct {
	name    string
	subject string
	nc      *nats.Conn
}

var _ notifiers.Notifier = (*NATS)(nil)

// New builds a `nats` channel; it matches notifiers.Factory. It only
// validates the subject; deps.NATS may be nil (as in `proactived check`),
// in which case Notify fails permanently.
func New(name string, cfg *yaml.Node, deps notifiers.Deps) (notifiers.Notifier, error) {
	var c Config
	if err := notifiers.DecodeStrict(cfg, &c); err != nil {
		return nil, err
	}
	if err := ValidSubject(c.Subject); err != nil {
		return nil, notifiers.ErrorAt(cfg, "subject", "%v", err)
	}
	return &NATS{name: name, subject: c.Subject, nc: deps.NATS}, nil
}

// ValidSubject checks that s is a literal NATS subject: dot-separated
// non-empty tokens, no white space, no wildcards.
func ValidSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	if strings.ContainsAny(s, " \t\r\n\x00") {
		return fmt.Errorf("subject %q contains white space", s)
	}
	for _, tok := range strings.Split(s, ".") {
		switch tok {
		case "":
			return fmt.Errorf("subject %q has an empty token", s)
		case "*", ">":
			return fmt.Errorf("subject %q has a wildcard; the channel needs a literal subject", s)
		}
	}
	return nil
}

// Notify sends n as a request and waits for the reply until ctx's deadline.
// No responders, a timeout or a closed connection ask for a retry; a reply
// that is not the protocol's JSON is a permanent error.
func (c *NATS) Notify(ctx context.Context, n *notifiers.Notification) (bool, error) {
	if c.nc == nil {
		return false, fmt.Errorf("nats %q: no NATS connection", c.name)
	}
	body, err := json.Marshal(n)
	if err != nil {
		return false, fmt.Errorf("nats %q: encode notification: %w", c.name, err)
	}
	ctx, cancel := notifiers.WithDefaultDeadline(ctx)
	defer cancel()
	msg := nats.NewMsg(c.subject)
	msg.Data = body
	msg.Header.Set(HeaderIdempotencyKey, n.IdempotencyKey)

	resp, err := c.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return true, fmt.Errorf("nats %q: no plugin is serving subject %q", c.name, c.subject)
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			return true, fmt.Errorf("nats %q: request on %q: timed out waiting for the plugin", c.name, c.subject)
		case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject):
			return false, fmt.Errorf("nats %q: request on %q: %w", c.name, c.subject, err)
		default: // closed/draining/reconnecting connection, cancelled context
			return true, fmt.Errorf("nats %q: request on %q: %w", c.name, c.subject, err)
		}
	}
	var r Reply
	if err := json.Unmarshal(resp.Data, &r); err != nil || r.OK == nil {
		return false, fmt.Errorf("nats %q: plugin on %q sent an invalid reply (want {\"ok\":true} or {\"ok\":false,\"error\":…,\"retry\":…}): %s",
			c.name, c.subject, notifiers.Snippet(resp.Data, 256))
	}
	if *r.OK {
		return false, nil
	}
	reason := r.Error
	if reason == "" {
		reason = "no reason given"
	}
	return r.Retry, fmt.Errorf("nats %q: plugin on %q: %s", c.name, c.subject, notifiers.Snippet([]byte(reason), 1024))
}
