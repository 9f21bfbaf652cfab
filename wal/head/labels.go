package head

import "encoding/binary"

// Labels is a label set in packed form: for each label, sorted by name,
//
//	uvarint(len(name)) name uvarint(len(value)) value
//
// It is comparable with ==, hashable as bytes, and costs one allocation.
type Labels string

// AppendLabel appends one label to a packed label set under construction.
// The caller appends labels in sorted order.
func AppendLabel(b []byte, name, value string) []byte {
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// LabelIter walks a packed label set in order.
//
//	for it := ls.Iter(); it.Next(); { use(it.Name, it.Value) }
type LabelIter struct {
	rest        string
	syms        *symtab // rest is a held series' tokens from syms; nil: packed labels
	Name, Value string
}

// Iter returns an iterator positioned before the first label.
func (ls Labels) Iter() LabelIter { return LabelIter{rest: string(ls)} }

// Next advances to the next label and reports whether there is one.
func (it *LabelIter) Next() bool {
	if it.rest == "" {
		return false
	}
	if t := it.syms; t != nil {
		it.Name, it.rest = t.nextToken(it.rest)
		it.Value, it.rest = t.nextToken(it.rest)
		return true
	}
	it.Name, it.rest = nextString(it.rest)
	it.Value, it.rest = nextString(it.rest)
	return true
}

func nextString(s string) (string, string) {
	n, w := uvarintString(s)
	return s[w : w+int(n)], s[w+int(n):]
}

// uvarintString decodes the uvarint at the start of s, which the head
// wrote, and returns it and its width.
func uvarintString(s string) (uint64, int) {
	// Below 128 it is one byte: the common case needs no loop.
	if s[0] < 0x80 {
		return uint64(s[0]), 1
	}
	var v uint64
	var shift uint
	for w := 0; w < len(s); w++ {
		c := s[w]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, w + 1
		}
		shift += 7
	}
	panic("head: truncated uvarint in labels")
}

// Get returns the value of the label name, or "" when it is absent. it
// is positioned before its first label and is not moved.
func (it LabelIter) Get(name string) string {
	for it.Next() {
		if it.Name == name {
			return it.Value
		}
	}
	return ""
}

// Get returns the value of the label name, or "" when it is absent.
func (ls Labels) Get(name string) string { return ls.Iter().Get(name) }

// Len returns the number of labels.
func (ls Labels) Len() int {
	n := 0
	for it := ls.Iter(); it.Next(); {
		n++
	}
	return n
}

// String renders the label set as {a="1", b="2"}, for messages and tests.
func (ls Labels) String() string {
	b := []byte{'{'}
	for it := ls.Iter(); it.Next(); {
		if len(b) > 1 {
			b = append(b, ", "...)
		}
		b = append(b, it.Name...)
		b = append(b, '=')
		b = appendQuoted(b, it.Value)
	}
	return string(append(b, '}'))
}

func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
