package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/wal/head"
)

// TestReplayCorruption damages a data dir written by a real Storage (a
// checkpoint of two chunks, then several segments) in the ways disks and
// operators do, and checks what replay keeps, what it reports, and that the
// Storage goes on working: appends after the repair survive the next replay.
func TestReplayCorruption(t *testing.T) {
	fx := buildFixture(t)
	last := fx.segments[len(fx.segments)-1]
	lastSize := fx.size(last)
	second, third, fourth := fx.segments[1], fx.segments[2], fx.segments[3]
	cases := map[string]struct {
		damage func(t *testing.T, walDir string)
		// Everything in lost.file from lost.off on is gone; lost.file ""
		// loses nothing.
		lost fileOffset
		// tail: the damage is the tail of the last segment, which replay
		// truncates at lost.off without reporting it. Otherwise damage is
		// reported as a *CorruptionError at lost.
		tail bool
	}{
		"torn last record": {
			damage: func(t *testing.T, dir string) { truncateFile(t, filepath.Join(dir, last), lastSize-3) },
			lost:   fileOffset{last, fx.lastRecordStart(last)},
			tail:   true,
		},
		"zeroed page in last segment": {
			// Good records after the page go too: doc.go truncates the last
			// segment at its first bad record.
			damage: func(t *testing.T, dir string) {
				at := fx.batchesIn(last)[1].start + 100
				if at+32<<10 >= lastSize {
					t.Fatal("fixture: no records after the page")
				}
				writeAt(t, filepath.Join(dir, last), at, make([]byte, 32<<10))
			},
			lost: fileOffset{last, fx.batchesIn(last)[1].start},
			tail: true,
		},
		"zeros appended to last segment": {
			damage: func(t *testing.T, dir string) { writeAt(t, filepath.Join(dir, last), lastSize, make([]byte, 32<<10)) },
			lost:   fileOffset{last, lastSize},
			tail:   true,
		},
		"flipped bit in older segment": {
			damage: func(t *testing.T, dir string) {
				flipBit(t, filepath.Join(dir, second), fx.middleBatch(second).start+headerSize+40)
			},
			lost: fileOffset{second, fx.middleBatch(second).start},
		},
		"flipped bit in a length field": { // 128 MiB more than the file holds
			damage: func(t *testing.T, dir string) { flipBit(t, filepath.Join(dir, fourth), fx.middleBatch(fourth).start+3) },
			lost:   fileOffset{fourth, fx.middleBatch(fourth).start},
		},
		"truncated older segment": {
			damage: func(t *testing.T, dir string) {
				truncateFile(t, filepath.Join(dir, third), fx.middleBatch(third).start+30)
			},
			lost: fileOffset{third, fx.middleBatch(third).start},
		},
		"missing segment": {
			damage: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, third)); err != nil {
					t.Fatal(err)
				}
			},
			lost: fileOffset{third, 0},
		},
		"stray file": {
			damage: func(t *testing.T, dir string) { writeAt(t, filepath.Join(dir, "notes-7f3a.txt"), 0, []byte("hello")) },
		},
		"stray directory named like the next segment": {
			damage: func(t *testing.T, dir string) {
				n, _ := parseSegmentName(last)
				if err := os.Mkdir(filepath.Join(dir, segmentName(n+1)), 0o750); err != nil {
					t.Fatal(err)
				}
			},
		},
		"leftover checkpoint tmp": {
			damage: func(t *testing.T, dir string) {
				writeAt(t, filepath.Join(dir, checkpointName(99)+".tmp"), 0, []byte("half a checkpoint"))
			},
		},
		"corrupt checkpoint": {
			// The second series record: the first chunk stays readable.
			damage: func(t *testing.T, dir string) {
				flipBit(t, filepath.Join(dir, fx.checkpoint), fx.records[fx.checkpoint][2]+headerSize+20)
			},
			lost: fileOffset{fx.checkpoint, fx.records[fx.checkpoint][2]},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := fx.copy(t)
			walDir := filepath.Join(dir, "wal")
			c.damage(t, walDir)
			reported := c.lost.file != "" && !c.tail

			st, hd, reg, err := openReplayed(t, dir, Options{SegmentSize: fixtureSegmentSize})
			checkReplayErr(t, err, reported, c.lost)
			if !st.Ready() {
				t.Fatal("storage not ready after replay")
			}
			want := fx.wantAfter(c.lost)
			diffHeld(t, heldSamples(hd), want)
			wantCorruptions := 0.0
			if c.lost.file != "" {
				wantCorruptions = 1
			}
			if got := counterValue(t, reg, "fedgate_wal_corruptions_total"); got != wantCorruptions {
				t.Errorf("fedgate_wal_corruptions_total = %v, want %v", got, wantCorruptions)
			}
			if c.tail {
				if got := fileSize(t, filepath.Join(walDir, c.lost.file)); got != c.lost.off {
					t.Errorf("%s is %d bytes after replay, want %d (the end of the last good record)", c.lost.file, got, c.lost.off)
				}
			}
			if _, err := os.Stat(filepath.Join(walDir, checkpointName(99)+".tmp")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("leftover checkpoint tmp not removed: %v", err)
			}

			// The sender retries what was lost of the newest batch; a new
			// series arrives too. Both must survive the next replay.
			retry := fx.batches[len(fx.batches)-1]
			retry.t += 1000
			fresh := fixtureBatch{labels: [][]byte{seriesLabels("after_repair", "case", name)}, t: retry.t}
			for _, b := range []fixtureBatch{retry, fresh} {
				if err := st.Append(context.Background(), b.batch()); err != nil {
					t.Fatalf("append after replay: %v", err)
				}
				b.addTo(want, fileOffset{})
			}
			diffHeld(t, heldSamples(hd), want)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			_, hd2, reg2, err := openReplayed(t, dir, Options{SegmentSize: fixtureSegmentSize})
			checkReplayErr(t, err, reported, c.lost)
			diffHeld(t, heldSamples(hd2), want)
			if !reported {
				wantCorruptions = 0
			}
			if got := counterValue(t, reg2, "fedgate_wal_corruptions_total"); got != wantCorruptions {
				t.Errorf("second replay: fedgate_wal_corruptions_total = %v, want %v", got, wantCorruptions)
			}
		})
	}
}

func checkReplayErr(t *testing.T, err error, reported bool, at fileOffset) {
	t.Helper()
	if !reported {
		if err != nil {
			t.Fatalf("Replay = %v, want nil", err)
		}
		return
	}
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("Replay = %v, want a *CorruptionError", err)
	}
	if ce.File != at.file || ce.Offset != at.off {
		t.Fatalf("Replay = %v, want a corruption in %s at offset %d", err, at.file, at.off)
	}
}

const (
	fixtureSegmentSize = 64 << 10
	fixtureT0          = replayNowMs - 3_600_000 // the first sample's timestamp
	replayNowMs        = 1_700_000_000_000       // the heads' clock
)

type fileOffset struct {
	file string
	off  int64
}

// fixtureBatch is one Append: one new sample, at t, for each of labels.
type fixtureBatch struct {
	labels     [][]byte
	t          int64
	file       string // the segment it went to
	start, end int64  // where its records are in file
}

func (b fixtureBatch) batch() *head.Batch {
	hb := &head.Batch{Tenant: "team-a"}
	for _, l := range b.labels {
		hb.Series = append(hb.Series, head.BatchSeries{Labels: l, Samples: []head.Sample{{T: b.t, V: float64(b.t - fixtureT0)}}})
	}
	return hb
}

func (b fixtureBatch) addTo(want map[string]located, at fileOffset) {
	for _, l := range b.labels {
		want[string(l)] = located{head.Sample{T: b.t, V: float64(b.t - fixtureT0)}, at}
	}
}

// located is a sample and where it, and its series record, end.
type located struct {
	s   head.Sample
	end fileOffset
}

// fixture is a pristine data dir and what every series in it should hold.
type fixture struct {
	dir        string
	checkpoint string
	segments   []string // after the checkpoint, oldest first
	batches    []fixtureBatch
	records    map[string][]int64 // record starts of each file
	want       map[string]located // by packed labels
}

// buildFixture writes 5000 series (2 checkpoint chunks), checkpoints them,
// then appends 4-series batches of about 4 KiB until there are 5 segments
// after the checkpoint and the last holds 12 batches.
func buildFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{dir: t.TempDir(), records: map[string][]int64{}, want: map[string]located{}}
	st, _, _, err := openReplayed(t, fx.dir, Options{SegmentSize: fixtureSegmentSize})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var checkpointed []fixtureBatch
	for i := range 5 {
		b := fixtureBatch{t: fixtureT0 + int64(i)}
		for j := range 2 * checkpointChunk / 5 { // two chunks in all
			b.labels = append(b.labels, seriesLabels("in_checkpoint", "i", fmt.Sprintf("%d-%04d", i, j)))
		}
		if err := st.Append(ctx, b.batch()); err != nil {
			t.Fatal(err)
		}
		checkpointed = append(checkpointed, b)
	}
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(fx.dir, "wal")
	for i := 0; ; i++ {
		b := fixtureBatch{t: fixtureT0 + 100 + int64(i)}
		for j := range 4 {
			b.labels = append(b.labels, seriesLabels("in_segment", "b", fmt.Sprintf("%04d-%d", i, j), "pad", strings.Repeat("x", 1000)))
		}
		if err := st.Append(ctx, b.batch()); err != nil {
			t.Fatal(err)
		}
		segs, cps := listWAL(t, walDir)
		b.file, b.end = segs[len(segs)-1], fileSize(t, filepath.Join(walDir, segs[len(segs)-1]))
		if n := len(fx.batches); n > 0 && fx.batches[n-1].file == b.file {
			b.start = fx.batches[n-1].end
		}
		fx.batches = append(fx.batches, b)
		b.addTo(fx.want, fileOffset{b.file, b.end})
		fx.checkpoint, fx.segments = cps[0], segs
		if len(segs) >= 5 && len(fx.batchesIn(b.file)) >= 12 {
			break
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Where a series went in the checkpoint is known only from reading it;
	// in segments, reading must agree with what Append left.
	for _, name := range append([]string{fx.checkpoint}, fx.segments...) {
		fx.records[name] = parseRecords(t, filepath.Join(walDir, name), func(labels []byte, s head.Sample, end int64) {
			at := located{s, fileOffset{name, end}}
			if name == fx.checkpoint {
				fx.want[string(labels)] = at
			} else if fx.want[string(labels)] != at {
				t.Fatalf("fixture: %s read back as %+v, appended as %+v", head.Labels(labels), at, fx.want[string(labels)])
			}
		})
	}
	for _, b := range checkpointed {
		for _, l := range b.labels {
			if got := fx.want[string(l)]; got.s.T != b.t || got.end.file != fx.checkpoint {
				t.Fatalf("fixture: %s is %+v in the checkpoint, want t=%d", head.Labels(l), got, b.t)
			}
		}
	}
	if len(fx.records[fx.checkpoint]) != 4 {
		t.Fatalf("fixture: checkpoint has %d records, want 2 chunks of 2", len(fx.records[fx.checkpoint]))
	}
	for _, b := range fx.batches {
		if !slices.Contains(fx.records[b.file], b.start) {
			t.Fatalf("fixture: batch at %s:%d does not start a record", b.file, b.start)
		}
	}
	return fx
}

// parseRecords returns the record starts of a pristine file and reports
// each sample with its series' labels and the end of its record (its
// series record comes before it).
func parseRecords(t *testing.T, path string, fn func(labels []byte, s head.Sample, end int64)) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newReader(filepath.Base(path), f, nil)
	labels := map[uint64][]byte{}
	var starts []int64
	for {
		at := r.offset
		typ, payload, err := r.next()
		if err == io.EOF {
			return starts
		}
		if err != nil {
			t.Fatalf("fixture: %v", err)
		}
		starts = append(starts, at)
		if typ == recSeries {
			err = decodeSeries(payload, func(ref uint64, _, l []byte) { labels[ref] = slices.Clone(l) })
		} else {
			err = decodeSamples(payload, func(ref uint64, ts int64, v float64) {
				fn(labels[ref], head.Sample{T: ts, V: v}, r.offset)
			})
		}
		if err != nil {
			t.Fatalf("fixture: %v", err)
		}
	}
}

// wantAfter returns what replay must hold when everything in lost.file from
// lost.off on is gone.
func (fx *fixture) wantAfter(lost fileOffset) map[string]located {
	want := make(map[string]located, len(fx.want))
	for l, w := range fx.want {
		if w.end.file != lost.file || w.end.off <= lost.off {
			want[l] = w
		}
	}
	return want
}

func (fx *fixture) batchesIn(file string) []fixtureBatch {
	var bs []fixtureBatch
	for _, b := range fx.batches {
		if b.file == file {
			bs = append(bs, b)
		}
	}
	return bs
}

func (fx *fixture) middleBatch(file string) fixtureBatch {
	bs := fx.batchesIn(file)
	return bs[len(bs)/2]
}

func (fx *fixture) lastRecordStart(file string) int64 {
	return fx.records[file][len(fx.records[file])-1]
}

func (fx *fixture) size(file string) int64 {
	bs := fx.batchesIn(file)
	return bs[len(bs)-1].end
}

// copy returns a new data dir holding the fixture's files.
func (fx *fixture) copy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(fx.dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// listWAL returns the segment and checkpoint names in walDir, sorted.
func listWAL(t *testing.T, walDir string) (segs, cps []string) {
	t.Helper()
	entries, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name()); ok {
			segs = append(segs, e.Name())
		} else if strings.HasPrefix(e.Name(), "checkpoint.") {
			cps = append(cps, e.Name())
		}
	}
	return segs, cps
}

func truncateFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func flipBit(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, path, off, []byte{b[off] ^ 0x08})
}

// TestCorruptLengthAllocatesLittle replays a record whose length field
// claims 128 MiB more than the file holds: replay must not allocate what the
// length claims before finding the bytes are not there.
func TestCorruptLengthAllocatesLittle(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "wal"), 0o750); err != nil {
		t.Fatal(err)
	}
	rec := []byte{0, 0, 0, 8, 0, 0, 0, 0, recSeries} // length 0x08000000
	writeAt(t, filepath.Join(dir, "wal", segmentName(1)), 0, append(rec, make([]byte, 100<<10)...))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _, err := openReplayed(t, dir, Options{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Replay = %v, want the torn tail truncated", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 32<<20 {
		t.Errorf("replay allocated %d MiB for a record of 100 KiB", got>>20)
	}
}
