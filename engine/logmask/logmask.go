// Package logmask is a slog.Handler that masks customer addresses — e-mail
// addresses and international phone numbers (+ and 7 to 15 digits) — in
// every message, string attribute and error the daemon logs, as
// notifiers.MaskAddress does ("ann@example.com" → "a**@example.com").
//
// Call sites already log customer keys rather than addresses, and channels
// mask what they log; this is the second line of defence for text nobody
// controls: a channel's error reply that echoes the recipient, an
// expression error quoting a field value, a template body. Phone numbers
// written without a leading + cannot be told from ids and are not masked.
package logmask

import (
	"context"
	"log/slog"
	"strings"

	"github.com/proactived/proactived/notifiers"
)

// Handler masks addresses before passing records on.
type Handler struct {
	next slog.Handler
}

var _ slog.Handler = (*Handler)(nil)

// New wraps next. Wrapping a Handler again is a no-op.
func New(next slog.Handler) slog.Handler {
	if _, ok := next.(*Handler); ok {
		return next
	}
	return &Handler{next: next}
}

// Enabled reports whether the wrapped handler handles the level.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle masks the record and passes it on. A record with nothing to mask
// is passed as it is.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	dirty := Mask(r.Message) != r.Message
	if !dirty {
		r.Attrs(func(a slog.Attr) bool {
			_, changed := maskAttr(a)
			dirty = changed
			return !changed
		})
	}
	if !dirty {
		return h.next.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, Mask(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		m, _ := maskAttr(a)
		nr.AddAttrs(m)
		return true
	})
	return h.next.Handle(ctx, nr)
}

// WithAttrs masks the attributes once, when they are attached.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i], _ = maskAttr(a)
	}
	return &Handler{next: h.next.WithAttrs(out)}
}

// WithGroup opens a group on the wrapped handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name)}
}

// maskAttr returns the attribute with addresses masked in its strings,
// errors and groups, and whether anything changed.
func maskAttr(a slog.Attr) (slog.Attr, bool) {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if m := Mask(s); m != s {
			return slog.String(a.Key, m), true
		}
	case slog.KindGroup:
		g := v.Group()
		var out []slog.Attr
		for i, ga := range g {
			m, changed := maskAttr(ga)
			if changed && out == nil {
				out = make([]slog.Attr, len(g))
				copy(out, g[:i])
			}
			if out != nil {
				out[i] = m
			}
		}
		if out != nil {
			return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}, true
		}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			s := err.Error()
			if m := Mask(s); m != s {
				return slog.String(a.Key, m), true
			}
		}
	}
	if v.Kind() != a.Value.Kind() {
		return slog.Attr{Key: a.Key, Value: v}, false
	}
	return a, false
}

// Mask returns s with every e-mail address and +phone number masked. It
// is idempotent: a masked address is not masked again.
func Mask(s string) string {
	if strings.IndexByte(s, '@') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	var b strings.Builder
	last := 0 // s[last:] is not yet copied to b
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '@':
			start, end, ok := emailAt(s, i)
			if !ok || start < last {
				continue
			}
			b.WriteString(s[last:start])
			b.WriteString(notifiers.MaskAddress(s[start:end]))
			last, i = end, end-1
		case '+':
			end, ok := phoneAt(s, i)
			if !ok || i < last {
				continue
			}
			b.WriteString(s[last:i])
			b.WriteString(notifiers.MaskAddress(s[i:end]))
			last, i = end, end-1
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// emailAt finds the address around the '@' at i: a non-empty local part
// and a domain with at least one dot.
func emailAt(s string, at int) (start, end int, ok bool) {
	start = at
	for start > 0 && isLocal(s[start-1]) {
		start--
	}
	end = at + 1
	for end < len(s) && isDomain(s[end]) {
		end++
	}
	for end > at+1 && s[end-1] == '.' { // a sentence's full stop
		end--
	}
	if start == at || !strings.Contains(s[at+1:end], ".") {
		return 0, 0, false
	}
	return start, end, true
}

func isLocal(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isDomain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-'
}

// phoneAt finds a phone number at the '+' at i: 7 to 15 digits, which may
// be grouped by single spaces, dashes or parentheses.
func phoneAt(s string, plus int) (end int, ok bool) {
	digits := 0
	end = plus + 1
	for j := plus + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c >= '0' && c <= '9':
			digits++
			end = j + 1
		case c == ' ' || c == '-' || c == '(' || c == ')':
			if j+1 >= len(s) || !(s[j+1] >= '0' && s[j+1] <= '9' || s[j+1] == '(') {
				return end, digits >= 7 && digits <= 15
			}
		default:
			return end, digits >= 7 && digits <= 15
		}
	}
	return end, digits >= 7 && digits <= 15
}
