package event

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// fastObject decodes a JSON object into the normalized map Decode builds
// (integral numbers as int, others as float64), in one pass and without
// reflection — several times cheaper than encoding/json with UseNumber
// followed by normalize, which is the biggest per-event cost of intake.
//
// It is only a fast path: on anything it does not handle exactly like
// encoding/json (a syntax error, trailing data, deep nesting) it reports
// ok=false and Decode runs the encoding/json path, so rejections and their
// messages are unchanged. FuzzFastObject checks the two agree.
func fastObject(b []byte, in *Interner) (m map[string]any, ok bool) {
	if in != nil {
		in.mu.Lock()
		defer in.mu.Unlock()
	}
	p := fastParser{b: b, in: in}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, false
	}
	v, ok := p.object(0)
	if !ok {
		return nil, false
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, false
	}
	return v, true
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// Strings are copied out of the body one by one: substrings of one copy
// of the whole body allocate less but would keep every event body alive
// for as long as any one of its values sits in a cached entity.
type fastParser struct {
	b []byte
	i int
	// in, if set, shares keys and short values among objects (intern.go);
	// the caller holds its lock.
	in *Interner
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object parses from the '{' at p.i.
func (p *fastParser) object(depth int) (map[string]any, bool) {
	if depth >= maxDepth {
		return nil, false
	}
	p.i++ // '{'
	m := make(map[string]any, 16)
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return m, true
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, false
		}
		k, ok := p.key()
		if !ok {
			return nil, false
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, false
		}
		p.i++
		p.ws()
		v, ok := p.value(depth + 1)
		if !ok {
			return nil, false
		}
		m[k] = v
		p.ws()
		if p.i >= len(p.b) {
			return nil, false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.ws()
		case '}':
			p.i++
			return m, true
		default:
			return nil, false
		}
	}
}

func (p *fastParser) array(depth int) ([]any, bool) {
	if depth >= maxDepth {
		return nil, false
	}
	p.i++ // '['
	out := []any{}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return out, true
	}
	for {
		v, ok := p.value(depth + 1)
		if !ok {
			return nil, false
		}
		out = append(out, v)
		p.ws()
		if p.i >= len(p.b) {
			return nil, false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.ws()
		case ']':
			p.i++
			return out, true
		default:
			return nil, false
		}
	}
}

func (p *fastParser) value(depth int) (any, bool) {
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		if p.in != nil {
			if b, ok := p.plain(); ok {
				return p.in.value(b), true
			}
		}
		return p.str()
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, false
}

func (p *fastParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// key parses an object's key at p.i, shared through the interner when
// there is one.
func (p *fastParser) key() (string, bool) {
	if p.in != nil {
		if b, ok := p.plain(); ok {
			return p.in.key(b), true
		}
	}
	return p.str()
}

// plain returns the bytes of the string at p.i and moves past it if it is
// plain ASCII without escapes; otherwise it moves nothing and says no.
func (p *fastParser) plain() ([]byte, bool) {
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i+1 : j]
			p.i = j + 1
			return s, true
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return nil, false
		}
	}
	return nil, false
}

// str parses the string at p.i. Plain ASCII without escapes (almost every
// key and value) becomes a string directly; anything else is unquoted by
// encoding/json, so escapes, surrogates and invalid UTF-8 come out exactly
// as before.
func (p *fastParser) str() (string, bool) {
	if b, ok := p.plain(); ok {
		return string(b), true
	}
	start := p.i
	p.i++ // opening quote
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			var s string
			if err := json.Unmarshal(p.b[start:p.i], &s); err != nil {
				return "", false
			}
			return s, true
		case c == '\\':
			p.i += 2 // the escaped byte cannot end the string
			continue
		case c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

// number validates JSON number syntax and converts as normalize does:
// int when it parses as a base-10 int64, else float64.
func (p *fastParser) number() (any, bool) {
	start := p.i
	b := p.b
	if b[p.i] == '-' {
		p.i++
	}
	if p.i >= len(b) {
		return nil, false
	}
	switch {
	case b[p.i] == '0':
		p.i++
	case b[p.i] >= '1' && b[p.i] <= '9':
		for p.i < len(b) && b[p.i] >= '0' && b[p.i] <= '9' {
			p.i++
		}
	default:
		return nil, false
	}
	integral := true
	if p.i < len(b) && b[p.i] == '.' {
		integral = false
		p.i++
		if !p.digits() {
			return nil, false
		}
	}
	if p.i < len(b) && (b[p.i] == 'e' || b[p.i] == 'E') {
		integral = false
		p.i++
		if p.i < len(b) && (b[p.i] == '+' || b[p.i] == '-') {
			p.i++
		}
		if !p.digits() {
			return nil, false
		}
	}
	s := p.b[start:p.i]
	if integral {
		if n, err := strconv.ParseInt(string(s), 10, 64); err == nil {
			return int(n), true
		}
	}
	f, _ := strconv.ParseFloat(string(s), 64) // as normalize: out of range → ±Inf
	return f, true
}

func (p *fastParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
