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

// symbols is the process-wide symbol table.
var symbols symtab

// symtab is a symbol table. Ids index chunks that are filled once and
// never changed, so symbol reads take no lock: a reader only ever holds an
// id from a series created after the symbol (the series reached it
// through a lock its creator released).
type symtab struct {
	mu    sync.RWMutex
	index map[string]uint32
	n     int // symbols made
	bytes int // their bytes
	// full is set once a string of maxSymbolLen may not fit: from then on
	// no string is added, and none takes mu to learn it.
	full   atomic.Bool
	chunks [maxSymbols / symbolChunk]atomic.Pointer[[symbolChunk]string]
	// seen counts the sightings of strings that are not symbols yet,
	// lossily: a slot holds the top 56 bits of the hash of the last
	// string that landed in it and its count in the low 8.
	seen [seenSlots]atomic.Uint64
	// block is where the bytes of new symbols go, back to back: symbols
	// made together are read together, and a few blocks are fewer objects
	// for the Go GC than a string each.
	block []byte
}

// symbol returns the string of symbol id.
func symbol(id uint32) string { return symbols.symbol(id) }

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
	if t.n == maxSymbols || t.bytes+maxSymbolLen > maxSymbolBytes {
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

// appendTokens appends the tokens of packed labels lbls to dst.
func appendTokens(dst []byte, lbls Labels) []byte { return symbols.appendTokens(dst, lbls) }

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

// nextToken decodes the token at the start of tok. A token of one or two
// bytes (a symbol below 8192, a literal shorter than 8192 bytes) is
// decoded inline: it is nearly all of them, and this runs for every label
// of every known series of every push and of every series /federate
// writes.
func nextToken(tok string) (s, rest string) {
	c := tok[0]
	if c < 0x80 {
		if c&1 == 0 {
			return symbols.symbol(uint32(c >> 1)), tok[1:]
		}
		n := int(c>>1) + 1
		return tok[1:n], tok[n:]
	}
	if c1 := tok[1]; c1 < 0x80 {
		x := uint32(c&0x7f) | uint32(c1)<<7
		if x&1 == 0 {
			return symbols.symbol(x >> 1), tok[2:]
		}
		n := int(x>>1) + 2
		return tok[2:n], tok[n:]
	}
	return symbols.nextToken(tok)
}

func (t *symtab) nextToken(tok string) (s, rest string) {
	x, w := uvarintString(tok)
	if x&1 == 0 {
		return t.symbol(uint32(x >> 1)), tok[w:]
	}
	n := int(x >> 1)
	return tok[w : w+n], tok[w+n:]
}

// SymbolStats returns the number of symbols and their bytes.
func SymbolStats() (n, bytes int) { return symbols.stats() }

func (t *symtab) stats() (n, bytes int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n, t.bytes
}
