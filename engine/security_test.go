package engine_test

import (
	"strings"
	"testing"
)

// The claims of docs/security.md about what a rule can reach at run time,
// checked through the real engine.

// TestTemplatesSeeDataNotHelpers: the expression helpers (now, sent,
// count_sent, contacted_within) are not in template data, so a template
// can neither print nor `call` them.
func TestTemplatesSeeDataNotHelpers(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: look
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: look }
  - name: call-sent
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: call-sent }
  - name: call-count
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: call-count }
templates:
  look: { en: { body: "[{{ .now }}|{{ .sent }}|{{ .count_sent }}|{{ .contacted_within }}] {{ .order.order_id }} {{ .rule }}" } }
  call-sent: { en: { body: "{{ call .sent \"look\" .order.order_id }}" } }
  call-count: { en: { body: "{{ call .count_sent \"look\" .order.order_id }}" } }
`, baseConfig)
	h.customer("c-1", map[string]any{"email": "ann@example.com"})
	h.emit("orders.created", order("o-1", "c-1"))
	sent := h.sent()
	if len(sent) != 1 || sent[0].n.Body != "[|||] o-1 look" {
		t.Fatalf("sent %+v", sent)
	}
	reasons := h.reasons("error")
	if len(reasons) != 2 {
		t.Fatalf("error decisions %q, want the two templates that call a helper", reasons)
	}
	for _, r := range reasons {
		if !strings.Contains(r, "call of nil") {
			t.Errorf("reason %q", r)
		}
	}
}

// TestVarsMustBeData: a var that is a function, or too large to travel in
// the notification document, is an error decision, not a broken outbox
// row; so is a dedup key that would print as megabytes.
func TestVarsMustBeData(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: func-var
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: t, vars: { f: "[now, 1][0]" } }
  - name: big-var
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: t, vars: { refs: "map(1..1000, event.note)" } }
  - name: big-dedup-key
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: t }
    dedup: { key: "map(1..1000, event.note)" }
  - name: fine
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: t, vars: { n: "len(event.note)" } }
templates:
  t: { en: { body: "n={{ .vars.n }}" } }
`, baseConfig)
	h.customer("c-1", map[string]any{"email": "ann@example.com"})
	o := order("o-1", "c-1")
	o["note"] = strings.Repeat("x", 10_000)
	h.emit("orders.created", o)
	eq(t, "errors", h.reasons("error"), []string{
		"vars.f: value cannot be encoded as JSON: json: unsupported type: func() time.Time",
		"vars.refs: value larger than 65536 bytes as JSON",
		"dedup.key: value larger than 65536 bytes as JSON",
	})
	if s := h.sent(); len(s) != 1 || s[0].n.Rule != "fine" || s[0].n.Body != "n=10000" {
		t.Fatalf("sent %+v", s)
	}
}

// TestExpressionsAreBoundedInTheEngine: an `if` that would allocate
// gigabytes is an error decision (expr's memory budget on the engine's
// VM, and the loader's string guards), and the engine carries on.
func TestExpressionsAreBoundedInTheEngine(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: huge-range
    on: orders.created
    entity: order
    if: "len(map(1..100000000, #)) > 0"
    notify: { to: order.customer_id, template: t }
  - name: huge-string
    on: orders.created
    entity: order
    if: repeat(repeat("x", 999999), 999999) != ""
    notify: { to: order.customer_id, template: t }
  - name: fine
    on: orders.created
    entity: order
    notify: { to: order.customer_id, template: t }
templates:
  t: { en: { body: "hi" } }
`, baseConfig)
	h.customer("c-1", map[string]any{"email": "ann@example.com"})
	h.emit("orders.created", order("o-1", "c-1"))
	reasons := h.reasons("error")
	if len(reasons) != 2 || !strings.Contains(reasons[0], "memory budget exceeded") || !strings.Contains(reasons[1], "string longer than 65536 bytes") {
		t.Fatalf("error decisions %q", reasons)
	}
	if s := h.sent(); len(s) != 1 || s[0].n.Rule != "fine" {
		t.Fatalf("sent %+v", s)
	}
}
