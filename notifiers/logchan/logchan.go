// Package logchan is the `log` channel: it writes one structured slog line
// per notification. It is the default development channel and the one to
// use when a notification only needs to be visible to ops.
package logchan

import (
	"context"
	_ "embed"
	"log/slog"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Type is the channel type name in proactived.yaml.
const Type = "log"

//go:embed example.yaml
var example []byte

// Example returns the sample configuration (example.yaml).
func Example() []byte { return append([]byte(nil), example...) }

// Config is the `log` channel's configuration: it has no keys.
type Config struct{}

// Log writes notifications to a slog.Logger.
type Log struct {
	name   string
	logger *slog.Logger
}

var _ notifiers.Notifier = (*Log)(nil)

// New builds a `log` channel; it matches notifiers.Factory. cfg may be nil
// or an empty mapping. Without deps.Logger it logs to slog.Default().
func New(name string, cfg *yaml.Node, deps notifiers.Deps) (notifiers.Notifier, error) {
	var c Config
	if err := notifiers.DecodeStrict(cfg, &c); err != nil {
		return nil, err
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Log{name: name, logger: logger}, nil
}

// Notify logs n at level Info with message "notification". The address is
// masked. It never fails.
func (l *Log) Notify(ctx context.Context, n *notifiers.Notification) (bool, error) {
	channel := n.Channel
	if channel == "" {
		channel = l.name
	}
	l.logger.LogAttrs(ctx, slog.LevelInfo, "notification",
		slog.String("rule", n.Rule),
		slog.String("channel", channel),
		slog.String("priority", n.Priority),
		slog.String("customer", n.To.Customer),
		slog.String("address", notifiers.MaskAddress(n.To.Address)),
		slog.String("entity", n.Entity.Type+"/"+n.Entity.Key),
		slog.String("locale", n.Locale),
		slog.String("subject", n.Subject),
		slog.String("body", n.Body),
		slog.String("idempotency_key", n.IdempotencyKey),
	)
	return false, nil
}
