package head

import "sync"

// memoStripes is how many locks a tenant's memo is spread over.
const memoStripes = 16

// Memo is one tenant's memo of known series: see "Known series" in the
// package documentation.
type Memo struct {
	stripes [memoStripes]memoStripe
}

type memoStripe struct {
	mu    sync.Mutex
	slots []memoSlot // empty, or a power of two long; at most 3/4 used
	used  int
	_     [24]byte // keep neighbouring stripe locks off one cache line
}

type memoSlot struct {
	key uint64
	s   *Series // nil: free
}

// Memo returns the memo of tenant's known series.
func (h *Head) Memo(tenant string) *Memo { return h.tenant(tenant).memo }

func (m *Memo) stripe(key uint64) *memoStripe { return &m.stripes[key&(memoStripes-1)] }

// home places a key in a stripe's table by the bits above the stripe's.
func (st *memoStripe) home(key uint64) int {
	return int(key/memoStripes) & (len(st.slots) - 1)
}

// find returns the index of key's slot, or -1.
func (st *memoStripe) find(key uint64) int {
	if st.used == 0 {
		return -1
	}
	mask := len(st.slots) - 1
	for i := st.home(key); st.slots[i].s != nil; i = (i + 1) & mask {
		if st.slots[i].key == key {
			return i
		}
	}
	return -1
}

// Get returns the held series last resolved under key, or nil. It is a
// candidate: the caller checks its labels before it passes it as
// BatchSeries.Known. Key 0 is never remembered.
func (m *Memo) Get(key uint64) *Series {
	st := m.stripe(key)
	st.mu.Lock()
	defer st.mu.Unlock()
	if i := st.find(key); i >= 0 && !st.slots[i].s.Removed() {
		return st.slots[i].s
	}
	return nil
}

// GetMany sets out[i] to what Get(keys[i]) returns, for every i (key 0:
// nil). It takes each stripe's lock once, not once per key, and its loads
// do not wait on one another behind a lock: a request's lookups are
// cache misses, which overlap here, where one Get after another pays
// each in full. out must be at least as long as keys.
func (m *Memo) GetMany(keys []uint64, out []*Series) {
	out = out[:len(keys)]
	clear(out)
	for len(keys) > 0 {
		n := min(len(keys), getManyGroup)
		m.getGroup(keys[:n], out[:n])
		keys, out = keys[n:], out[n:]
	}
}

// getManyGroup is how many keys getGroup sorts by stripe at once, on the
// stack.
const getManyGroup = 256

// getGroup is GetMany for at most getManyGroup keys: it sorts them by
// stripe (a counting sort of their indexes), then looks up each stripe's
// under one lock.
func (m *Memo) getGroup(keys []uint64, out []*Series) {
	var start [memoStripes + 1]int
	for _, k := range keys {
		if k != 0 {
			start[k&(memoStripes-1)+1]++
		}
	}
	for i := 1; i <= memoStripes; i++ {
		start[i] += start[i-1]
	}
	var order [getManyGroup]uint8
	next := start
	for j, k := range keys {
		if k != 0 {
			s := k & (memoStripes - 1)
			order[next[s]] = uint8(j)
			next[s]++
		}
	}
	for i := range m.stripes {
		if start[i] == start[i+1] {
			continue
		}
		st := &m.stripes[i]
		st.mu.Lock()
		for _, j := range order[start[i]:start[i+1]] {
			if at := st.find(keys[j]); at >= 0 {
				out[j] = st.slots[at].s
			}
		}
		st.mu.Unlock()
	}
	for j, s := range out {
		if s != nil && s.Removed() {
			out[j] = nil
		}
	}
}

// put remembers s under key, and under no other key: a series has one
// entry at most, so a sender that varies how it writes a series' labels
// cannot grow the memo past the series held.
func (m *Memo) put(key uint64, s *Series) {
	if old := s.key.Swap(key); old != 0 && old != key {
		m.delete(old, s)
	}
	m.stripe(key).put(key, s)
	// Two puts of one series with different keys may cross: the one whose
	// key lost the swap takes its entry back out.
	if s.key.Load() != key {
		m.delete(key, s)
	}
}

func (st *memoStripe) put(key uint64, s *Series) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if i := st.find(key); i >= 0 {
		st.slots[i].s = s
		return
	}
	if (st.used+1)*4 > len(st.slots)*3 {
		st.rebuild(1)
	}
	st.place(key, s)
	st.used++
}

// replace makes key's entry name s if it names old, which s replaces.
func (m *Memo) replace(key uint64, old, s *Series) {
	st := m.stripe(key)
	st.mu.Lock()
	defer st.mu.Unlock()
	if i := st.find(key); i >= 0 && st.slots[i].s == old {
		st.slots[i].s = s
		s.key.Store(key)
	}
}

// delete removes key's entry if it names s.
func (m *Memo) delete(key uint64, s *Series) {
	st := m.stripe(key)
	st.mu.Lock()
	defer st.mu.Unlock()
	i := st.find(key)
	if i < 0 || st.slots[i].s != s {
		return
	}
	// Shift back every later slot of the run that may sit at i.
	mask := len(st.slots) - 1
	for j := (i + 1) & mask; st.slots[j].s != nil; j = (j + 1) & mask {
		if shiftsBack(i, j, st.home(st.slots[j].key)) {
			st.slots[i] = st.slots[j]
			i = j
		}
	}
	st.slots[i] = memoSlot{}
	st.used--
	if len(st.slots) > 8 && st.used*8 < len(st.slots) {
		st.rebuild(0) // give memory back after mass removal
	}
}

func (st *memoStripe) place(key uint64, s *Series) {
	mask := len(st.slots) - 1
	i := st.home(key)
	for st.slots[i].s != nil {
		i = (i + 1) & mask
	}
	st.slots[i] = memoSlot{key: key, s: s}
}

// rebuild moves the entries of held series to a table with room for
// extra more at half load. (Removal deletes a series' entry; one of a
// series removed without its owner's barrier, by Head.Append's caller
// running GC meanwhile, is dropped here.)
func (st *memoStripe) rebuild(extra int) {
	live := 0
	for _, sl := range st.slots {
		if sl.s != nil && !sl.s.Removed() {
			live++
		}
	}
	size := 8
	for size < 2*(live+extra) {
		size *= 2
	}
	old := st.slots
	st.slots = make([]memoSlot, size)
	st.used = 0
	for _, sl := range old {
		if sl.s != nil && !sl.s.Removed() {
			st.place(sl.key, sl.s)
			st.used++
		}
	}
}

// entries returns the number of entries; for tests.
func (m *Memo) entries() int {
	n := 0
	for i := range m.stripes {
		st := &m.stripes[i]
		st.mu.Lock()
		n += st.used
		st.mu.Unlock()
	}
	return n
}
