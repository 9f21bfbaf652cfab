package relabel

import (
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/wal/head"
)

// Memo remembers what pipelines made of recent label sets. Series come back
// every scrape interval with the same labels, so the allowlist, the rules'
// regexes and the HMACs run once per series, not once per sample. The key
// is the exact input (tenant and packed, sorted labels), so two series can
// never share an entry. A Memo belongs to one configuration: a reload
// builds a new one.
type Memo struct {
	cache *lru.Cache[string, memoEntry]
}

// MemoEntry is what became of one input: its final packed labels (cluster
// label stamped, sorted, validated, in head.Labels form), or why it was
// dropped.
type MemoEntry struct {
	Packed  string
	Dropped string
}

type memoEntry = MemoEntry

// NewMemo returns a Memo of at most size entries.
func NewMemo(size int) (*Memo, error) {
	c, err := lru.New[string, memoEntry](size)
	if err != nil {
		return nil, err
	}
	return &Memo{cache: c}, nil
}

// Key builds the memo key of ls (sorted) for the pipeline's tenant into
// st's buffer; it is valid until the next call with st.
func (p *Pipeline) Key(ls []remotewrite.Label, st *State) []byte {
	k := append(st.key[:0], p.tenant...)
	k = append(k, 0xff) // never in UTF-8: the tenant id ends here
	for _, l := range ls {
		k = head.AppendLabel(k, l.Name, l.Value)
	}
	st.key = k
	return k
}

// Lookup returns the entry for key, without copying key.
func (m *Memo) Lookup(key []byte) (MemoEntry, bool) {
	if len(key) == 0 {
		return memoEntry{}, false
	}
	return m.cache.Get(unsafe.String(&key[0], len(key)))
}

// Store remembers what became of key: the final packed labels, or why the
// series was dropped. Both are copied.
func (m *Memo) Store(key []byte, packed []byte, dropped string) {
	m.cache.Add(string(key), MemoEntry{Packed: string(packed), Dropped: dropped})
}
