package engine

// memo is a bounded map of answers the engine read from, or wrote to, a
// table it alone writes (dedup marks, who has support contacts), so an
// event that asks again costs no SQLite read. Like the entity cache it has
// two generations, the older dropped when the newer fills up. It is
// dropped whole when a transaction rolls back, since it may hold what that
// transaction wrote.
type memo[K comparable, V any] struct {
	cur, prev map[K]V
	max       int
}

func newMemo[K comparable, V any](max int) *memo[K, V] {
	return &memo[K, V]{cur: map[K]V{}, prev: map[K]V{}, max: max}
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

func (m *memo[K, V]) put(k K, v V) {
	if len(m.cur) >= m.max/2 {
		m.prev = m.cur
		m.cur = make(map[K]V, m.max/2)
	}
	m.cur[k] = v
}

func (m *memo[K, V]) reset() {
	m.cur = map[K]V{}
	m.prev = map[K]V{}
}
