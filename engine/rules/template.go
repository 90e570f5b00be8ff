package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"sort"
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

// MaxTemplateSteps caps the work of one Render: every range iteration and
// every {{ template }} call is a step. Output is capped by MaxRenderedSize,
// but a loop that prints nothing ({{ range 1000000000 }}{{ end }}, or a
// range over a huge number from an event) would otherwise spin for minutes.
const MaxTemplateSteps = 50_000

// ErrTooManySteps is returned (wrapped) by Render when a render would take
// more than MaxTemplateSteps steps.
var ErrTooManySteps = fmt.Errorf("more than %d loop iterations and template calls", MaxTemplateSteps)

// missingFunc is the template function the loader appends to every output
// action ({{ .order.eta }} becomes {{ .order.eta | _str }}) so that a missing
// field prints as nothing instead of text/template's "<no value>". It also
// refuses a value whose text would exceed MaxRenderedSize before fmt builds
// that text.
const missingFunc = "_str"

// stepFunc is the template function the loader puts first in every range
// body and every defined template ({{ _step }}): it counts steps against
// MaxTemplateSteps and prints nothing. stepsMarker is an empty associated
// template whose presence says that a template has steps to count, so
// Render uses a counting copy (see counted) only when there are loops or calls.
const (
	stepFunc    = "_step"
	stepsMarker = "\x00steps"
)

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
	steps := MaxTemplateSteps // for the whole render, all parts
	for i, p := range []struct {
		name string
		tm   *template.Template
		out  *string
	}{{"subject", lt.Subject, &r.Subject}, {"body", lt.Body, &r.Body}, {"html", lt.HTML, &r.HTML}} {
		part = p.name
		if p.tm == nil {
			continue
		}
		pl := &lt.plain[i]
		pl.once.Do(func() { pl.part = planPlain(p.tm) })
		if pl.part != nil {
			if out, ok := pl.part.render(data); ok {
				*p.out = out
				continue
			}
		}
		var w capWriter
		if p.tm.Lookup(stepsMarker) == nil {
			err = p.tm.Execute(&w, data)
		} else {
			c, _ := lt.counted[i].Get().(*counted)
			if c == nil {
				c, err = newCounted(p.tm)
			}
			if err == nil {
				c.left = steps
				err = c.tm.Execute(&w, data)
				steps = c.left
				lt.counted[i].Put(c)
			}
		}
		if err != nil {
			return Rendered{}, fmt.Errorf("template %q: %s.%s: %w", t.Name, loc, p.name, err)
		}
		*p.out = w.b.String()
	}
	return r, nil
}

// counted is a copy of a template part whose step function counts down
// left. A copy serves one render at a time (LocaleTemplate.counted).
type counted struct {
	tm   *template.Template
	left int
}

func newCounted(tm *template.Template) (*counted, error) {
	c := &counted{}
	clone, err := tm.Clone() // the parse trees are shared
	if err != nil {
		return nil, err
	}
	clone.Funcs(template.FuncMap{stepFunc: func() (string, error) {
		if c.left--; c.left < 0 {
			return "", ErrTooManySteps
		}
		return "", nil
	}})
	c.tm = clone
	return c, nil
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

// parseTemplate parses one part of a template with the given functions,
// rewrites its output actions so missing fields print as nothing, puts a
// step counter in every loop body and defined template, and refuses
// templates that call themselves.
func parseTemplate(name, src string, funcs template.FuncMap) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=zero").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, err
	}
	if err := noRecursion(t); err != nil {
		return nil, err
	}
	counted := false
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		emptyIfMissing(tt.Tree, tt.Tree.Root)
		if countSteps(tt.Tree, tt.Tree.Root) {
			counted = true
		}
		if tt.Name() != name {
			tt.Tree.Root.Nodes = append([]parse.Node{stepAction(tt.Tree, tt.Tree.Root.Pos)}, tt.Tree.Root.Nodes...)
			counted = true
		}
	}
	if counted {
		if _, err := t.New(stepsMarker).Parse(""); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// stepAction is {{ _step }}.
func stepAction(tree *parse.Tree, pos parse.Pos) *parse.ActionNode {
	id := parse.NewIdentifier(stepFunc).SetTree(tree).SetPos(pos)
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{id}}
	return &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos, Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Cmds: []*parse.CommandNode{cmd}}}
}

// countSteps puts {{ _step }} first in every range body under n and
// reports whether there was one.
func countSteps(tree *parse.Tree, n parse.Node) bool {
	found := false
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return false
		}
		for _, c := range n.Nodes {
			found = countSteps(tree, c) || found
		}
	case *parse.IfNode:
		found = countSteps(tree, n.List)
		found = countSteps(tree, n.ElseList) || found
	case *parse.WithNode:
		found = countSteps(tree, n.List)
		found = countSteps(tree, n.ElseList) || found
	case *parse.RangeNode:
		countSteps(tree, n.List)
		countSteps(tree, n.ElseList)
		if n.List == nil {
			n.List = &parse.ListNode{NodeType: parse.NodeList, Pos: n.Pos}
		}
		n.List.Nodes = append([]parse.Node{stepAction(tree, n.Pos)}, n.List.Nodes...)
		found = true
	}
	return found
}

// noRecursion refuses a template that calls itself, directly or through
// others: text/template would go 100,000 calls deep before giving up.
func noRecursion(t *template.Template) error {
	calls := map[string][]string{}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			calls[tt.Name()] = templateCalls(tt.Tree.Root, nil)
		}
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case visiting:
			return fmt.Errorf("template %q calls itself: recursion is not allowed", name)
		case done:
			return nil
		}
		state[name] = visiting
		for _, c := range calls[name] {
			if err := visit(c); err != nil {
				return err
			}
		}
		state[name] = done
		return nil
	}
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	sort.Strings(names) // the same error every time
	for _, n := range names {
		if err := visit(n); err != nil {
			return err
		}
	}
	return nil
}

// templateCalls appends the names of the templates n invokes.
func templateCalls(n parse.Node, out []string) []string {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return out
		}
		for _, c := range n.Nodes {
			out = templateCalls(c, out)
		}
	case *parse.IfNode:
		out = templateCalls(n.ElseList, templateCalls(n.List, out))
	case *parse.WithNode:
		out = templateCalls(n.ElseList, templateCalls(n.List, out))
	case *parse.RangeNode:
		out = templateCalls(n.ElseList, templateCalls(n.List, out))
	case *parse.TemplateNode:
		out = append(out, n.Name)
	}
	return out
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
		missingFunc: func(v any) (any, error) {
			if isNil(v) {
				return "", nil
			}
			if !sizeWithin(v, MaxRenderedSize, false) {
				return nil, ErrOutputTooLarge
			}
			return v, nil
		},
		// Replaced per render (see Render); this one only lets the
		// template parse.
		stepFunc: func() string { return "" },
		// text/template's own printing functions, size-checked first:
		// fmt builds its whole output in memory.
		"print":    sizedPrint(fmt.Sprint),
		"println":  sizedPrint(fmt.Sprintln),
		"printf":   sizedPrintf,
		"html":     sizedEscape(template.HTMLEscapeString),
		"js":       sizedEscape(template.JSEscapeString),
		"urlquery": sizedEscape(url.QueryEscape),
		"upper": func(v any) (string, error) {
			s, err := toText(v)
			return strings.ToUpper(s), err
		},
		"lower": func(v any) (string, error) {
			s, err := toText(v)
			return strings.ToLower(s), err
		},
		"title": func(v any) (string, error) {
			s, err := toText(v)
			return title(s), err
		},
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
			if !sizeWithin(v, MaxRenderedSize-rv.Len()*len(sep), false) {
				return "", fmt.Errorf("join: %w", ErrOutputTooLarge)
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
		"truncate": func(n int, v any) (string, error) {
			s, err := toText(v)
			if err != nil || n <= 0 {
				return "", err
			}
			if utf8.RuneCountInString(s) <= n {
				return s, nil
			}
			r := []rune(s)
			return string(r[:n-1]) + "…", nil
		},
	}
}

// toText is toString for a value that may be too large to print.
func toText(v any) (string, error) {
	if !sizeWithin(v, MaxRenderedSize, false) {
		return "", ErrOutputTooLarge
	}
	return toString(v), nil
}

// sizedPrint is print or println with the size checked first.
func sizedPrint(f func(...any) string) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		if !sizeWithin(args, MaxRenderedSize, false) {
			return "", ErrOutputTooLarge
		}
		return f(args...), nil
	}
}

// sizedEscape is html, js or urlquery (which print their arguments as
// print does, then escape; an escape is at most six bytes per byte).
func sizedEscape(escape func(string) string) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		if !sizeWithin(args, MaxRenderedSize/6, false) {
			return "", ErrOutputTooLarge
		}
		if len(args) == 1 {
			if s, ok := args[0].(string); ok {
				return escape(s), nil
			}
		}
		return escape(fmt.Sprint(args...)), nil
	}
}

// sizedPrintf is printf with the size checked first. Besides the
// arguments, the format's widths and precisions count ("%01000000d" prints
// a million bytes), and an argument may be printed by several verbs
// ("%[1]s%[1]s").
func sizedPrintf(format string, args ...any) (string, error) {
	verbs, pad := printfCost(format)
	largest := 0
	for _, a := range args {
		left := MaxRenderedSize
		if !sizeWithin(a, left, false) {
			return "", ErrOutputTooLarge
		}
		s := sizer{left: left}
		s.value(a, 0)
		largest = max(largest, left-s.left)
		pad += 20 // a *-width or precision is an argument; %!v(EXTRA …) and the like
	}
	total := len(format) + pad + verbs*(largest+20)
	if total > MaxRenderedSize || total < 0 {
		return "", ErrOutputTooLarge
	}
	return fmt.Sprintf(format, args...), nil
}

// printfCost counts the verbs of a printf format and adds up their widths
// and precisions (fmt refuses numbers over 1e6, so each is bounded; a * is
// counted by the caller).
func printfCost(format string) (verbs, pad int) {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if i < len(format) && format[i] == '%' {
			continue
		}
		verbs++
	verb:
		for ; i < len(format); i++ {
			c := format[i]
			switch {
			case '0' <= c && c <= '9':
				n := 0
				for ; i < len(format) && '0' <= format[i] && format[i] <= '9'; i++ {
					n = min(n*10+int(format[i]-'0'), 1e7)
				}
				pad += n
				i--
				continue
			case strings.IndexByte("+-# .*[]", c) >= 0:
				continue
			}
			break verb // the verb letter
		}
	}
	return verbs, pad
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
