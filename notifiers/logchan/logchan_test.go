package logchan

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/notifiertest"
)

func TestExampleParses(t *testing.T) {
	for name, node := range notifiertest.ExampleChannels(t, Example(), Type) {
		if _, err := New(name, node, notifiers.Deps{}); err != nil {
			t.Errorf("example channel %q: %v", name, err)
		}
	}
}

func TestNilAndEmptyConfig(t *testing.T) {
	if _, err := New("console", nil, notifiers.Deps{}); err != nil {
		t.Fatalf("nil node: %v", err)
	}
	if _, err := New("console", notifiertest.Node(t, "{}"), notifiers.Deps{}); err != nil {
		t.Fatalf("empty mapping: %v", err)
	}
}

func TestUnknownKey(t *testing.T) {
	_, err := New("console", notifiertest.Node(t, "level: debug\n"), notifiers.Deps{})
	if err == nil || err.Error() != `line 1:1: unknown key "level"` {
		t.Fatalf("err = %v", err)
	}
}

func TestNotifyLogsOneMaskedLine(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	n, err := New("console", nil, notifiers.Deps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	doc := notifiertest.Sample()
	retry, err := n.Notify(context.Background(), doc)
	notifiertest.CheckResult(t, retry, err, false, false)

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, got %d: %s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"level":           "INFO",
		"msg":             "notification",
		"rule":            doc.Rule,
		"channel":         doc.Channel,
		"priority":        doc.Priority,
		"customer":        doc.To.Customer,
		"address":         "a**@example.com",
		"entity":          "order/o-1",
		"locale":          doc.Locale,
		"subject":         doc.Subject,
		"body":            doc.Body,
		"idempotency_key": doc.IdempotencyKey,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if strings.Contains(lines[0], doc.To.Address) {
		t.Errorf("address not masked: %s", lines[0])
	}
}
