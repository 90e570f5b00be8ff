package rules

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"text/template"
	"time"
)

// mkTemplate builds a template from locale → body (and "subject" from
// locale+"/subject" keys) the way the loader does.
func mkTemplate(t *testing.T, name string, locales ...[2]string) *Template {
	t.Helper()
	funcs := templateFuncs()
	tm := &Template{Name: name, Locales: map[string]*LocaleTemplate{}}
	for _, l := range locales {
		body, err := parseTemplate(name+"/"+l[0]+"/body", l[1], funcs)
		if err != nil {
			t.Fatal(err)
		}
		tm.Locales[l[0]] = &LocaleTemplate{Body: body}
		tm.Order = append(tm.Order, l[0])
	}
	return tm
}

func TestRenderLocaleFallback(t *testing.T) {
	tm := mkTemplate(t, "greet",
		[2]string{"fr", "bonjour"},
		[2]string{"ru", "привет"},
		[2]string{"ru-UA", "привіт"},
		[2]string{"en", "hello"},
		[2]string{"pt_BR", "olá"},
	)
	for _, c := range []struct {
		locale, def, wantLocale, wantBody string
	}{
		{"ru-UA", "en", "ru-UA", "привіт"}, // exact
		{"ru_ua", "en", "ru-UA", "привіт"}, // case and _ do not matter
		{"ru-RU", "en", "ru", "привет"},    // language
		{"ru", "en", "ru", "привет"},
		{"pt-BR", "en", "pt_BR", "olá"},
		{"de-DE", "en", "en", "hello"}, // default
		{"de", "en-GB", "en", "hello"}, // default's language
		{"", "ru", "ru", "привет"},     // no locale: default
		{"de", "", "fr", "bonjour"},    // first defined
		{"de", "it", "fr", "bonjour"},  // default missing too
		{"", "", "fr", "bonjour"},
	} {
		r, err := tm.Render(c.locale, c.def, nil)
		if err != nil || r.Locale != c.wantLocale || r.Body != c.wantBody {
			t.Errorf("Render(%q, %q) = %+v, %v; want locale %q body %q", c.locale, c.def, r, err, c.wantLocale, c.wantBody)
		}
	}
}

func TestRenderParts(t *testing.T) {
	s := mustLoad(t, "testdata/shop.good.yaml", testOptions())
	r, err := s.Templates["dispatch-late"].Render("en", "en", map[string]any{"order": map[string]any{"order_id": "o-7"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Rendered{
		Locale:  "en",
		Subject: "Order o-7 has not left the warehouse yet",
		Body:    "Sorry, order o-7 is taking longer to dispatch than promised.\nWe will write again as soon as it ships.\n",
		HTML:    "<p>Sorry, order <b>o-7</b> is taking longer to dispatch.</p>",
	}
	if r != want {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	// No subject, no html: empty.
	r, err = s.Templates["dispatch-late"].Render("ru", "en", map[string]any{"order": map[string]any{"order_id": "o-7"}})
	if err != nil || r.Subject != "" || r.HTML != "" || r.Locale != "ru" {
		t.Errorf("ru: %+v, %v", r, err)
	}
	// The date function with the customer's time zone.
	r, err = s.Templates["arriving-today"].Render("en", "en", map[string]any{
		"order":    map[string]any{"order_id": "o-7", "eta": "2026-11-21T15:00:00Z"},
		"customer": map[string]any{"timezone": "Europe/Moscow"},
	})
	if err != nil || r.Body != "Order o-7 arrives today, 18:00." {
		t.Errorf("arriving-today: %+v, %v", r, err)
	}
}

func TestRenderMissingFieldsAreEmpty(t *testing.T) {
	tm := mkTemplate(t, "t", [2]string{"en", "[{{ .order.eta }}][{{ .nothing }}][{{ .vars.x }}][{{ .order.eta | default \"soon\" }}][{{ with .order.eta }}{{ . }}{{ else }}none{{ end }}][{{ $x := .order.eta }}{{ $x }}][{{ range .order.skus }}{{ . }},{{ end }}]"})
	r, err := tm.Render("en", "en", map[string]any{"order": map[string]any{"skus": []any{"a", nil, "b"}}, "vars": map[string]any(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[][][][soon][none][][a,,b,]"; r.Body != want {
		t.Errorf("body = %q, want %q", r.Body, want)
	}
}

func TestRenderDefineAndBlock(t *testing.T) {
	tm := mkTemplate(t, "t", [2]string{"en", `{{ define "id" }}#{{ .order_id }}{{ .missing }}{{ end }}{{ template "id" .order }}/{{ block "eta" .order }}{{ .eta }}{{ end }}`})
	r, err := tm.Render("en", "en", map[string]any{"order": map[string]any{"order_id": "o-1"}})
	if err != nil || r.Body != "#o-1/" {
		t.Errorf("body = %q, %v", r.Body, err)
	}
}

func TestRenderOutputCap(t *testing.T) {
	tm := mkTemplate(t, "big", [2]string{"en", `{{ range .items }}{{ . }}{{ end }}`})
	items := make([]string, 70)
	for i := range items {
		items[i] = strings.Repeat("x", 1024)
	}
	_, err := tm.Render("en", "en", map[string]any{"items": items})
	if !errors.Is(err, ErrOutputTooLarge) {
		t.Fatalf("err = %v, want ErrOutputTooLarge", err)
	}
	if !strings.HasPrefix(err.Error(), `template "big": en.body: `) {
		t.Errorf("err = %v", err)
	}
	// Exactly the cap is fine.
	items = items[:64]
	r, err := tm.Render("en", "en", map[string]any{"items": items})
	if err != nil || len(r.Body) != MaxRenderedSize {
		t.Errorf("64 KiB: len %d, %v", len(r.Body), err)
	}
}

func TestRenderExecutionErrors(t *testing.T) {
	for _, c := range []struct {
		src  string
		data map[string]any
	}{
		{`{{ .event.time.Format "2006" }}`, map[string]any{}},                         // method on nil
		{`{{ .t.Format "2006" }}`, map[string]any{"t": (*time.Time)(nil)}},            // nil pointer receiver
		{`{{ index .list 5 }}`, map[string]any{"list": []any{1}}},                     // out of range
		{`{{ date .when "2006" }}`, map[string]any{"when": "yesterday"}},              // bad time
		{`{{ date .when "2006" "Mars/Base" }}`, map[string]any{"when": "2026-01-01"}}, // bad zone
		{`{{ join ", " .n }}`, map[string]any{"n": 5}},                                // not a list
		{`{{ template "nope" }}`, nil},                                                // no such template
		{`{{ call .f }}`, map[string]any{"f": func() string { panic("boom") }}},       // a panicking func
		{`{{ .p.Boom }}`, map[string]any{"p": panicky{}}},                             // a panicking method
	} {
		tm := mkTemplate(t, "bad", [2]string{"en", c.src})
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: panicked: %v", c.src, p)
				}
			}()
			r, err := tm.Render("en", "en", c.data)
			if err == nil {
				t.Errorf("%s: no error, got %+v", c.src, r)
			} else if !strings.HasPrefix(err.Error(), `template "bad": en.body: `) {
				t.Errorf("%s: err = %v", c.src, err)
			}
		}()
	}
	var nilTemplate *Template
	if _, err := nilTemplate.Render("en", "en", nil); err == nil {
		t.Error("nil template rendered")
	}
}

type panicky struct{}

func (panicky) Boom() string { panic("boom") }

func TestTemplateFuncs(t *testing.T) {
	ts := time.Date(2026, 11, 21, 15, 4, 5, 0, time.UTC)
	data := map[string]any{
		"s":     "hello wide world",
		"ru":    "привет мир",
		"list":  []any{"a", 1, 2.5, nil},
		"strs":  []string{"x", "y"},
		"t":     ts,
		"tp":    &ts,
		"iso":   "2026-11-21T15:04:05Z",
		"day":   "2026-11-21",
		"unix":  float64(ts.Unix()),
		"num":   json.Number("1763737445"),
		"total": float64(1500000),
		"empty": "",
		"zero":  0,
	}
	for _, c := range []struct{ src, want string }{
		{`{{ upper .s }}`, "HELLO WIDE WORLD"},
		{`{{ .s | upper }}`, "HELLO WIDE WORLD"},
		{`{{ lower "ABC" }}`, "abc"},
		{`{{ title .s }}`, "Hello Wide World"},
		{`{{ title .ru }}`, "Привет Мир"},
		{`{{ upper .missing }}`, ""},
		{`{{ default "n/a" .missing }}`, "n/a"},
		{`{{ .empty | default "n/a" }}`, "n/a"},
		{`{{ .zero | default "n/a" }}`, "0"},
		{`{{ .s | default "n/a" }}`, "hello wide world"},
		{`{{ join ", " .list }}`, "a, 1, 2.5, "},
		{`{{ .strs | join "+" }}`, "x+y"},
		{`{{ join ", " .missing }}`, ""},
		{`{{ date .t "2006-01-02 15:04" }}`, "2026-11-21 15:04"},
		{`{{ date .tp "15:04" }}`, "15:04"},
		{`{{ date .iso "02.01.2006 15:04" "Europe/Moscow" }}`, "21.11.2026 18:04"},
		{`{{ date .day "2 Jan" }}`, "21 Nov"},
		{`{{ date .unix "15:04:05" }}`, "15:04:05"},
		{`{{ date .num "2006" }}`, "2025"},
		{`{{ date .missing "2006" }}`, ""},
		{`{{ date .iso "15:04" "" }}`, "15:04"},
		{`{{ truncate 5 .s }}`, "hell…"},
		{`{{ .ru | truncate 6 }}`, "приве…"},
		{`{{ truncate 100 .s }}`, "hello wide world"},
		{`{{ truncate 0 .s }}`, ""},
		{`{{ .total }}`, "1.5e+06"},
		{`{{ upper .total }}`, "1500000"},
	} {
		tm := mkTemplate(t, "f", [2]string{"en", c.src})
		r, err := tm.Render("en", "en", data)
		if err != nil || r.Body != c.want {
			t.Errorf("%s = %q, %v; want %q", c.src, r.Body, err, c.want)
		}
	}
}

func TestTemplateFuncsAreSafe(t *testing.T) {
	// Only these, and no helper that reaches outside the data. print,
	// printf, println, html, js and urlquery are text/template's own,
	// replaced by size-checked versions.
	want := map[string]bool{missingFunc: true, stepFunc: true, "upper": true, "lower": true, "title": true, "default": true, "join": true, "date": true, "truncate": true,
		"print": true, "printf": true, "println": true, "html": true, "js": true, "urlquery": true}
	for name := range templateFuncs() {
		if !want[name] {
			t.Errorf("unexpected template func %q", name)
		}
	}
	for _, src := range []string{`{{ env "HOME" }}`, `{{ readFile "/etc/passwd" }}`, `{{ exec "ls" }}`} {
		if _, err := template.New("x").Funcs(templateFuncs()).Parse(src); err == nil {
			t.Errorf("%s parsed", src)
		}
	}
}

func TestSameLocale(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"en", "en", true}, {"en-US", "en_us", true}, {"EN", "en", true}, {"en", "en-US", false}, {"ru", "en", false},
	} {
		if got := sameLocale(c.a, c.b); got != c.want {
			t.Errorf("sameLocale(%q, %q) = %v", c.a, c.b, got)
		}
	}
}
