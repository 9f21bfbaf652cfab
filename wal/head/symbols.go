package head

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Bounds of the symbol table; see "Label storage" in the package
// documentation.
const (
	maxSymbols     = 1 << 17
	maxSymbolBytes = 8 << 20
	maxSymbolLen   = 128     // longer strings stay literals
	symbolChunk    = 1 << 12 // symbols per chunk of the table
	seenSlots      = 1 << 14 // of the filter of values seen once
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
	// seen holds the hash of the last value that landed in each slot
	// without becoming a symbol: a value whose hash is already there is
	// seen the second time.
	seen [seenSlots]atomic.Uint64
}

// symbol returns the string of symbol id.
func symbol(id uint32) string { return symbols.symbol(id) }

func (t *symtab) symbol(id uint32) string {
	return t.chunks[id/symbolChunk].Load()[id%symbolChunk]
}

// intern returns the symbol of s, making it if s was seen before (names
// too: one tenant sending ever new names must not fill the table for all);
// ok is false if s stays a literal.
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
	if slot := &t.seen[h%seenSlots]; slot.Load() != h {
		slot.Store(h)
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
	owned := strings.Clone(s) // s may alias a request
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

// nextToken decodes the token at the start of tok.
func nextToken(tok string) (s, rest string) { return symbols.nextToken(tok) }

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
