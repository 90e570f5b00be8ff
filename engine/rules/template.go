package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxRenderedSize caps each rendered part (subject, body, html) of a
// notification.
const MaxRenderedSize = 64 << 10

// ErrOutputTooLarge is returned (wrapped) by Render when a part would exceed
// MaxRenderedSize.
var ErrOutputTooLarge = fmt.Errorf("output exceeds %d bytes", MaxRenderedSize)

// missingFunc is the template function the loader appends to every output
// action ({{ .order.eta }} becomes {{ .order.eta | _str }}) so that a missing
// field prints as nothing instead of text/template's "<no value>".
const missingFunc = "_str"

// Render executes the template in the best locale for the recipient: the
// exact locale ("ru-RU"; case and '-'/'_' do not matter), then its language
// ("ru"), then defaultLocale (and its language), then the first locale the
// template defines. Rendered.Locale says which one was used. data is what
// the parts see as "." (event, msg, the entity by name, customer, vars,
// rule, promise).
//
// A part that fails to execute, or whose output would exceed
// MaxRenderedSize, is an error naming the template, locale and part; Render
// never panics.
func (t *Template) Render(locale, defaultLocale string, data map[string]any) (r Rendered, err error) {
	if t == nil || len(t.Locales) == 0 {
		return Rendered{}, errors.New("template has no locales")
	}
	loc := t.pick(locale, defaultLocale)
	lt := t.Locales[loc]
	part := ""
	defer func() {
		if p := recover(); p != nil {
			r, err = Rendered{}, fmt.Errorf("template %q: %s.%s: panic: %v", t.Name, loc, part, p)
		}
	}()
	r.Locale = loc
	for _, p := range []struct {
		name string
		tm   *template.Template
		out  *string
	}{{"subject", lt.Subject, &r.Subject}, {"body", lt.Body, &r.Body}, {"html", lt.HTML, &r.HTML}} {
		part = p.name
		if p.tm == nil {
			continue
		}
		var w capWriter
		if err := p.tm.Execute(&w, data); err != nil {
			return Rendered{}, fmt.Errorf("template %q: %s.%s: %w", t.Name, loc, p.name, err)
		}
		*p.out = w.b.String()
	}
	return r, nil
}

// pick chooses the locale key to render; see Render.
func (t *Template) pick(locale, defaultLocale string) string {
	for _, want := range []string{locale, language(locale), defaultLocale, language(defaultLocale)} {
		if want == "" {
			continue
		}
		if _, ok := t.Locales[want]; ok {
			return want
		}
		for _, k := range t.Order {
			if sameLocale(k, want) {
				return k
			}
		}
	}
	if len(t.Order) > 0 {
		return t.Order[0]
	}
	for k := range t.Locales { // a Template built by hand without Order
		return k
	}
	return ""
}

// language is the language part of a locale ("ru" for "ru-RU"), or "" if
// the locale has no other part.
func language(l string) string {
	if i := strings.IndexAny(l, "-_"); i > 0 {
		return l[:i]
	}
	return ""
}

// sameLocale compares locales ignoring case and treating '_' as '-'.
func sameLocale(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// capWriter collects output up to MaxRenderedSize.
type capWriter struct{ b strings.Builder }

func (w *capWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > MaxRenderedSize {
		return 0, ErrOutputTooLarge
	}
	return w.b.Write(p)
}

// parseTemplate parses one part of a template with the given functions and
// rewrites its output actions so missing fields print as nothing.
func parseTemplate(name, src string, funcs template.FuncMap) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=zero").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, err
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			emptyIfMissing(tt.Tree, tt.Tree.Root)
		}
	}
	return t, nil
}

func emptyIfMissing(tree *parse.Tree, n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			emptyIfMissing(tree, c)
		}
	case *parse.ActionNode:
		if n.Pipe == nil || len(n.Pipe.Decl) > 0 {
			return // {{ $x := … }} prints nothing
		}
		id := parse.NewIdentifier(missingFunc).SetTree(tree).SetPos(n.Pos)
		n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos, Args: []parse.Node{id}})
	case *parse.IfNode:
		emptyIfMissing(tree, n.List)
		emptyIfMissing(tree, n.ElseList)
	case *parse.RangeNode:
		emptyIfMissing(tree, n.List)
		emptyIfMissing(tree, n.ElseList)
	case *parse.WithNode:
		emptyIfMissing(tree, n.List)
		emptyIfMissing(tree, n.ElseList)
	}
}

// templateFuncs is the FuncMap every template gets. It is deliberately
// small and has no access to files, network, environment or processes. The
// zone cache is per rule set.
func templateFuncs() template.FuncMap {
	var zones sync.Map // name → *time.Location
	loadZone := func(name string) (*time.Location, error) {
		if l, ok := zones.Load(name); ok {
			return l.(*time.Location), nil
		}
		if name == "Local" {
			return nil, errors.New(`unknown time zone "Local"`)
		}
		l, err := time.LoadLocation(name)
		if err != nil {
			return nil, err
		}
		zones.Store(name, l)
		return l, nil
	}
	return template.FuncMap{
		missingFunc: func(v any) any {
			if isNil(v) {
				return ""
			}
			return v
		},
		"upper": func(v any) string { return strings.ToUpper(toString(v)) },
		"lower": func(v any) string { return strings.ToLower(toString(v)) },
		"title": func(v any) string { return title(toString(v)) },
		"default": func(def, v any) any {
			if isEmpty(v) {
				return def
			}
			return v
		},
		"join": func(sep string, v any) (string, error) {
			if isNil(v) {
				return "", nil
			}
			rv := reflect.ValueOf(v)
			if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
				return "", fmt.Errorf("join: cannot join %T", v)
			}
			parts := make([]string, rv.Len())
			for i := range parts {
				parts[i] = toString(rv.Index(i).Interface())
			}
			return strings.Join(parts, sep), nil
		},
		"date": func(v any, layout string, zone ...string) (string, error) {
			t, ok, err := toTime(v)
			if err != nil || !ok {
				return "", err
			}
			if len(zone) > 1 {
				return "", errors.New("date: want a value, a layout and at most one time zone")
			}
			if len(zone) == 1 && zone[0] != "" {
				loc, err := loadZone(zone[0])
				if err != nil {
					return "", fmt.Errorf("date: %w", err)
				}
				t = t.In(loc)
			}
			return t.Format(layout), nil
		},
		"truncate": func(n int, v any) string {
			s := toString(v)
			if n <= 0 {
				return ""
			}
			if utf8.RuneCountInString(s) <= n {
				return s
			}
			r := []rune(s)
			return string(r[:n-1]) + "…"
		},
	}
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// isEmpty is what `default` replaces: nil, "", and empty lists and maps.
// Zero and false are values, not gaps.
func isEmpty(v any) bool {
	if isNil(v) {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	}
	return false
}

func toString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32)
	case fmt.Stringer:
		if isNil(v) {
			return ""
		}
		return v.String()
	}
	if isNil(v) {
		return ""
	}
	return fmt.Sprint(v)
}

// title upper-cases the first letter of every word.
func title(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	start := true
	for _, r := range s {
		if start && unicode.IsLetter(r) {
			r = unicode.ToTitle(r)
		}
		start = unicode.IsSpace(r) || r == '-'
		b.WriteRune(r)
	}
	return b.String()
}

// toTime reads a time.Time, an RFC 3339 (or date-only) string, or Unix
// seconds. ok is false for nil or "".
func toTime(v any) (t time.Time, ok bool, err error) {
	switch v := v.(type) {
	case nil:
		return time.Time{}, false, nil
	case time.Time:
		return v, true, nil
	case *time.Time:
		if v == nil {
			return time.Time{}, false, nil
		}
		return *v, true, nil
	case string:
		if v == "" {
			return time.Time{}, false, nil
		}
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
			if t, err := time.Parse(layout, v); err == nil {
				return t, true, nil
			}
		}
		return time.Time{}, false, fmt.Errorf("date: cannot parse %q as a time (want RFC 3339)", v)
	case int:
		return time.Unix(int64(v), 0).UTC(), true, nil
	case int64:
		return time.Unix(v, 0).UTC(), true, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return time.Time{}, false, fmt.Errorf("date: cannot use %v as a time", v)
		}
		sec, frac := math.Modf(v)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return time.Time{}, false, fmt.Errorf("date: cannot use %q as a time", v.String())
		}
		return toTime(f)
	}
	return time.Time{}, false, fmt.Errorf("date: cannot use %T as a time", v)
}
