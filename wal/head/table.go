package head

// seriesTable holds a stripe's series by the hash of their labels: open
// addressing with linear probing, at most 3/4 full, deletion by backward
// shift (no tombstones). A slot keeps the full hash beside the series, so
// a probe reads one slot and dereferences a series only when the whole
// hash matches — one cache miss fewer per lookup than a map of chains.
//
// The stripe index takes the hash's low bits; a table places by the bits
// above them.
type seriesTable struct {
	slots []slot // empty, or a power of two long
	n     int
}

type slot struct {
	hash uint64
	s    *Series // nil: free
}

const stripeBits = 10 // stripeCount == 1<<stripeBits

func (t *seriesTable) home(hash uint64) int {
	return int(hash>>stripeBits) & (len(t.slots) - 1)
}

// get returns the series with these labels, or nil.
func (t *seriesTable) get(hash uint64, lbls []byte) *Series {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(hash); ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.s == nil {
			return nil
		}
		if sl.hash == hash && sl.s.hasLabels(lbls) {
			return sl.s
		}
	}
}

// insert adds s, which the table does not hold.
func (t *seriesTable) insert(s *Series) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(8, len(t.slots)*2))
	}
	t.place(s)
	t.n++
}

func (t *seriesTable) place(s *Series) {
	mask := len(t.slots) - 1
	i := t.home(s.hash)
	for t.slots[i].s != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = slot{hash: s.hash, s: s}
}

func (t *seriesTable) resize(size int) {
	old := t.slots
	t.slots = make([]slot, size)
	for _, sl := range old {
		if sl.s != nil {
			t.place(sl.s)
		}
	}
}

// replace puts s, of the same hash, in the place of old, which the table
// holds.
func (t *seriesTable) replace(old, s *Series) {
	mask := len(t.slots) - 1
	i := t.home(old.hash)
	for t.slots[i].s != old {
		i = (i + 1) & mask
	}
	t.slots[i].s = s
}

// remove deletes s and reports whether the table held it.
func (t *seriesTable) remove(s *Series) bool {
	if t.n == 0 {
		return false
	}
	mask := len(t.slots) - 1
	i := t.home(s.hash)
	for t.slots[i].s != s {
		if t.slots[i].s == nil {
			return false
		}
		i = (i + 1) & mask
	}
	// Shift back every later slot of the run that may sit at i.
	for j := (i + 1) & mask; t.slots[j].s != nil; j = (j + 1) & mask {
		if shiftsBack(i, j, t.home(t.slots[j].hash)) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot{}
	t.n--
	if len(t.slots) > 8 && t.n*8 < len(t.slots) {
		t.resize(len(t.slots) / 2) // give memory back after mass expiry
	}
	return true
}

// shiftsBack reports whether, in a table with linear probing, the entry at
// slot j whose home is k may move back to the freed slot i: whether k is
// not cyclically within (i, j].
func shiftsBack(i, j, k int) bool {
	return (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)
}

// appendAll appends every series held to dst.
func (t *seriesTable) appendAll(dst []*Series) []*Series {
	for _, sl := range t.slots {
		if sl.s != nil {
			dst = append(dst, sl.s)
		}
	}
	return dst
}
