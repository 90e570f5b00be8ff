package rules

import (
	"strings"
	"testing"
	"text/template"
	"time"
)

// executeSlow renders one part the way Render did before plain parts:
// text/template's Execute over the rewritten tree, capped.
func executeSlow(tm *template.Template, data map[string]any) (string, error) {
	var w capWriter
	err := tm.Execute(&w, data)
	return w.b.String(), err
}

// checkSameAsTextTemplate renders src through Render (plain when it can
// be) and through text/template, and fails on any difference in output or
// in failing.
func checkSameAsTextTemplate(t *testing.T, src string, data map[string]any) {
	t.Helper()
	tm := mkTemplate(t, "t", [2]string{"en", src})
	want, wantErr := executeSlow(tm.Locales["en"].Body, data)
	got, err := tm.Render("en", "en", data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q with %v: Render error %v, text/template error %v", src, data, err, wantErr)
	}
	if err == nil && got.Body != want {
		t.Fatalf("%q with %v: Render %q, text/template %q", src, data, got.Body, want)
	}
}

func TestPlainPartsArePlanned(t *testing.T) {
	funcs := templateFuncs()
	for src, plain := range map[string]bool{
		"":                                      true,
		"just text":                             true,
		"Order {{ .order.order_id }} is late":   true,
		"{{ .a }}{{ .b.c.d }} and {{- .e -}} x": true,
		"{{ .x | upper }}":                      false,
		"{{ if .x }}y{{ end }}":                 false,
		"{{ range .xs }}{{ . }}{{ end }}":       false,
		"{{ . }}":                               false,
		"{{ $x := .a }}{{ $x }}":                false,
		`{{ "lit" }}`:                           false,
		`{{ define "d" }}x{{ end }}{{ .a }}`:    false,
		`{{ printf "%d" .n }}`:                  false,
	} {
		tm, err := parseTemplate("t", src, funcs)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := planPlain(tm) != nil; got != plain {
			t.Errorf("%q: plain = %t, want %t", src, got, plain)
		}
	}
}

func TestPlainPartsRenderAsTextTemplate(t *testing.T) {
	big := strings.Repeat("x", MaxRenderedSize+1)
	half := strings.Repeat("y", MaxRenderedSize/2+1)
	datas := []map[string]any{
		nil,
		{},
		{"order": nil},
		{"order": "a string, not a map"},
		{"order": map[string]any(nil)},
		{"order": map[string]any{}},
		{"order": map[string]any{"order_id": "o-7", "total": 12900.0, "paid": true, "n": 3, "m": int64(-4), "f": 1e21, "g": 0.1}},
		{"order": map[string]any{"order_id": nil, "total": []any{1.0, "x"}, "paid": map[string]any{"k": 1.0}, "n": time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}},
		{"order": map[string]any{"order_id": map[string]any{"deep": "x"}}},
		{"order": map[string]any{"order_id": big}},
		{"order": map[string]any{"order_id": half, "total": half}},
		{"order": map[string]any{"order_id": func() string { return "f" }}},
		{"order": map[string]any{"order_id": make(chan int)}},
		{"order": &map[string]any{"order_id": "pointer"}},
	}
	for _, src := range []string{
		"Order {{ .order.order_id }}: {{ .order.total }} ({{ .order.paid }}, {{ .order.n }}, {{ .order.m }}, {{ .order.f }}, {{ .order.g }})",
		"{{ .order }}",
		"{{ .order.order_id.deep }}",
		"{{ .missing.order_id }}",
		"{{ .order.order_id }}{{ .order.total }}",
	} {
		for _, d := range datas {
			checkSameAsTextTemplate(t, src, d)
		}
	}
}

// TestPlainPartIsUsed: rendering a plain part works out its plain form
// and renders through it, so the speed-up cannot silently stop applying.
func TestPlainPartIsUsed(t *testing.T) {
	tm := mkTemplate(t, "t", [2]string{"en", "Order {{ .order.order_id }}"})
	r, err := tm.Render("en", "en", map[string]any{"order": map[string]any{"order_id": "o-1"}})
	if err != nil || r.Body != "Order o-1" {
		t.Fatalf("Render = %+v, %v", r, err)
	}
	pl := tm.Locales["en"].plain[1].part
	if pl == nil {
		t.Fatal("the body was not given a plain form")
	}
	if out, ok := pl.render(map[string]any{"order": map[string]any{"order_id": "o-2"}}); !ok || out != "Order o-2" {
		t.Fatalf("plain render = %q, %t", out, ok)
	}
}

// BenchmarkRenderTemplate renders the bench's notification template (a
// subject and a body of plain field references) through Render, which
// takes the plain form, and through text/template as before.
func BenchmarkRenderTemplate(b *testing.B) {
	funcs := templateFuncs()
	subject, err := parseTemplate("t/en/subject", "Order {{ .order.order_id }}: an update (3)", funcs)
	if err != nil {
		b.Fatal(err)
	}
	body, err := parseTemplate("t/en/body", "Your order {{ .order.order_id }} of {{ .order.total }} {{ .order.currency }} is {{ .order.status }}. "+
		"Reason: {{ .event.reason }}; new estimate {{ .event.eta }}. No need to contact us.", funcs)
	if err != nil {
		b.Fatal(err)
	}
	tm := &Template{Name: "t", Locales: map[string]*LocaleTemplate{"en": {Subject: subject, Body: body}}, Order: []string{"en"}}
	data := map[string]any{
		"order": map[string]any{"order_id": "o-0001234", "total": 12900.0, "currency": "EUR", "status": "in_transit"},
		"event": map[string]any{"reason": "carrier_delay", "eta": "2026-12-03T18:00:00Z"},
	}
	b.Run("render=plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tm.Render("en", "en", data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("render=text-template", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := executeSlow(subject, data); err != nil {
				b.Fatal(err)
			}
			if _, err := executeSlow(body, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
