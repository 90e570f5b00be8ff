package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/engine/store"
	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/webhook"
)

// accept is a channel that takes every notification at once: what is left
// of a send is the dispatcher's own work (claim, sent log, record).
type accept struct{ n atomic.Int64 }

func (a *accept) Notify(context.Context, *notifiers.Notification) (bool, error) {
	a.n.Add(1)
	return false, nil
}

// BenchmarkDispatch drains an outbox of b.N pending notifications through
// Run (claim, send, record, sent log on disk); one op is one notification
// delivered. "accept" is a channel that answers at once, "webhook" the
// real webhook channel posting to a local HTTP server.
func BenchmarkDispatch(b *testing.B) {
	b.Run("accept", func(b *testing.B) {
		a := &accept{}
		benchDispatch(b, a, func() int64 { return a.n.Load() })
	})
	b.Run("webhook", func(b *testing.B) {
		var got atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			got.Add(1)
		}))
		defer srv.Close()
		var node yaml.Node
		if err := yaml.Unmarshal([]byte("url: "+srv.URL), &node); err != nil {
			b.Fatal(err)
		}
		wh, err := webhook.New("webhook", node.Content[0], notifiers.Deps{HTTPClient: srv.Client()})
		if err != nil {
			b.Fatal(err)
		}
		benchDispatch(b, wh, got.Load)
	})
}

func benchDispatch(b *testing.B, ch notifiers.Notifier, delivered func() int64) {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "d.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	cands, _ := json.Marshal([]policy.Candidate{{Channel: "webhook", Address: "https://example.test/hook"}})
	tx, err := st.W.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("01N%023d", i)
		doc, _ := json.Marshal(notifiers.Notification{ID: id, IdempotencyKey: "r/" + id, Rule: fmt.Sprint("rule-", i%1000),
			Subject: "Your order is late", Body: "Your order is delayed by two days; we are sorry. Here is what we know so far."})
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (id, idem_key, rule, etype, ekey, customer, priority, status, candidates, next_at, doc, created_at, updated_at)
			VALUES (?, ?, ?, 'order', ?, ?, 1, 'pending', ?, ?, ?, ?, ?)`, id, "r/"+id, fmt.Sprint("rule-", i%1000), fmt.Sprint("o-", i%4000), fmt.Sprint("c-", i%1000),
			cands, store.Millis(now), doc, store.Millis(now), store.Millis(now)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	d := New(Options{Store: st, Clock: clock.Wall{}, Channels: map[string]notifiers.Notifier{"webhook": ch},
		Retry: Retry{Attempts: 3, Backoff: time.Second, Timeout: 5 * time.Second}, SentLog: filepath.Join(dir, "sent.log")})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ResetTimer()
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx, 10*time.Millisecond) }()
	for delivered() < int64(b.N) || sentRows(b, st) < b.N {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
}

func sentRows(b *testing.B, st *store.Store) int {
	var n int
	if err := st.R.QueryRow(`SELECT count(*) FROM outbox WHERE status = 'sent'`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}
