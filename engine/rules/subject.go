package rules

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// NATS subjects are dot-separated tokens. In a pattern, a token "*" matches
// exactly one token and a last token ">" matches one or more tokens.

// ValidSubject reports whether pattern is a well-formed NATS subject or
// subject pattern: non-empty tokens, no whitespace, '*' and '>' only as whole
// tokens and '>' only as the last token.
func ValidSubject(pattern string) error {
	if pattern == "" {
		return errors.New("empty subject")
	}
	bad := func(why string) error { return fmt.Errorf("invalid subject %q: %s", pattern, why) }
	if strings.IndexFunc(pattern, unicode.IsSpace) >= 0 {
		return bad("contains whitespace")
	}
	rest := pattern
	for {
		tok, after, more := strings.Cut(rest, ".")
		switch {
		case tok == "":
			return bad("empty token")
		case tok == ">" && more:
			return bad(`">" must be the last token`)
		case tok != "*" && tok != ">" && strings.ContainsAny(tok, "*>"):
			return bad(`"*" and ">" must be whole tokens`)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// SubjectMatches reports whether the concrete subject is matched by pattern.
// It does not allocate.
func SubjectMatches(pattern, subject string) bool {
	for {
		ptok, prest, pmore := strings.Cut(pattern, ".")
		if ptok == ">" {
			return subject != ""
		}
		if subject == "" {
			return false
		}
		stok, srest, smore := strings.Cut(subject, ".")
		if ptok != "*" && ptok != stok {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}

// Covers reports whether pattern a matches every subject pattern b matches,
// so a stream (or a subscription) on a makes one on b redundant. Covers(a, a)
// is true.
func Covers(a, b string) bool {
	for {
		atok, arest, amore := strings.Cut(a, ".")
		if atok == ">" {
			return b != "" // b has at least one more token, whatever it is
		}
		if b == "" {
			return false
		}
		btok, brest, bmore := strings.Cut(b, ".")
		switch {
		case btok == ">":
			return false // b matches any number of tokens here, a a fixed one
		case atok == "*":
			// one token of anything covers a literal or "*"
		case atok != btok:
			return false
		}
		if !amore || !bmore {
			return amore == bmore
		}
		a, b = arest, brest
	}
}

// Overlaps reports whether some concrete subject is matched by both
// patterns. JetStream refuses a stream whose subjects overlap one another
// (nats-server's SubjectsCollide); Covers is the special case where one
// pattern takes in all of the other.
func Overlaps(a, b string) bool {
	for {
		if a == "" || b == "" {
			return a == b
		}
		atok, arest, amore := strings.Cut(a, ".")
		btok, brest, bmore := strings.Cut(b, ".")
		if atok == ">" || btok == ">" {
			return true
		}
		if atok != "*" && btok != "*" && atok != btok {
			return false
		}
		if !amore || !bmore {
			return amore == bmore
		}
		a, b = arest, brest
	}
}

// generalize returns the most specific pattern that covers both a and b:
// equal tokens stay, differing ones become "*", and a ">" in either (or a
// difference in length) ends the pattern with ">".
func generalize(a, b string) string {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	var out []string
	for i := 0; ; i++ {
		if i == len(at) && i == len(bt) {
			break
		}
		if i == len(at) || i == len(bt) {
			// One is longer: ">" must take the place of the last shared
			// token, since it matches one or more tokens, never none.
			out[len(out)-1] = ">"
			break
		}
		if at[i] == ">" || bt[i] == ">" {
			out = append(out, ">")
			break
		}
		if at[i] == bt[i] {
			out = append(out, at[i])
		} else {
			out = append(out, "*")
		}
	}
	return strings.Join(out, ".")
}

// reduceSubjects returns subjects sorted, without duplicates and without
// overlaps, as one JetStream stream accepts them: a subject another covers
// is dropped, and two that partially overlap ("orders.*.paid",
// "orders.eu.*") are replaced by one pattern covering both
// ("orders.*.*"). The result matches every subject the input matched.
//
// It stays fast for thousands of subjects: only subjects with the same
// first token can overlap, and a literal subject (no wildcard) can only be
// covered by a wildcard one, never partially overlap anything.
func reduceSubjects(in []string) []string {
	seen := make(map[string]bool, len(in))
	groups := map[string][]string{}
	wildFirst := false
	for _, s := range in {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		first, _, _ := strings.Cut(s, ".")
		wildFirst = wildFirst || first == "*" || first == ">"
		groups[first] = append(groups[first], s)
	}
	if wildFirst { // a leading wildcard may overlap anything: one group
		all := make([]string, 0, len(seen))
		for s := range seen {
			all = append(all, s)
		}
		groups = map[string][]string{"": all}
	}
	var out []string
	for _, g := range groups {
		var lits, wilds []string
		for _, s := range g {
			if hasWildcard(s) {
				wilds = append(wilds, s)
			} else {
				lits = append(lits, s)
			}
		}
		wilds = reduceWildcards(wilds)
		out = append(out, wilds...)
		for _, l := range lits {
			if !slices.ContainsFunc(wilds, func(w string) bool { return Covers(w, l) }) {
				out = append(out, l)
			}
		}
	}
	sort.Strings(out)
	return out
}

func hasWildcard(s string) bool {
	for {
		tok, rest, more := strings.Cut(s, ".")
		if tok == "*" || tok == ">" {
			return true
		}
		if !more {
			return false
		}
		s = rest
	}
}

// reduceWildcards drops covered patterns and merges overlapping ones until
// none overlap.
func reduceWildcards(ws []string) []string {
	ws = dropCovered(ws)
	for {
		merged := false
	scan:
		for i := range ws {
			for j := i + 1; j < len(ws); j++ {
				if Overlaps(ws[i], ws[j]) {
					g := generalize(ws[i], ws[j])
					rest := slices.Delete(slices.Clone(ws), j, j+1)
					rest = slices.Delete(rest, i, i+1)
					ws = dropCovered(append(rest, g))
					merged = true
					break scan
				}
			}
		}
		if !merged {
			return ws
		}
	}
}

// dropCovered removes duplicates and every pattern another one covers.
func dropCovered(ps []string) []string {
	slices.Sort(ps)
	ps = slices.Compact(ps)
	var out []string
	for i, p := range ps {
		covered := false
		for j, q := range ps {
			if i != j && Covers(q, p) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}
