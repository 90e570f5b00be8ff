package rules

import (
	"slices"
	"sort"
	"strings"
	"sync"
)

// DefaultIndexCache is how many concrete subjects an Index remembers the
// answer for (in two generations of half this size each).
const DefaultIndexCache = 10000

// Index finds the rules and entities a concrete subject concerns. Patterns
// are kept in a token trie (like nats-server's sublist), so a lookup costs
// the subject's length, not the number of rules; answers are then cached per
// concrete subject, so the common case is one map read under a read lock,
// with no allocation.
//
// The cache is bounded: it holds two generations of DefaultIndexCache/2
// subjects; when the current one is full it becomes the previous one and the
// oldest is dropped. Subjects with ids in them ("orders.o-123.paid") thus
// cost memory only for the latest few thousand, and the hot ones stay.
//
// An Index is safe for concurrent use. The slices it returns are shared:
// callers must not modify them.
type Index struct {
	root     *trieNode
	rules    []*Rule   // by ordinal: file order
	entities []*Entity // by ordinal: name order

	mu      sync.RWMutex
	cur     map[string]*indexEntry
	prev    map[string]*indexEntry
	genSize int
}

type indexEntry struct {
	rules     []*Rule
	expecting []*Rule
	entities  []*Entity
}

type trieNode struct {
	lit  map[string]*trieNode
	star *trieNode
	gt   *trieVals // patterns ending in ">" right here
	end  *trieVals // patterns ending here
}

// trieVals are ordinals into Index.rules (on, expect) and Index.entities.
type trieVals struct {
	on, expect, ent []int
}

// NewIndex indexes rules by On (and absence rules by Expect) and entities by
// their Subjects. Rules keep the order given; entities are ordered by name.
func NewIndex(rules []*Rule, entities map[string]*Entity) *Index {
	ix := &Index{root: &trieNode{}, rules: rules, genSize: DefaultIndexCache / 2}
	for _, e := range entities {
		ix.entities = append(ix.entities, e)
	}
	sort.Slice(ix.entities, func(i, j int) bool { return ix.entities[i].Name < ix.entities[j].Name })
	for i, r := range rules {
		if r.On != "" {
			v := ix.root.insert(r.On)
			v.on = append(v.on, i)
		}
		if r.Kind == KindAbsence && r.Expect != "" {
			v := ix.root.insert(r.Expect)
			v.expect = append(v.expect, i)
		}
	}
	for i, e := range ix.entities {
		for _, s := range e.Subjects {
			v := ix.root.insert(s)
			v.ent = append(v.ent, i)
		}
	}
	ix.cur = make(map[string]*indexEntry)
	return ix
}

func (n *trieNode) insert(pattern string) *trieVals {
	for {
		tok, rest, more := strings.Cut(pattern, ".")
		if tok == ">" {
			if n.gt == nil {
				n.gt = &trieVals{}
			}
			return n.gt
		}
		var next *trieNode
		if tok == "*" {
			if n.star == nil {
				n.star = &trieNode{}
			}
			next = n.star
		} else {
			if n.lit == nil {
				n.lit = make(map[string]*trieNode)
			}
			next = n.lit[tok]
			if next == nil {
				next = &trieNode{}
				n.lit[tok] = next
			}
		}
		n = next
		if !more {
			if n.end == nil {
				n.end = &trieVals{}
			}
			return n.end
		}
		pattern = rest
	}
}

// collect calls add for every pattern under n matching subject, the
// remaining (non-empty) tokens of a concrete subject.
func (n *trieNode) collect(subject string, add func(*trieVals)) {
	if n.gt != nil {
		add(n.gt) // ">" takes one or more tokens: subject has at least one
	}
	tok, rest, more := strings.Cut(subject, ".")
	step := func(c *trieNode) {
		if c == nil {
			return
		}
		if more {
			c.collect(rest, add)
		} else if c.end != nil {
			add(c.end)
		}
	}
	step(n.lit[tok])
	step(n.star)
}

// Rules returns the rules whose On matches the concrete subject: event,
// absence and fan-out rules, in rule-file order.
func (ix *Index) Rules(subject string) []*Rule { return ix.lookup(subject).rules }

// Expecting returns the absence rules whose Expect matches the concrete
// subject, in rule-file order.
func (ix *Index) Expecting(subject string) []*Rule { return ix.lookup(subject).expecting }

// Entities returns the entities one of whose Subjects matches the concrete
// subject, by name.
func (ix *Index) Entities(subject string) []*Entity { return ix.lookup(subject).entities }

func (ix *Index) lookup(subject string) *indexEntry {
	if ix == nil || ix.root == nil || subject == "" {
		return &indexEntry{}
	}
	ix.mu.RLock()
	e, ok := ix.cur[subject]
	if !ok {
		e, ok = ix.prev[subject]
	}
	ix.mu.RUnlock()
	if ok {
		return e
	}
	e = ix.compute(subject)
	ix.mu.Lock()
	if len(ix.cur) >= ix.genSize {
		ix.prev, ix.cur = ix.cur, make(map[string]*indexEntry, ix.genSize)
	}
	// The caller's string may alias a reused buffer; keep our own copy.
	ix.cur[strings.Clone(subject)] = e
	ix.mu.Unlock()
	return e
}

func (ix *Index) compute(subject string) *indexEntry {
	var on, expect, ent []int
	ix.root.collect(subject, func(v *trieVals) {
		on = append(on, v.on...)
		expect = append(expect, v.expect...)
		ent = append(ent, v.ent...)
	})
	e := &indexEntry{}
	for _, i := range ordinals(on) {
		e.rules = append(e.rules, ix.rules[i])
	}
	for _, i := range ordinals(expect) {
		e.expecting = append(e.expecting, ix.rules[i])
	}
	for _, i := range ordinals(ent) {
		e.entities = append(e.entities, ix.entities[i])
	}
	return e
}

// ordinals sorts and de-duplicates (an entity may match by two of its
// subjects).
func ordinals(s []int) []int {
	slices.Sort(s)
	return slices.Compact(s)
}

// cacheLen is the number of cached subjects (for tests).
func (ix *Index) cacheLen() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.cur) + len(ix.prev)
}
