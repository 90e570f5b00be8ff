// Package notifiers defines the one small interface every delivery channel
// implements, the notification document they all receive, and a per-instance
// registry of channel types. Retry, backoff, timeouts and attempt caps live
// once in the engine's outbox dispatcher, never inside a channel.
package notifiers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"gopkg.in/yaml.v3"
)

// Notification is the document every channel receives (SPEC.md "Channels").
// Its JSON form is the contract with webhook receivers, NATS plugins and exec
// programs; add fields, never rename them.
type Notification struct {
	ID             string         `json:"id"`
	IdempotencyKey string         `json:"idempotency_key"`
	Rule           string         `json:"rule"`
	Channel        string         `json:"channel"`
	Priority       string         `json:"priority"`
	To             Recipient      `json:"to"`
	Locale         string         `json:"locale,omitempty"`
	Subject        string         `json:"subject"`
	Body           string         `json:"body"`
	HTML           string         `json:"html,omitempty"`
	Entity         EntityRef      `json:"entity"`
	Vars           map[string]any `json:"vars,omitempty"`
	CreatedAt      time.Time      `json:"created_at"`
}

// Recipient says who gets a notification. Customer is empty for internal
// (ops/agent) notifications.
type Recipient struct {
	Customer string `json:"customer,omitempty"`
	Address  string `json:"address,omitempty"`
}

// EntityRef names the entity a notification is about.
type EntityRef struct {
	Type string `json:"type"`
	Key  string `json:"key"`
}

// Notifier delivers one notification. The bool says whether a failure is
// worth retrying (timeouts, 5xx, 429, temporary errors); a permanent failure
// moves the dispatcher on to the customer's next channel.
type Notifier interface {
	Notify(ctx context.Context, n *Notification) (retry bool, err error)
}

// Deps are the shared resources a channel may use. Constructors must not
// start network activity: validate configuration only.
type Deps struct {
	Logger     *slog.Logger
	HTTPClient *http.Client
	// NATS is the daemon's connection, for channels that talk to NATS
	// services. It may be nil in `check`, which only validates.
	NATS *nats.Conn
}

// Factory builds a channel of one type from its configuration node (the
// channel's mapping in proactived.yaml, with `${ENV}` already expanded and
// the common keys `type`, `address_field` and `timeout` removed). Errors
// must name the offending key and never contain secret values.
type Factory func(name string, cfg *yaml.Node, deps Deps) (Notifier, error)

// Registry maps channel type names to factories. It is built explicitly by
// the caller (see notifiers/all): no init() side effects, no globals.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a channel type. Registering a name twice is an error.
func (r *Registry) Register(typ string, f Factory) error {
	if typ == "" || f == nil {
		return errors.New("register channel type: empty name or nil factory")
	}
	if _, dup := r.factories[typ]; dup {
		return fmt.Errorf("channel type %q registered twice", typ)
	}
	r.factories[typ] = f
	return nil
}

// Lookup returns the factory for a type.
func (r *Registry) Lookup(typ string) (Factory, bool) {
	f, ok := r.factories[typ]
	return f, ok
}

// Types lists the registered type names, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.factories))
	for t := range r.factories {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Secret is a configuration value that must never be printed. It formats as
// "<secret>" in logs, errors and JSON.
type Secret string

func (s Secret) String() string { return "<secret>" }

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return "<secret>" }

// MarshalJSON hides the value from JSON output.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"<secret>"`), nil }

// MarshalText hides the value from text encoders (slog, yaml).
func (s Secret) MarshalText() ([]byte, error) { return []byte("<secret>"), nil }

// Reveal returns the real value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// MaskAddress hides most of a customer address for logs:
// "ann@example.com" → "a**@example.com", "+79161234567" → "+7*******567".
func MaskAddress(a string) string {
	if a == "" {
		return ""
	}
	r := []rune(a)
	for i, c := range r {
		if c == '@' {
			if i <= 1 {
				return "*" + string(r[i:])
			}
			return string(r[0]) + stars(i-1) + string(r[i:])
		}
	}
	if len(r) <= 4 {
		return stars(len(r))
	}
	keep := 3
	if len(r) < 8 {
		keep = 1
	}
	return string(r[:2]) + stars(len(r)-2-keep) + string(r[len(r)-keep:])
}

func stars(n int) string {
	if n < 1 {
		n = 1
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = '*'
	}
	return string(b)
}
