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
	Name, Value string
}

// Iter returns an iterator positioned before the first label.
func (ls Labels) Iter() LabelIter { return LabelIter{rest: string(ls)} }

// Next advances to the next label and reports whether there is one.
func (it *LabelIter) Next() bool {
	if it.rest == "" {
		return false
	}
	it.Name, it.rest = nextString(it.rest)
	it.Value, it.rest = nextString(it.rest)
	return true
}

func nextString(s string) (string, string) {
	// Lengths below 128 are one byte: the common case needs no loop.
	n, w := uint64(s[0]), 1
	if n >= 0x80 {
		var v uint64
		var shift uint
		for w = 0; w < len(s); w++ {
			c := s[w]
			v |= uint64(c&0x7f) << shift
			if c < 0x80 {
				break
			}
			shift += 7
		}
		n, w = v, w+1
	}
	return s[w : w+int(n)], s[w+int(n):]
}

// Get returns the value of the label name, or "" when it is absent.
func (ls Labels) Get(name string) string {
	for it := ls.Iter(); it.Next(); {
		if it.Name == name {
			return it.Value
		}
	}
	return ""
}

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
