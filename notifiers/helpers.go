package notifiers

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultAttemptTimeout bounds one delivery attempt when the caller's
// context carries no deadline. The engine's dispatcher always sets one; this
// only keeps a channel used on its own (tests, embedding) from hanging.
const DefaultAttemptTimeout = 30 * time.Second

// WithDefaultDeadline returns ctx unchanged when it already has a deadline,
// else a child bounded by DefaultAttemptTimeout.
func WithDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultAttemptTimeout)
}

// Scrub replaces every occurrence of each non-empty secret in s with
// "<secret>". Channels pass error text from libraries through it before
// returning, as a second line of defence after never formatting secrets.
func Scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "<secret>")
		}
	}
	return s
}

// Snippet renders at most max bytes of a peer's response for an error
// message: valid UTF-8, control characters and runs of white space folded
// into single spaces, "…" when cut.
func Snippet(b []byte, max int) string {
	cut := false
	if len(b) > max {
		b, cut = b[:max], true
		// Drop a rune split by the cut.
		for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
			if utf8.RuneStart(b[i]) {
				if !utf8.FullRune(b[i:]) {
					b = b[:i]
				}
				break
			}
		}
	}
	var sb strings.Builder
	space := false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == utf8.RuneError && size == 1 {
			r = '?'
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			if !space && sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		sb.WriteRune(r)
	}
	out := strings.TrimRight(sb.String(), " ")
	if cut {
		out += "…"
	}
	return out
}
