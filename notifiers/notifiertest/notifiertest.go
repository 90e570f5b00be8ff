// Package notifiertest holds helpers shared by the channel packages' tests:
// a standard notification, YAML config nodes, the example-config check, a
// retry table runner and the no-secret-in-output assertions.
package notifiertest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Sample returns a fully populated notification; each call returns a fresh
// copy that the test may modify.
func Sample() *notifiers.Notification {
	return &notifiers.Notification{
		ID:             "01JDELAYED0000000000000001",
		IdempotencyKey: "delivery-delayed/o-1/2026-11-24T12:00:00Z",
		Rule:           "delivery-delayed",
		Channel:        "test",
		Priority:       "high",
		To:             notifiers.Recipient{Customer: "c-1", Address: "ann@example.com"},
		Locale:         "ru",
		Subject:        "Your order o-1 is late",
		Body:           "New delivery estimate: 2026-11-23 12:00.",
		HTML:           "<p>New delivery estimate: <b>2026-11-23 12:00</b>.</p>",
		Entity:         notifiers.EntityRef{Type: "order", Key: "o-1"},
		Vars:           map[string]any{"new_eta": "2026-11-23T12:00:00Z"},
		CreatedAt:      time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
	}
}

// Node parses YAML source (a channel's mapping) into a node. Empty source
// gives nil, as for a channel with no keys.
func Node(t testing.TB, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("parse yaml: %v", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// isCommonKey reports the keys the config loader removes before a Factory
// sees a channel's node (see notifiers.Factory).
func isCommonKey(k string) bool { return k == "type" || k == "address_field" || k == "timeout" }

// ExampleChannels parses an example.yaml of the form
//
//	channels:
//	  name: { type: <typ>, …keys }
//
// the way the config loader does: ${VAR} references are expanded (to
// "example-VAR"), every channel must be of type typ, and the common keys
// are stripped. It returns each channel's node by name and fails the test
// if there are none.
func ExampleChannels(t testing.TB, src []byte, typ string) map[string]*yaml.Node {
	t.Helper()
	envRef := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	expanded := envRef.ReplaceAllString(string(src), "example-$1")
	var doc struct {
		Channels map[string]yaml.Node `yaml:"channels"`
	}
	dec := yaml.NewDecoder(strings.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("example: %v", err)
	}
	if len(doc.Channels) == 0 {
		t.Fatalf("example: no channels")
	}
	out := map[string]*yaml.Node{}
	for name, n := range doc.Channels {
		if n.Kind != yaml.MappingNode {
			t.Fatalf("example channel %q: want a mapping", name)
		}
		stripped := n
		stripped.Content = nil
		gotType := ""
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if k == "type" {
				gotType = n.Content[i+1].Value
			}
			if isCommonKey(k) {
				continue
			}
			stripped.Content = append(stripped.Content, n.Content[i], n.Content[i+1])
		}
		if gotType != typ {
			t.Fatalf("example channel %q: type %q, want %q", name, gotType, typ)
		}
		out[name] = &stripped
	}
	return out
}

// AssertNoSecret fails the test if secret occurs in any of texts.
func AssertNoSecret(t testing.TB, secret string, texts ...string) {
	t.Helper()
	if secret == "" {
		t.Fatal("AssertNoSecret: empty secret proves nothing")
	}
	for i, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("secret leaked in text #%d: %q", i, s)
		}
	}
}

// AssertNotLeaked formats every value with %v, %+v and %#v (and an error's
// Error()) and fails the test if secret occurs in any of them. Nil values
// are skipped.
func AssertNotLeaked(t testing.TB, secret string, values ...any) {
	t.Helper()
	var texts []string
	for _, v := range values {
		if v == nil {
			continue
		}
		if err, ok := v.(error); ok {
			texts = append(texts, err.Error())
		}
		texts = append(texts, fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v))
	}
	AssertNoSecret(t, secret, texts...)
}

// Case is one row of a retry table: arrange what the fake peer does, then
// expect one Notify call to return (WantRetry, err != nil == WantErr).
type Case struct {
	Name string
	// Behave arranges the fake peer for this case (may be nil).
	Behave func(t testing.TB)
	// Notification defaults to Sample().
	Notification *notifiers.Notification
	// Timeout is the per-attempt deadline the dispatcher would set;
	// default 5s.
	Timeout   time.Duration
	WantRetry bool
	WantErr   bool
	// Check, if set, inspects the error further (may be nil error).
	Check func(t testing.TB, err error)
}

// RunCases runs each case as a subtest against n, in order (cases usually
// share one fake server, so they do not run in parallel).
func RunCases(t *testing.T, n notifiers.Notifier, cases []Case) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if c.Behave != nil {
				c.Behave(t)
			}
			doc := c.Notification
			if doc == nil {
				doc = Sample()
			}
			timeout := c.Timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			retry, err := n.Notify(ctx, doc)
			CheckResult(t, retry, err, c.WantRetry, c.WantErr)
			if c.Check != nil {
				c.Check(t, err)
			}
		})
	}
}

// CheckResult asserts one Notify result, including the contract that a nil
// error never asks for a retry.
func CheckResult(t testing.TB, retry bool, err error, wantRetry, wantErr bool) {
	t.Helper()
	if err == nil && retry {
		t.Errorf("retry=true with a nil error")
	}
	if (err != nil) != wantErr {
		t.Fatalf("err = %v, want error: %v", err, wantErr)
	}
	if retry != wantRetry {
		t.Fatalf("retry = %v, want %v (err: %v)", retry, wantRetry, err)
	}
}
