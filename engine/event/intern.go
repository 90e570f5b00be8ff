package event

import "sync"

// Interner shares the strings that events repeat — field names, and short
// values such as a status, a currency or a region — among the events and
// stored states one decoder reads. A decoded event was a fresh string for
// every key and a fresh interface box for every value: half of the
// allocations of the whole intake path (BENCHMARKS.md, ninth round).
// Shared strings are immutable, so sharing them changes nothing a reader
// can see.
//
// It is bounded: past internMax entries of either kind it starts over, so
// a stream of unique values costs a map of that size at most, never a
// growing one. Safe for concurrent use (one lock per decoded object).
type Interner struct {
	mu   sync.Mutex
	keys map[string]string
	vals map[string]any
}

const (
	// internMax bounds each of the two maps.
	internMax = 4096
	// internValueLen is the longest value shared: longer strings (ids,
	// addresses, free text) are rarely repeated.
	internValueLen = 24
)

// NewInterner returns an empty Interner.
func NewInterner() *Interner {
	return &Interner{keys: make(map[string]string), vals: make(map[string]any)}
}

// key returns b as a string, shared with earlier calls that gave the
// same bytes.
func (in *Interner) key(b []byte) string {
	if s, ok := in.keys[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.keys) >= internMax {
		clear(in.keys)
	}
	in.keys[s] = s
	return s
}

// value returns b as a string in an interface, shared when short.
func (in *Interner) value(b []byte) any {
	if len(b) > internValueLen {
		return string(b)
	}
	if v, ok := in.vals[string(b)]; ok {
		return v
	}
	var v any = string(b)
	if len(in.vals) >= internMax {
		clear(in.vals)
	}
	in.vals[v.(string)] = v
	return v
}
