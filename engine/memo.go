package engine

// memo is a bounded map with two generations, the older dropped when the
// newer fills up — an LRU approximation with O(1) work and no per-entry
// list. It holds the hot entities, and answers the engine read from or
// wrote to tables it alone writes (dedup marks, who has support contacts),
// so an event that asks again costs no SQLite read. Those answers may
// include what an uncommitted transaction wrote, so a rollback drops the
// memo whole.
type memo[K comparable, V any] struct {
	cur, prev map[K]V
	max       int
	// keep, if set, says an entry of the older generation must survive its
	// drop (an entity whose changes are not written yet: the cache is then
	// the only copy of that state).
	keep func(V) bool
}

func newMemo[K comparable, V any](max int, keep func(V) bool) *memo[K, V] {
	return &memo[K, V]{cur: map[K]V{}, prev: map[K]V{}, max: max, keep: keep}
}

func (m *memo[K, V]) get(k K) (V, bool) {
	if v, ok := m.cur[k]; ok {
		return v, true
	}
	v, ok := m.prev[k]
	if ok {
		m.put(k, v)
	}
	return v, ok
}

// peek returns an entry without promoting it.
func (m *memo[K, V]) peek(k K) (V, bool) {
	if v, ok := m.cur[k]; ok {
		return v, true
	}
	v, ok := m.prev[k]
	return v, ok
}

func (m *memo[K, V]) put(k K, v V) {
	if len(m.cur) >= m.max/2 {
		next := make(map[K]V, m.max/2)
		if m.keep != nil {
			for k, v := range m.prev {
				if m.keep(v) {
					next[k] = v
				}
			}
		}
		m.prev = m.cur
		m.cur = next
	}
	m.cur[k] = v
}

func (m *memo[K, V]) drop(k K) {
	delete(m.cur, k)
	delete(m.prev, k)
}

func (m *memo[K, V]) reset() {
	m.cur = map[K]V{}
	m.prev = map[K]V{}
}
