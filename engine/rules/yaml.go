package rules

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// fileLoader is the state of one file being decoded.
type fileLoader struct {
	l     *loader
	path  string
	src   []byte
	lines [][]byte // split lazily, for block scalar indentation
}

func (f *fileLoader) pos(n *yaml.Node) Pos { return Pos{File: f.path, Line: n.Line, Col: n.Column} }

// ctx says what a message is about: the thing (`rule "x"`) and the key path
// inside it (`notify.priority`). Messages read
// `rule "x": notify.priority: unknown priority "urgent"`.
type ctx struct {
	f     *fileLoader
	thing string
	path  string
}

func (c ctx) sub(key string) ctx {
	if c.path == "" {
		c.path = key
	} else {
		c.path += "." + key
	}
	return c
}

func (c ctx) prefix() string {
	switch {
	case c.thing == "":
		return c.path
	case c.path == "":
		return c.thing
	}
	return c.thing + ": " + c.path
}

func (c ctx) errAt(p Pos, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if pre := c.prefix(); pre != "" {
		msg = pre + ": " + msg
	}
	c.f.l.add(p, msg)
}

func (c ctx) errf(n *yaml.Node, format string, a ...any) { c.errAt(c.f.pos(n), format, a...) }

// resolve follows aliases (*anchor) to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// kindName names what a node is, for "expected a map, got a list".
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return "a string"
	}
	return "something else"
}

// kv is one entry of a map, key and value.
type kv struct{ k, v *yaml.Node }

// entries returns the entries of map n in file order, reporting a node that
// is not a map, keys that are not strings and repeated keys. If known is not
// nil, other keys are reported as unknown (and left out).
func (c ctx) entries(n *yaml.Node, known []string) ([]kv, bool) {
	return c.entriesOnce(n, known, map[*yaml.Node]bool{})
}

// entriesOnce is entries; merged holds the maps already merged in, so that
// each is merged once: merges of merges through aliases would otherwise
// take exponential time (a "billion laughs" file).
func (c ctx) entriesOnce(n *yaml.Node, known []string, merged map[*yaml.Node]bool) ([]kv, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		c.errf(n, "expected a map, got %s", kindName(n))
		return nil, false
	}
	seen := map[string]bool{}
	var out, fromMerge []kv
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || isNull(k) {
			c.errf(k, "expected a string key, got %s", kindName(k))
			continue
		}
		if k.Tag == "!!merge" {
			fromMerge = append(fromMerge, c.merge(v, known, merged)...)
			continue
		}
		if seen[k.Value] {
			c.errf(k, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		if known != nil && !contains(known, k.Value) {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if s := suggest(k.Value, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			c.errf(k, "%s", msg)
			continue
		}
		out = append(out, kv{k, v})
	}
	// Merged entries (<<: *anchor) come after, unless given explicitly.
	for _, e := range fromMerge {
		if !seen[e.k.Value] {
			seen[e.k.Value] = true
			out = append(out, e)
		}
	}
	return out, true
}

// merge returns the entries a merge key (<<) brings in: those of a map, or
// of a list of maps, earlier maps first.
func (c ctx) merge(v *yaml.Node, known []string, merged map[*yaml.Node]bool) []kv {
	var maps []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		maps = []*yaml.Node{v}
	case yaml.SequenceNode:
		for _, m := range v.Content {
			maps = append(maps, resolve(m))
		}
	default:
		c.errf(v, "merge (<<) needs a map or a list of maps, got %s", kindName(v))
		return nil
	}
	var out []kv
	for _, m := range maps {
		if m.Kind != yaml.MappingNode {
			c.errf(m, "merge (<<) needs a map or a list of maps, got %s", kindName(m))
			continue
		}
		if merged[m] {
			continue // its entries are in already, and earlier ones win
		}
		merged[m] = true
		es, _ := c.entriesOnce(m, known, merged)
		out = append(out, es...)
	}
	return out
}

// fields is entries by key.
func (c ctx) fields(n *yaml.Node, known ...string) (map[string]kv, bool) {
	es, ok := c.entries(n, known)
	m := make(map[string]kv, len(es))
	for _, e := range es {
		m[e.k.Value] = e
	}
	return m, ok
}

// list returns the items of a sequence.
func (c ctx) list(n *yaml.Node) ([]*yaml.Node, bool) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		c.errf(n, "expected a list, got %s", kindName(n))
		return nil, false
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		out[i] = resolve(item)
	}
	return out, true
}

// str returns a scalar's text. Numbers and booleans are taken as written.
func (c ctx) str(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		if isNull(n) {
			c.errf(n, "missing value")
		} else {
			c.errf(n, "expected a string, got %s", kindName(n))
		}
		return "", false
	}
	return n.Value, true
}

// duration parses a non-negative duration; positive if required.
func (c ctx) duration(n *yaml.Node, positive bool) (time.Duration, bool) {
	s, ok := c.str(n)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	switch {
	case err != nil:
		c.errf(n, "%v", err)
		return 0, false
	case positive && d <= 0:
		c.errf(n, "duration %q must be positive", s)
		return 0, false
	case d < 0:
		c.errf(n, "duration %q must not be negative", s)
		return 0, false
	}
	return d, true
}

// subject checks a subject pattern used in a rule file. Besides being valid
// it must start with a literal token: a JetStream stream that captured "*.x"
// or ">" would overlap the server's own $JS and $SYS subjects.
func (c ctx) subject(n *yaml.Node) (string, bool) {
	s, ok := c.str(n)
	if !ok {
		return "", false
	}
	if err := ValidSubject(s); err != nil {
		c.errf(n, "%v", err)
		return "", false
	}
	first, _, _ := strings.Cut(s, ".")
	switch {
	case first == "*" || first == ">":
		c.errf(n, "invalid subject %q: must start with a literal token", s)
		return "", false
	case strings.HasPrefix(first, "$"):
		c.errf(n, "invalid subject %q: $-subjects are reserved by NATS", s)
		return "", false
	}
	return s, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the candidate closest to s if it is close enough to be a
// likely typo, else "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		limit := 2
		if len(c) <= 3 {
			limit = 1
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d <= limit && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ar, br := []rune(a), []rune(b)
	prev := make([]int, len(br)+1)
	cur := make([]int, len(br)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ar); i++ {
		cur[0] = i
		for j := 1; j <= len(br); j++ {
			cost := 1
			if ar[i-1] == br[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(br)]
}

// isName reports whether s is a rule or template name: [a-z0-9][a-z0-9_.-]*.
func isName(s string) bool {
	if s == "" || !isLowerOrDigit(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerOrDigit(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isIdent reports whether s can be an expression identifier:
// [A-Za-z_][A-Za-z0-9_]*.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 0 && '0' <= c && c <= '9') {
			continue
		}
		return false
	}
	return true
}

func isLowerOrDigit(c byte) bool { return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') }

// isLocale reports whether s looks like a locale tag: "en", "ru-RU",
// "pt_BR", "zh-Hant-TW".
func isLocale(s string) bool {
	for i, part := range strings.Split(strings.ReplaceAll(s, "_", "-"), "-") {
		if len(part) < 1 || len(part) > 8 || (i == 0 && len(part) < 2) {
			return false
		}
		for j := 0; j < len(part); j++ {
			c := part[j]
			letter := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
			digit := '0' <= c && c <= '9'
			if !letter && !(digit && i > 0) {
				return false
			}
		}
	}
	return true
}
