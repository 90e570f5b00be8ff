package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proactived/proactived/engine/config"
)

// cmdEmit publishes one event, for producers trying things out.
func cmdEmit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("emit", stderr)
	var c common
	c.register(fs)
	id := fs.String("id", "", "Nats-Msg-Id header (dedup id)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "usage: proactived emit SUBJECT JSON [--id ID] [--nats URL]")
		return 2
	}
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	nc, err := dial(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	defer nc.Close()
	msg := nats.NewMsg(pos[0])
	msg.Data = []byte(pos[1])
	if *id != "" {
		msg.Header.Set(jetstream.MsgIDHeader, *id)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(stderr, "proactived:", err)
		return 1
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, msg)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		if err := nc.PublishMsg(msg); err != nil {
			fmt.Fprintln(stderr, "proactived:", err)
			return 1
		}
		_ = nc.Flush()
		fmt.Fprintf(stdout, "published to %s (no stream captures this subject: no rule or entity uses it)\n", pos[0])
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "proactived: publish:", err)
		return 1
	}
	dup := ""
	if ack.Duplicate {
		dup = " (duplicate id: stored once)"
	}
	fmt.Fprintf(stdout, "published to %s: stream %s seq %d%s\n", pos[0], ack.Stream, ack.Sequence, dup)
	return 0
}

// dial connects to the NATS the daemon uses: nats.url, else the embedded
// server's listen address.
func dial(cfg *config.Config) (*nats.Conn, error) {
	url := cfg.NATS.URL
	if url == "" {
		url = "nats://" + cfg.NATS.Listen
	}
	opts := []nats.Option{nats.Name("proactived-cli"), nats.Timeout(3 * time.Second)}
	if cfg.NATS.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATS.Creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		hint := ""
		if cfg.NATS.URL == "" {
			hint = " (is `proactived run` running? it embeds the server)"
		}
		return nil, fmt.Errorf("connect to nats %s: %w%s", strings.TrimPrefix(url, "nats://"), err, hint)
	}
	return nc, nil
}
