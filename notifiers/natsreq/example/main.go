// Command example is a minimal proactived channel plugin for the `nats`
// channel type. It subscribes to a subject in a queue group, logs every
// notification it receives and replies {"ok":true}.
//
//	go run ./notifiers/natsreq/example --nats nats://127.0.0.1:4222 --subject proactive.channel.push
//
// Run several copies with the same --queue to share the load. A real plugin
// would deliver the notification (push, SMS, …) before replying, and answer
// {"ok":false,"error":"…","retry":true|false} when it cannot.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
)

// notification holds the fields of the document this plugin uses; a real
// plugin decodes whatever it needs (see docs/channels.md).
type notification struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Rule           string `json:"rule"`
	Channel        string `json:"channel"`
	To             struct {
		Customer string `json:"customer"`
		Address  string `json:"address"`
	} `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

type reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Retry bool   `json:"retry,omitempty"`
}

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server URL")
	subject := flag.String("subject", "proactive.channel.push", "subject to serve")
	queue := flag.String("queue", "proactive-plugins", "queue group shared by all copies of this plugin")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	closed := make(chan struct{})
	nc, err := nats.Connect(*url, nats.Name("proactived example plugin"),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		log.Error("connect", "err", err)
		os.Exit(1)
	}
	_, err = nc.QueueSubscribe(*subject, *queue, func(m *nats.Msg) {
		var n notification
		if err := json.Unmarshal(m.Data, &n); err != nil {
			// A document we cannot read will not get better: permanent.
			respond(m, reply{Error: "bad document: " + err.Error()})
			return
		}
		// Deliver here. Use the Idempotency-Key header (or
		// n.IdempotencyKey) to drop the rare duplicate.
		log.Info("notification", "idempotency_key", m.Header.Get("Idempotency-Key"),
			"rule", n.Rule, "channel", n.Channel, "customer", n.To.Customer,
			"subject", n.Subject, "body", n.Body)
		respond(m, reply{OK: true})
	})
	if err == nil {
		err = nc.Flush() // the subscription is live once the server has it
	}
	if err != nil {
		log.Error("subscribe", "subject", *subject, "err", err)
		os.Exit(1)
	}
	fmt.Println("ready") // tests wait for this line
	log.Info("serving", "subject", *subject, "queue", *queue)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if nc.Drain() == nil { // finish in-flight requests, then close
		<-closed
	}
}

func respond(m *nats.Msg, r reply) {
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}
