package rules

import (
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
)

// plainPart is a template part made only of text and plain field
// references ({{ .order.status }}), the shape most notification templates
// have. It renders by map look-ups instead of text/template's reflective
// walk, which was most of the cost of a notification's template (about a
// fifth of the engine goroutine's time in the bench; BENCHMARKS.md).
//
// It renders only what it can render exactly as text/template would, and
// says so: a field of something that is not a map[string]any (a missing
// parent, a time, a list), a value it does not print itself, or output
// over MaxRenderedSize, and Render runs text/template instead, which gives
// the same output or the same error as it always did.
type plainPart struct {
	segs []plainSeg
	// text is the length of the literal text, for the output's first
	// allocation.
	text int
}

// plainSeg is literal text, or (field non-nil) the value at a field path
// from the data.
type plainSeg struct {
	text  string
	field []string
}

// planPlain returns the plain form of t, or nil when t has anything else:
// functions, pipelines, conditions, loops, variables, defined templates.
func planPlain(t *template.Template) *plainPart {
	if t == nil || t.Tree == nil || len(t.Templates()) != 1 {
		return nil
	}
	p := &plainPart{}
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			p.segs = append(p.segs, plainSeg{text: string(n.Text)})
			p.text += len(n.Text)
		case *parse.ActionNode:
			f := plainField(n)
			if f == nil {
				return nil
			}
			p.segs = append(p.segs, plainSeg{field: f.Ident})
		default:
			return nil
		}
	}
	return p
}

// plainField is the field of an output action the loader rewrote to
// {{ .a.b | _str }}, nil for any other action.
func plainField(n *parse.ActionNode) *parse.FieldNode {
	pipe := n.Pipe
	if pipe == nil || len(pipe.Decl) > 0 || len(pipe.Cmds) != 2 {
		return nil
	}
	if len(pipe.Cmds[0].Args) != 1 || len(pipe.Cmds[1].Args) != 1 {
		return nil
	}
	id, ok := pipe.Cmds[1].Args[0].(*parse.IdentifierNode)
	if !ok || id.Ident != missingFunc {
		return nil
	}
	f, ok := pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) == 0 {
		return nil
	}
	return f
}

// render writes the part for data and reports whether it could; on false
// the output is to be discarded.
func (p *plainPart) render(data map[string]any) (string, bool) {
	var b strings.Builder
	b.Grow(p.text + 16*len(p.segs))
	for _, s := range p.segs {
		if s.field == nil {
			b.WriteString(s.text)
		} else if !printPlain(&b, lookupPlain(data, s.field)) {
			return "", false
		}
		if b.Len() > MaxRenderedSize {
			return "", false
		}
	}
	return b.String(), true
}

// notPlain marks a field path text/template would treat otherwise than a
// missing value: a field of nil or of a non-map.
type notPlain struct{}

// lookupPlain follows path through maps as text/template does with
// missingkey=zero: a missing key is nil, and only the last step may be one.
func lookupPlain(data map[string]any, path []string) any {
	var v any = data
	for i, name := range path {
		m, ok := v.(map[string]any)
		if !ok || (m == nil && i > 0) {
			return notPlain{}
		}
		v = m[name]
	}
	return v
}

// printPlain writes v as text/template prints it after _str (nil as
// nothing, fmt's form otherwise) for the scalars decoded JSON and
// expressions produce, and reports false for anything else.
func printPlain(b *strings.Builder, v any) bool {
	switch x := v.(type) {
	case nil:
	case string:
		if len(x) > MaxRenderedSize {
			return false
		}
		b.WriteString(x)
	case float64, bool, int, int64:
		fmt.Fprint(b, x)
	default:
		return false
	}
	return true
}
