package fuzz

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/wal"
	"github.com/fedgate/fedgate/wal/head"
)

// maxWALInput caps FuzzWALReplay inputs, a small segment's worth.
const maxWALInput = 1 << 20

// How FuzzWALReplay lays the fuzzed bytes out.
const (
	asSegment    = iota // the only segment: a bad tail is truncated
	asCheckpoint        // the only checkpoint: a bad record is reported
	asReframed          // the only segment, every record's CRC made to match, to reach the payload decoders
	layouts
)

const (
	walRetention   = time.Hour                                     // of the fuzzed heads
	walNowMs       = 1_700_000_000_000                             // the clock of the fuzzed heads
	appendedLabels = "\x08__name__\x08appended\x05after\x06replay" // what the target appends after replay
)

// FuzzWALReplay writes arbitrary bytes as a WAL file and replays it into a
// fresh head. It must never panic; it must hold exactly what a reference
// reading of the documented format (wal/doc.go) holds: the records up to the
// first bad one, each applied whole; it must report a bad checkpoint record
// as a *CorruptionError at its offset and cut a segment's bad tail off at
// the same offset; and a series appended afterwards must survive the next
// replay.
func FuzzWALReplay(f *testing.F) {
	for _, seed := range walSeeds(f) {
		for layout := range layouts {
			f.Add(seed, uint8(layout))
		}
	}
	f.Add([]byte{}, uint8(asSegment))
	f.Add(make([]byte, 64), uint8(asCheckpoint))
	// Series records that pass their CRC but whose labels are not packed
	// label sets: cut short, a name without a value, a length not in its
	// shortest form, a length past 2^64. Replay used to hand such labels to
	// the head, which panicked.
	for _, labels := range []string{"\x08__name__\x01a\x05x", "\x08__name__", "\x88\x00__name__\x01a", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"} {
		rec := append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 7, 1, 't'}, byte(len(labels)))
		rec = append(rec, labels...)
		binary.LittleEndian.PutUint32(rec, uint32(len(rec)-8))
		f.Add(rec, uint8(asReframed))
	}
	// A series record for the series the target appends, then a byte too
	// many. Replay used to restore the series before finding the record bad
	// and cutting it off, so the append took the series as logged, wrote no
	// series record for it, and the next replay lost the sample.
	rec := append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 7, 1, 't', byte(len(appendedLabels))}, appendedLabels...)
	rec = append(rec, 0)
	binary.LittleEndian.PutUint32(rec, uint32(len(rec)-8))
	f.Add(rec, uint8(asReframed))

	f.Fuzz(func(t *testing.T, data []byte, layout uint8) {
		if len(data) > maxWALInput {
			return
		}
		layout %= layouts
		name := "00000001"
		switch layout {
		case asCheckpoint:
			name = "checkpoint.00000001"
		case asReframed:
			data = reframe(data)
		}
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o750); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "wal", name)
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		want, end, refsUnique := referenceReplay(data)
		var wantErr *wal.CorruptionError
		if layout == asCheckpoint && end < len(data) {
			wantErr = &wal.CorruptionError{File: name, Offset: int64(end)}
		}

		st, hd, err := replayWAL(t, dir)
		checkWALErr(t, err, wantErr)
		if layout != asCheckpoint {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(end) {
				t.Fatalf("segment is %d bytes after replay, want %d, the good records", fi.Size(), end)
			}
		}
		diffWALHeld(t, heldWAL(t, hd), want)
		if !refsUnique {
			// Records that pass their CRC yet give one ref two label sets
			// break what the writer guarantees (doc.go: a ref is unique for
			// the life of the data directory); the head keeps one series per
			// label set, so which of them later samples of that ref reach
			// on the next replay is not defined.
			return
		}

		appended := []byte(appendedLabels)
		if err := st.Append(context.Background(), &head.Batch{Tenant: "t", Series: []head.BatchSeries{
			{Labels: appended, Samples: []head.Sample{{T: walNowMs, V: 1}}},
		}}); err != nil {
			t.Fatalf("append after replay: %v", err)
		}
		if old, ok := want[string(appended)]; !ok || old.t < walNowMs {
			want[string(appended)] = walSample{walNowMs, math.Float64bits(1)}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		_, hd, err = replayWAL(t, dir)
		checkWALErr(t, err, wantErr)
		diffWALHeld(t, heldWAL(t, hd), want)
	})
}

// walSeeds returns the files of a WAL written by a real Storage: segments
// of one Append each and a checkpoint, some tens of bytes each. They are
// kept tiny because the fuzzer minimizes every new input for up to a
// minute, with a number of runs that grows with the square of its size.
func walSeeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	hd := head.New(head.Options{Retention: walRetention, Now: func() time.Time { return time.UnixMilli(walNowMs) }}, nil)
	st, err := wal.Open(dir, hd, wal.Options{SegmentSize: 1}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := st.Replay(); err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	addFiles := func() {
		files, err := filepath.Glob(filepath.Join(dir, "wal", "*"))
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			seeds = append(seeds, b)
		}
	}
	a := head.AppendLabel(nil, "__name__", "a")
	b := head.AppendLabel(head.AppendLabel(nil, "__name__", "b"), "x", "y")
	for i, batch := range []head.BatchSeries{
		{Labels: a, Samples: []head.Sample{{T: walNowMs - 2000, V: 1}}},
		{Labels: b, Samples: []head.Sample{{T: walNowMs - 1000, V: 0.5}, {T: walNowMs - 999, V: -2}}},
		{Labels: a, Samples: []head.Sample{{T: walNowMs - 500, V: 3}}}, // after the checkpoint: no series record
	} {
		if i == 2 {
			addFiles() // segments 1 and 2, which the checkpoint deletes
			if err := st.Checkpoint(); err != nil {
				f.Fatal(err)
			}
		}
		if err := st.Append(context.Background(), &head.Batch{Tenant: "t", Series: []head.BatchSeries{batch}}); err != nil {
			f.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		f.Fatal(err)
	}
	addFiles() // the checkpoint and segment 3
	if len(seeds) != 4 {
		f.Fatalf("seed WAL has %d files, want 4", len(seeds))
	}
	return seeds
}

func replayWAL(t *testing.T, dir string) (*wal.Storage, *head.Head, error) {
	t.Helper()
	hd := head.New(head.Options{Retention: walRetention, Now: func() time.Time { return time.UnixMilli(walNowMs) }}, nil)
	st, err := wal.Open(dir, hd, wal.Options{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Replay()
	t.Cleanup(func() { _ = st.Close() })
	if !st.Ready() {
		t.Fatal("storage not ready after replay")
	}
	return st, hd, err
}

func checkWALErr(t *testing.T, err error, want *wal.CorruptionError) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Replay = %v, want nil", err)
		}
		return
	}
	var ce *wal.CorruptionError
	if !errors.As(err, &ce) || ce.File != want.File || ce.Offset != want.Offset {
		t.Fatalf("Replay = %v, want a *CorruptionError in %s at offset %d", err, want.File, want.Offset)
	}
}

// walSample is a held sample, its value as bits so that NaNs compare.
type walSample struct {
	t int64
	v uint64
}

// heldWAL returns every series of hd that holds a sample, checking that its
// labels are a canonical packed label set.
func heldWAL(t *testing.T, hd *head.Head) map[string]walSample {
	t.Helper()
	held := map[string]walSample{}
	for _, s := range hd.AppendAllSeries(nil) {
		var again []byte
		for it := s.Labels().Iter(); it.Next(); {
			again = head.AppendLabel(again, it.Name, it.Value)
		}
		if string(again) != string(s.Labels()) {
			t.Fatalf("held labels %q are not canonical packed labels", s.Labels())
		}
		if s.Committed() {
			ts, v := s.Latest()
			held[string(s.Labels())] = walSample{ts, math.Float64bits(v)}
		}
	}
	return held
}

func diffWALHeld(t *testing.T, got, want map[string]walSample) {
	t.Helper()
	var diffs []string
	for l, w := range want {
		if g, ok := got[l]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("%q holds %+v (%v), want %+v", l, g, ok, w))
		}
	}
	for l, g := range got {
		if _, ok := want[l]; !ok {
			diffs = append(diffs, fmt.Sprintf("%q holds %+v, want nothing", l, g))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Fatalf("held series differ from the reference reading:\n%s", strings.Join(diffs[:min(10, len(diffs))], "\n"))
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// reframe rewrites the CRC of every whole record in b.
func reframe(b []byte) []byte {
	b = slices.Clone(b)
	for off := 0; len(b)-off >= 8; {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n == 0 || n > len(b)-off-8 {
			break
		}
		binary.LittleEndian.PutUint32(b[off+4:], crc32.Checksum(b[off+8:off+8+n], castagnoli))
		off += 8 + n
	}
	return b
}

// referenceReplay reads b as wal/doc.go describes: records up to the first
// one that is cut short, fails its CRC, has an unknown type or does not
// decode, each applied whole. It returns the newest sample of each series
// whose newest sample is within the retention (replay removes the
// others), where the good records end, and whether they gave each ref only
// one label set.
func referenceReplay(b []byte) (_ map[string]walSample, end int, refsUnique bool) {
	byLabels := map[string]*walSample{} // t is MinInt64 until a sample comes
	refs := map[uint64]*walSample{}
	refsUnique = true
	for ; len(b)-end >= 8; end += 8 + int(binary.LittleEndian.Uint32(b[end:])) {
		n := int(binary.LittleEndian.Uint32(b[end:]))
		if n == 0 || n > len(b)-end-8 {
			break
		}
		body := b[end+8 : end+8+n]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[end+4:]) {
			break
		}
		if !applyRecord(body, byLabels, refs, &refsUnique) {
			break
		}
	}
	held := map[string]walSample{}
	for l, s := range byLabels {
		if s.t >= walNowMs-walRetention.Milliseconds() {
			held[l] = *s
		}
	}
	return held, end, refsUnique
}

// applyRecord applies one record's type and payload, all of it or, if it
// does not decode, nothing.
func applyRecord(body []byte, byLabels map[string]*walSample, refs map[uint64]*walSample, refsUnique *bool) bool {
	p := walPayload{b: body[1:], ok: true}
	switch body[0] {
	case 1: // series: n × {ref, tenant, labels}
		type entry struct {
			ref    uint64
			labels string
		}
		var entries []entry
		for i, n := uint64(0), p.uvarint(); i < n && p.ok; i++ {
			ref := p.uvarint()
			p.bytes(p.uvarint()) // tenant
			labels := p.bytes(p.uvarint())
			p.ok = p.ok && canonicalLabels(labels)
			entries = append(entries, entry{ref, string(labels)})
		}
		if !p.ok || len(p.b) != 0 {
			return false
		}
		for _, e := range entries {
			if byLabels[e.labels] == nil {
				byLabels[e.labels] = &walSample{t: math.MinInt64}
			}
			if old := refs[e.ref]; old != nil && old != byLabels[e.labels] {
				*refsUnique = false
			}
			refs[e.ref] = byLabels[e.labels]
		}
	case 2: // samples: n, base, n × {ref, t-base, value bits}
		type entry struct {
			ref uint64
			s   walSample
		}
		var entries []entry
		n, base := p.uvarint(), p.varint()
		for i := uint64(0); i < n && p.ok; i++ {
			entries = append(entries, entry{p.uvarint(), walSample{base + p.varint(), p.uint64()}})
		}
		if !p.ok || len(p.b) != 0 {
			return false
		}
		for _, e := range entries {
			if s := refs[e.ref]; s != nil && e.s.t > s.t {
				*s = e.s
			}
		}
	case 3: // tombstones: n × ref; the series leaves the head, its refs
		// keep pointing at the removed one, and its labels start afresh
		var dead []uint64
		for i, n := uint64(0), p.uvarint(); i < n && p.ok; i++ {
			dead = append(dead, p.uvarint())
		}
		if !p.ok || len(p.b) != 0 {
			return false
		}
		for _, ref := range dead {
			s := refs[ref]
			if s == nil {
				continue
			}
			for l, x := range byLabels {
				if x == s {
					byLabels[l] = &walSample{t: math.MinInt64}
				}
			}
			delete(refs, ref)
		}
	case 4: // base: only a delta checkpoint's first record, naming an older
		// checkpoint; the only checkpoint here is number 1, so it never
		// has one
		return false
	default:
		return false
	}
	return true
}

// walPayload decodes a record payload; ok turns false for good at the first
// field that does not fit.
type walPayload struct {
	b  []byte
	ok bool
}

func (p *walPayload) uvarint() uint64 {
	v, n := binary.Uvarint(p.b)
	if n <= 0 {
		p.ok = false
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *walPayload) varint() int64 {
	v, n := binary.Varint(p.b)
	if n <= 0 {
		p.ok = false
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *walPayload) bytes(n uint64) []byte {
	if !p.ok || n > uint64(len(p.b)) {
		p.ok = false
		return nil
	}
	out := p.b[:n]
	p.b = p.b[n:]
	return out
}

func (p *walPayload) uint64() uint64 {
	if len(p.b) < 8 {
		p.ok = false
		return 0
	}
	v := binary.LittleEndian.Uint64(p.b)
	p.b = p.b[8:]
	return v
}

// canonicalLabels reports whether b is a packed label set as head.Labels
// defines it and head.AppendLabel writes it: name, value pairs, lengths as
// shortest-form uvarints.
func canonicalLabels(b []byte) bool {
	for i := 0; len(b) > 0; i++ {
		var ok bool
		if _, b, ok = packedString(b); !ok || i%2 == 0 && len(b) == 0 {
			return false
		}
	}
	return true
}

func packedString(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || w != len(binary.AppendUvarint(nil, n)) || n > uint64(len(b)-w) {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}
