// Package all wires the built-in channel types into a registry. It is
// explicit (no init side effects): a program that wants fewer types, or
// extra in-process ones, builds its own notifiers.Registry the same way.
package all

import (
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/execnotify"
	"github.com/proactived/proactived/notifiers/logchan"
	"github.com/proactived/proactived/notifiers/natsreq"
	"github.com/proactived/proactived/notifiers/shoutrrr"
	"github.com/proactived/proactived/notifiers/smtp"
	"github.com/proactived/proactived/notifiers/webhook"
)

// builtin lists every built-in type with its factory and sample config.
func builtin() []struct {
	typ     string
	factory notifiers.Factory
	example func() []byte
} {
	return []struct {
		typ     string
		factory notifiers.Factory
		example func() []byte
	}{
		{logchan.Type, logchan.New, logchan.Example},
		{webhook.Type, webhook.New, webhook.Example},
		{natsreq.Type, natsreq.New, natsreq.Example},
		{smtp.Type, smtp.New, smtp.Example},
		{shoutrrr.Type, shoutrrr.New, shoutrrr.Example},
		{execnotify.Type, execnotify.New, execnotify.Example},
	}
}

// Registry returns a new registry with the built-in channel types: log,
// webhook, nats, smtp, shoutrrr and exec.
func Registry() *notifiers.Registry {
	r := notifiers.NewRegistry()
	for _, b := range builtin() {
		if err := r.Register(b.typ, b.factory); err != nil {
			panic(err) // a duplicate here is a programming error
		}
	}
	return r
}

// Examples returns each built-in type's sample configuration (its
// example.yaml), keyed by type name.
func Examples() map[string][]byte {
	out := map[string][]byte{}
	for _, b := range builtin() {
		out[b.typ] = b.example()
	}
	return out
}
