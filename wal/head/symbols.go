package head

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// Bounds of the symbol table; see "Label storage" in the package
// documentation.
const (
	maxSymbols     = 1 << 17
	maxSymbolBytes = 8 << 20
	maxSymbolLen   = 128     // longer strings stay literals
	symbolChunk    = 1 << 12 // symbols per chunk of the table
	symbolBlock    = 64 << 10
	seenSlots      = 1 << 14 // of the filter counting sightings
	// admitAt is the sighting that makes a string a symbol. Measured at
	// a million series of bench/'s labels: 4 left more values literal (the
	// filter forgets a value seen every few thousand series before its
	// fourth sighting) and peaked 15% higher, for no faster /federate.
	admitAt = 2
)

// maxTables is how many symbol tables may live at once: the current one,
// and full ones that held series still name, or that readers may still
// hold (see retire).
const maxTables = 4

// symbols is the process-wide set of symbol tables.
var symbols = newTables(maxSymbols, maxSymbolBytes)

// tables is a set of symbol tables: see "Label storage" in the package
// documentation.
type tables struct {
	// current is the table new series take their tokens from; never nil.
	current atomic.Pointer[symtab]
	slots   [maxTables]atomic.Pointer[symtab] // nil: free
	pins    pins
	// Bounds of each table (maxSymbols and maxSymbolBytes, but for tests).
	maxN, maxBytes int

	// exhausted is set while the current table is full and no slot is
	// free, so that new series do not take mu to learn it.
	exhausted atomic.Bool

	mu      sync.Mutex        // guards what follows, and the rollover
	serial  uint32            // of the newest table
	waiting uint8             // slots of tables to retire once pins.n[waitFor] is 0
	waitFor uint32            // a phase of pins
	found   [maxTables]uint64 // made of each waiting table when it was found
}

func newTables(maxN, maxBytes int) *tables {
	g := &tables{maxN: maxN, maxBytes: maxBytes}
	g.open(0)
	return g
}

// open makes a new current table in the free slot slot.
func (g *tables) open(slot int) *symtab {
	g.serial++
	t := &symtab{slot: uint8(slot), serial: g.serial & serialMask, maxN: g.maxN, maxBytes: g.maxBytes}
	g.slots[slot].Store(t)
	g.current.Store(t)
	return t
}

// A series names its table in its flags, above flagRemoved: the slot, then
// the low bits of the table's serial, which a reader checks.
const (
	slotShift   = 8
	serialShift = 16
	serialMask  = 1<<16 - 1
)

// tag returns the flags that name t.
func (t *symtab) tag() uint32 { return uint32(t.slot)<<slotShift | t.serial<<serialShift }

// of returns the table named by a series' flags. A series whose table was
// retired was read without a pin: that is a bug, and reading another
// table's strings would be a silent one.
func (g *tables) of(flags uint32) *symtab {
	t := g.slots[flags>>slotShift%maxTables].Load()
	if t == nil || t.serial != flags>>serialShift {
		panic("head: a series' labels read after its symbol table was retired (its reader holds no SymbolPin)")
	}
	return t
}

// forNew returns the table a new series takes its tokens from, first
// opening a new one if the current one is full and a slot is free. The
// caller holds a pin (see retire) and counts its series on the table it
// got (symtab.made).
func (g *tables) forNew() *symtab {
	t := g.current.Load()
	if !t.full.Load() || g.exhausted.Load() {
		return t
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if t = g.current.Load(); !t.full.Load() {
		return t
	}
	for slot := range g.slots {
		if g.slots[slot].Load() == nil {
			t.dropIndex()
			t.rolled = true // before the new table is in a slot
			return g.open(slot)
		}
	}
	g.exhausted.Store(true) // until retire frees a slot
	return t                // new strings stay literals
}

// retire frees the slots of tables that are not current and that no held
// series names, once the readers that might still hold a removed series
// of theirs are done: it waits (across calls; it never blocks) for every
// pin taken before it found them. Those readers, and the makers of new
// series that got such a table from forNew before it stopped being
// current, took their pins before it found them. A table on which a
// series was made since it was found (its made word changed, even if that
// series is gone again) is not freed: it is found anew.
func (g *tables) retire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for range 2 { // a round may finish at once when nothing is pinned
		if g.waiting != 0 {
			if g.pins.n[g.waitFor%2].v.Load() != 0 {
				return
			}
			for slot := range g.slots {
				if t := g.slots[slot].Load(); g.waiting&(1<<slot) != 0 && t.made.Load() == g.found[slot] {
					g.slots[slot].Store(nil)
					g.exhausted.Store(false)
				}
			}
			g.waiting = 0
		}
		cur := g.current.Load()
		for slot := range g.slots {
			t := g.slots[slot].Load()
			if t == nil || t == cur {
				continue
			}
			if m := t.made.Load(); uint32(m) == 0 { // no held series names it
				g.waiting |= 1 << slot
				g.found[slot] = m
			}
		}
		if g.waiting == 0 {
			return
		}
		g.waitFor = g.pins.flip()
	}
}

// sparseShare is the share of the series made on a table, 1/sparseShare,
// at or below which the series it still holds are moved to the current
// table, so that it can be retired.
const sparseShare = 4

// sparse returns the tables that made way for a new one, that a call
// first saw so at least wait milliseconds before now (head time; the first
// call to see one records when), and that hold some series, but no more
// than 1/sparseShare of those made on them.
func (g *tables) sparse(now, wait int64) (m SparseTables) {
	g.mu.Lock() // walks call it, a few times each
	defer g.mu.Unlock()
	for slot := range g.slots {
		t := g.slots[slot].Load()
		switch {
		case t == nil || !t.rolled:
			continue
		case !t.seenRolled:
			t.stopped, t.seenRolled = now, true
			continue
		case now-t.stopped < wait:
			continue
		}
		made := t.made.Load()
		if held := uint64(uint32(made)); held > 0 && held*sparseShare <= made>>32 {
			m.slots |= 1 << slot
			m.serials[slot] = t.serial
		}
	}
	return m
}

// SparseTables names the symbol tables whose series are to be moved: see
// Sparse.
type SparseTables struct {
	slots   uint8
	serials [maxTables]uint32 // of the tables in slots
}

// Sparse returns the symbol tables that stopped being current at least a
// retention ago and still hold some series, but no more than
// 1/sparseShare of those made on them: their series are moved to the
// current table (GCChunk, MoveSeries), so that they can be retired. The
// retention lets the series that churned expire first, so that only
// series still pushed are moved. The wait starts when a walk first sees
// that a table made way for a new one, by the clock of that walk's head
// (the tables are the process's, the clocks its heads': one, outside
// tests).
func (h *Head) Sparse() SparseTables {
	return symbols.sparse(h.now().UnixMilli(), h.retention.Milliseconds())
}

// Holds reports whether s names one of the tables.
func (m SparseTables) Holds(s *Series) bool {
	if m.slots == 0 {
		return false
	}
	f := s.flags.Load()
	slot := f >> slotShift % maxTables
	return m.slots&(1<<slot) != 0 && m.serials[slot] == f>>serialShift
}

// RetireSymbolTables retires the tables that may go (see retire): a
// retirement waits for readers across calls, and removals, which call it,
// may be rare. The WAL calls it once per checkpoint.
func RetireSymbolTables() { symbols.retire() }

// SwapSymbolTables replaces the process-wide symbol tables with empty
// ones of n symbols each, and returns a function that puts the old ones
// back. It is for tests that need tables to fill; no series made before
// the swap may be read until the old tables are back, nor a series made
// after it once they are.
func SwapSymbolTables(n int) (restore func()) {
	if SymbolPinsHeld() != 0 {
		panic("head: symbol tables swapped while pinned")
	}
	old := symbols
	symbols = newTables(n, maxSymbolBytes)
	return func() {
		if SymbolPinsHeld() != 0 {
			panic("head: symbol tables put back while pinned")
		}
		symbols = old
	}
}

// stats returns the number of live tables, and the symbols and bytes they
// hold.
func (g *tables) stats() (tables, n, bytes int) {
	for slot := range g.slots {
		if t := g.slots[slot].Load(); t != nil {
			tn, tb := t.stats()
			tables, n, bytes = tables+1, n+tn, bytes+tb
		}
	}
	return tables, n, bytes
}

// pins counts the SymbolPins held, by the phase they were taken in. A
// retirement flips the phase, then waits for the count of the old phase
// to drop to 0; it flips again only after that, so the counts of one
// parity are never of two phases at once.
type pins struct {
	phase atomic.Uint32
	n     [2]struct {
		v atomic.Int64
		_ [56]byte // the two counts on two cache lines
	}
}

// take pins the current phase and returns it.
func (p *pins) take() uint32 {
	for {
		ph := p.phase.Load()
		p.n[ph%2].v.Add(1)
		if p.phase.Load() == ph {
			return ph
		}
		p.n[ph%2].v.Add(-1) // flipped meanwhile: not counted in time
	}
}

func (p *pins) release(ph uint32) { p.n[ph%2].v.Add(-1) }

// flip starts a new phase and returns the old one.
func (p *pins) flip() uint32 { return p.phase.Add(1) - 1 }

// SymbolPin keeps the labels of series readable: see PinSymbols.
type SymbolPin struct{ phase uint32 }

// PinSymbols returns a pin that its holder releases once it has read the
// labels of the series it got from a head meanwhile: while it holds the
// pin, no series' symbol table is retired, even if the series is removed
// (see "Label storage" in the package documentation). Taking and
// releasing one is two atomic adds; holding one blocks no one, but a
// request or a scrape should hold it, not a goroutine for its life.
func PinSymbols() SymbolPin { return SymbolPin{symbols.pins.take()} }

// Release releases the pin; it must be called once.
func (p SymbolPin) Release() { symbols.pins.release(p.phase) }

// SymbolPinsHeld returns the number of SymbolPins held: a pin never
// released would keep every table from being retired, so tests check that
// none is left once they are done.
func SymbolPinsHeld() int {
	return int(symbols.pins.n[0].v.Load() + symbols.pins.n[1].v.Load())
}

// symtab is a symbol table. Ids index chunks that are filled once and
// never changed, so symbol reads take no lock: a reader only ever holds an
// id from a series created after the symbol (the series reached it
// through a lock its creator released).
type symtab struct {
	// What readers read comes first, away from made.
	serial uint32 // its tables' count when it was made, low 16 bits
	slot   uint8
	chunks [maxSymbols / symbolChunk]atomic.Pointer[[symbolChunk]string]

	// made counts the series made on it in its high 32 bits and those of
	// them still held in its low 32, in one word, so that retire sees a
	// series made and removed again since it last looked. On a cache line
	// of its own: it changes with every series made or removed.
	_    [64]byte
	made atomic.Uint64
	_    [56]byte
	// rolled is set when it makes way for a new table; seenRolled when a
	// walk (sparse) first saw that, at stopped (head time, ms). Guarded by
	// its tables' mu.
	rolled, seenRolled bool
	stopped            int64

	// Bounds, maxSymbols and maxSymbolBytes but for tests.
	maxN, maxBytes int

	mu    sync.RWMutex
	index map[string]uint32 // nil once the table is full and not current
	n     int               // symbols made
	bytes int               // their bytes
	// full is set once a string of maxSymbolLen may not fit: from then on
	// no string is added, and none takes mu to learn it.
	full atomic.Bool
	// seen counts the sightings of strings that are not symbols yet,
	// lossily: a slot holds the top 56 bits of the hash of the last
	// string that landed in it and its count in the low 8.
	seen [seenSlots]atomic.Uint64
	// block is where the bytes of new symbols go, back to back: symbols
	// made together are read together, and a few blocks are fewer objects
	// for the Go GC than a string each.
	block []byte
}

// newSymtab returns an empty table of the usual bounds, outside any set of
// tables.
func newSymtab() *symtab { return &symtab{maxN: maxSymbols, maxBytes: maxSymbolBytes} }

// counted records a series made on t; uncounted, its removal.
func (t *symtab) counted()   { t.made.Add(1<<32 | 1) }
func (t *symtab) uncounted() { t.made.Add(^uint64(0)) }

// dropIndex lets the index of a full table go: only interning reads it.
func (t *symtab) dropIndex() {
	t.mu.Lock()
	t.index = nil
	t.block = nil
	t.mu.Unlock()
}

func (t *symtab) symbol(id uint32) string {
	return t.chunks[id/symbolChunk].Load()[id%symbolChunk]
}

// intern returns the symbol of s, making it at its admitAt'th sighting
// (names too: one tenant sending ever new names must not fill the table
// for all); ok is false if s stays a literal.
func (t *symtab) intern(s string) (id uint32, ok bool) {
	if len(s) > maxSymbolLen {
		return 0, false
	}
	t.mu.RLock()
	id, ok = t.index[s]
	t.mu.RUnlock()
	if ok || t.full.Load() {
		return id, ok
	}
	h := xxhash.Sum64String(s)
	slot := &t.seen[h%seenSlots]
	if old := slot.Load(); old>>8 != h>>8 {
		slot.Store(h>>8<<8 | 1)
		return 0, false
	} else if n := old & 0xff; n+1 < admitAt {
		slot.Store(old + 1) // lossy, as the filter is: a racing store may win
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok = t.index[s]; ok {
		return id, true
	}
	if t.full.Load() {
		return 0, false
	}
	id = uint32(t.n)
	c := t.chunks[id/symbolChunk].Load()
	if c == nil {
		c = new([symbolChunk]string)
		t.chunks[id/symbolChunk].Store(c)
	}
	owned := t.store(s) // s may alias a request
	c[id%symbolChunk] = owned
	if t.index == nil {
		t.index = make(map[string]uint32)
	}
	t.index[owned] = id
	t.n++
	t.bytes += len(owned)
	if t.n >= t.maxN || t.bytes+maxSymbolLen > t.maxBytes {
		t.full.Store(true)
	}
	return id, true
}

// store copies s into the current block and returns the copy.
func (t *symtab) store(s string) string {
	if s == "" {
		return ""
	}
	if cap(t.block)-len(t.block) < len(s) {
		t.block = make([]byte, 0, symbolBlock)
	}
	at := len(t.block)
	t.block = append(t.block, s...)
	return unsafe.String(unsafe.SliceData(t.block[at:]), len(s))
}

func (t *symtab) appendTokens(dst []byte, lbls Labels) []byte {
	for it := lbls.Iter(); it.Next(); {
		dst = t.appendToken(dst, it.Name)
		dst = t.appendToken(dst, it.Value)
	}
	return dst
}

// appendToken appends s as a symbol, or as a literal when that is no
// longer (a one-byte string, say, against an id of 8192 or more): a token
// is never longer than the packed form.
func (t *symtab) appendToken(dst []byte, s string) []byte {
	lit := uint64(len(s))<<1 | 1
	if id, ok := t.intern(s); ok && uvarintLen(uint64(id)<<1) < uvarintLen(lit)+len(s) {
		return binary.AppendUvarint(dst, uint64(id)<<1)
	}
	dst = binary.AppendUvarint(dst, lit)
	return append(dst, s...)
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// nextToken decodes the token at the start of tok, made by t. A token of
// one or two bytes (a symbol below 8192, a literal shorter than 8192
// bytes) is decoded inline: it is nearly all of them, and this runs for
// every label of every known series of every push and of every series
// /federate writes.
func (t *symtab) nextToken(tok string) (s, rest string) {
	c := tok[0]
	if c < 0x80 {
		if c&1 == 0 {
			return t.symbol(uint32(c >> 1)), tok[1:]
		}
		n := int(c>>1) + 1
		return tok[1:n], tok[n:]
	}
	if c1 := tok[1]; c1 < 0x80 {
		x := uint32(c&0x7f) | uint32(c1)<<7
		if x&1 == 0 {
			return t.symbol(x >> 1), tok[2:]
		}
		n := int(x>>1) + 2
		return tok[2:n], tok[n:]
	}
	return t.nextTokenLong(tok)
}

func (t *symtab) nextTokenLong(tok string) (s, rest string) {
	x, w := uvarintString(tok)
	if x&1 == 0 {
		return t.symbol(uint32(x >> 1)), tok[w:]
	}
	n := int(x >> 1)
	return tok[w : w+n], tok[w+n:]
}

// SymbolStats returns the number of symbol tables, and the symbols and
// bytes they hold.
func SymbolStats() (tables, n, bytes int) { return symbols.stats() }

func (t *symtab) stats() (n, bytes int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n, t.bytes
}
