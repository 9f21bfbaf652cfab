package wal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedgate/fedgate/wal/head"
)

// cpRecord is one record of a checkpoint file, decoded for tests.
type cpRecord struct {
	typ     byte
	base    uint64   // recBase
	refs    []uint64 // recSeries: the refs it carries
	samples int      // recSamples
}

func readCheckpoint(t *testing.T, st *Storage, n int) []cpRecord {
	t.Helper()
	f, err := os.Open(filepath.Join(st.dir, checkpointName(n)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newReader(checkpointName(n), f, nil)
	var out []cpRecord
	for {
		typ, payload, err := r.next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		rec := cpRecord{typ: typ}
		switch typ {
		case recBase:
			b, _, err := decodeBase(payload)
			if err != nil {
				t.Fatal(err)
			}
			rec.base = uint64(b)
		case recSeries:
			err = decodeSeries(payload, func(ref uint64, _, _ []byte) { rec.refs = append(rec.refs, ref) })
		case recSamples:
			err = decodeSamples(payload, func(uint64, int64, float64) { rec.samples++ })
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

// checkpointKind returns a checkpoint's base (0 for a full one), the refs
// of its series records and its number of samples.
func checkpointKind(t *testing.T, st *Storage, n int) (base int, refs []uint64, samples int) {
	t.Helper()
	for i, rec := range readCheckpoint(t, st, n) {
		switch rec.typ {
		case recBase:
			if i != 0 {
				t.Fatalf("checkpoint %d: base record at position %d", n, i)
			}
			base = int(rec.base)
		case recSeries:
			refs = append(refs, rec.refs...)
		case recSamples:
			samples += rec.samples
		}
	}
	slices.Sort(refs)
	return base, refs, samples
}

// mustHold checks that series [from, to) of tenant hold a sample at want.
func mustHold(t *testing.T, hd *head.Head, tenant string, from, to int, want int64) {
	t.Helper()
	for i := from; i < to; i++ {
		if got := held(hd, tenant, i); got != want {
			t.Fatalf("%s/%d: held %d, want %d", tenant, i, got, want)
		}
	}
}

func checkpoints(t *testing.T, st *Storage) []int {
	t.Helper()
	_, cps, err := st.listDir()
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

func mustCheckpoint(t *testing.T, st *Storage) {
	t.Helper()
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
}

func refsOf(hd *head.Head, tenant string, from, to int) []uint64 {
	var refs []uint64
	for _, s := range hd.AppendAllSeries(nil) {
		for i := from; i < to; i++ {
			if string(s.Labels()) == string(labelsOf(tenant, i)) {
				refs = append(refs, s.Ref())
			}
		}
	}
	slices.Sort(refs)
	return refs
}

// TestDeltaCheckpointCarriesOnlyNewSeries: once a full checkpoint is on
// disk, the next ones carry a sample of every series but series records only
// for the series the full one lacks; replay of base plus delta holds
// everything; an older delta goes when a newer one is durable, the base
// stays.
func TestDeltaCheckpointCarriesOnlyNewSeries(t *testing.T) {
	e := newEnv(t)
	st, hd, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 2000, now-1000))
	mustCheckpoint(t, st)
	cps := checkpoints(t, st)
	if len(cps) != 1 {
		t.Fatalf("checkpoints %v, want one", cps)
	}
	full := cps[0]
	if base, refs, samples := checkpointKind(t, st, full); base != 0 || len(refs) != 2000 || samples != 2000 {
		t.Fatalf("first checkpoint: base %d, %d series, %d samples; want a full one of 2000", base, len(refs), samples)
	}
	fullSize := fileSize(t, filepath.Join(st.dir, checkpointName(full)))

	mustAppend(t, st, batch("a", 0, 2010, now-900)) // 10 new series
	mustCheckpoint(t, st)
	cps = checkpoints(t, st)
	if len(cps) != 2 || cps[0] != full {
		t.Fatalf("checkpoints %v, want the base %d and a delta", cps, full)
	}
	delta := cps[1]
	base, refs, samples := checkpointKind(t, st, delta)
	if base != full || samples != 2010 || !slices.Equal(refs, refsOf(hd, "a", 2000, 2010)) {
		t.Fatalf("delta: base %d, series refs %v, %d samples; want base %d, the 10 new series, 2010 samples", base, refs, samples, full)
	}
	// A sample entry is at most 16 bytes here (ref, time, value); a new
	// series record about 40.
	if size := fileSize(t, filepath.Join(st.dir, checkpointName(delta))); size > 2010*16+10*40 || size >= fullSize {
		t.Fatalf("delta is %d bytes (the full checkpoint %d): want the samples and 10 series records only", size, fullSize)
	}

	mustAppend(t, st, batch("a", 0, 2010, now-800))
	mustCheckpoint(t, st)
	cps = checkpoints(t, st)
	if len(cps) != 2 || cps[0] != full || cps[1] <= delta {
		t.Fatalf("checkpoints %v, want the base %d and one delta newer than %d", cps, full, delta)
	}
	if base, refs, _ := checkpointKind(t, st, cps[1]); base != full || len(refs) != 10 {
		t.Fatalf("second delta: base %d, %d series records; want %d and 10", base, len(refs), full)
	}
	if full, delta := testutil.ToFloat64(st.m.checkpoints.WithLabelValues("full")), testutil.ToFloat64(st.m.checkpoints.WithLabelValues("delta")); full != 1 || delta != 2 {
		t.Fatalf("checkpoints written: %v full, %v delta; want 1 and 2", full, delta)
	}
	mustAppend(t, st, batch("a", 0, 5, now-700)) // in a segment
	st.Close()

	_, hd2, _ := e.open()
	if hd2.NumSeries() != 2010 {
		t.Fatalf("%d series after replay, want 2010", hd2.NumSeries())
	}
	mustHold(t, hd2, "a", 0, 5, now-700)
	mustHold(t, hd2, "a", 5, 2010, now-800)
}

// TestDeltaReplayRemovesSeriesGoneSinceBase: series the base holds that
// expired or were dropped before the delta do not come back at replay, while
// a dropped series written again (a new ref, the base's labels) does. A
// delta that found most of its base gone makes the next checkpoint full,
// after a restart too.
func TestDeltaReplayRemovesSeriesGoneSinceBase(t *testing.T) {
	e := newEnv(t)
	st, hd, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("stays", 0, 4, now))
	mustAppend(t, st, batch("old", 0, 5, now))
	mustAppend(t, st, batch("moved", 0, 4, now))
	mustCheckpoint(t, st) // the base: 13 series
	full := checkpoints(t, st)[0]

	e.clock.t = e.clock.t.Add(9 * time.Minute) // retention is 10m
	later := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("stays", 0, 4, later))
	dropTenant(t, st, hd, "moved")
	mustAppend(t, st, batch("moved", 0, 1, later+1)) // back, under a new ref
	e.clock.t = e.clock.t.Add(2 * time.Minute)       // "old" expires
	mustCheckpoint(t, st)
	cps := checkpoints(t, st)
	if len(cps) != 2 || cps[0] != full {
		t.Fatalf("checkpoints %v, want the base %d and a delta", cps, full)
	}
	// The 5 "old" series expired, found so on the delta's walk: written
	// once more, then removed.
	if base, refs, samples := checkpointKind(t, st, cps[1]); base != full || len(refs) != 1 || samples != 10 {
		t.Fatalf("delta: base %d, %d series records, %d samples; want %d, 1 (moved/0) and 10", base, len(refs), samples, full)
	}
	st.Close()

	st2, hd2, _ := e.open()
	if hd2.TenantSeries("old") != 0 || hd2.TenantSeries("stays") != 4 || hd2.TenantSeries("moved") != 1 {
		t.Fatalf("after replay: old %d, stays %d, moved %d; want 0, 4, 1",
			hd2.TenantSeries("old"), hd2.TenantSeries("stays"), hd2.TenantSeries("moved"))
	}
	mustHold(t, hd2, "moved", 0, 1, later+1)

	// Most of the base is gone: the next checkpoint is full, and the old
	// base goes with the delta.
	mustAppend(t, st2, batch("stays", 0, 4, later+2))
	mustCheckpoint(t, st2)
	cps = checkpoints(t, st2)
	if len(cps) != 1 || cps[0] <= full {
		t.Fatalf("checkpoints %v, want one new full checkpoint", cps)
	}
	if base, refs, _ := checkpointKind(t, st2, cps[0]); base != 0 || len(refs) != 5 {
		t.Fatalf("checkpoint %d: base %d, %d series; want a full one of 5", cps[0], base, len(refs))
	}
}

// TestDeltaNeedsItsBase: a damaged or missing base is reported as
// corruption of the base; the delta's own series are still held, series
// of the base's readable part the delta gives no sample (dropped) stay
// gone, and the next checkpoint is a full one.
func TestDeltaNeedsItsBase(t *testing.T) {
	for _, damage := range []string{"first record", "last record", "missing"} {
		t.Run(damage, func(t *testing.T) {
			e := newEnv(t)
			st, hd, _ := e.open()
			now := e.clock.t.UnixMilli()
			mustAppend(t, st, batch("a", 0, 10, now))
			mustAppend(t, st, batch("gone", 0, checkpointChunk+100, now)) // two chunks
			mustCheckpoint(t, st)
			full := checkpoints(t, st)[0]
			dropTenant(t, st, hd, "gone")
			mustAppend(t, st, batch("a", 0, 12, now+1))
			mustCheckpoint(t, st)
			if base, _, _ := checkpointKind(t, st, checkpoints(t, st)[1]); base != full {
				t.Fatalf("second checkpoint builds on %d, want a delta on %d", base, full)
			}
			st.Close()

			path := filepath.Join(st.dir, checkpointName(full))
			switch damage {
			case "missing":
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			case "first record":
				flipBit(t, path, headerSize+12)
			case "last record": // every series record reads; the last samples do not
				offs := recordOffsets(t, path)
				flipBit(t, path, offs[len(offs)-1]+headerSize+4)
			}
			hd = head.New(head.Options{Retention: 10 * time.Minute, Now: e.clock.now}, nil)
			st2, err := Open(e.dir, hd, e.opts, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			var ce *CorruptionError
			if err := st2.Replay(); !errors.As(err, &ce) || ce.File != checkpointName(full) {
				t.Fatalf("Replay = %v, want a CorruptionError in %s", err, checkpointName(full))
			}
			from := 10 // the delta's own series records
			if damage == "last record" {
				from = 0 // and the base's, all readable
			}
			mustHold(t, hd, "a", from, 12, now+1)
			if n := hd.TenantSeries("gone"); n != 0 {
				t.Fatalf("%d dropped series back after replay", n)
			}
			mustAppend(t, st2, batch("a", 0, 12, now+2))
			mustCheckpoint(t, st2)
			cps := checkpoints(t, st2)
			if base, refs, _ := checkpointKind(t, st2, cps[len(cps)-1]); base != 0 || len(refs) != 12 {
				t.Fatalf("checkpoint after a bad base: base %d, %d series; want a full one of 12", base, len(refs))
			}
		})
	}
}

// recordOffsets returns where each record of a log file starts.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newReader(path, f, nil)
	var offs []int64
	for {
		at := r.offset
		if _, _, err := r.next(); err == io.EOF {
			return offs
		} else if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, at)
	}
}

// TestRefIndexAndSetKeepFarRefs: a ref far past the others goes to the
// map; once the dense part grows over it, it must still be found (it was
// once hidden by the dense part's empty slot).
func TestRefIndexAndSetKeepFarRefs(t *testing.T) {
	refs := []uint64{2_000_000, 1_024_000, 2_000_100, 5, 1 << 40}
	var idx refIndex
	var set refSet
	series := map[uint64]*head.Series{}
	for i, r := range refs {
		series[r] = head.New(head.Options{}, nil).Restore(r, "t", labelsOf("t", i))
		idx.set(r, series[r])
		set.add(r)
	}
	seen := map[uint64]int{}
	idx.each(func(r uint64, s *head.Series) {
		seen[r]++
		if s != series[r] {
			t.Errorf("each: ref %d maps to another series", r)
		}
	})
	for _, r := range refs {
		if idx.get(r) != series[r] || !set.has(r) || seen[r] != 1 {
			t.Errorf("ref %d: get %v, has %v, each visits it %d times", r, idx.get(r) != nil, set.has(r), seen[r])
		}
	}
	if set.has(6) || idx.get(6) != nil {
		t.Error("ref 6 was never added")
	}
}

// TestRefIndexForgetsWhileEach: each visits every ref even when fn
// forgets the refs it is given (as prune does), among them refs in the map
// that a growing slice would have taken out of the map while each ranged
// over it.
func TestRefIndexForgetsWhileEach(t *testing.T) {
	refs := []uint64{1_500_000, 1_500_001, 1_500_002, 1_500_003, 5, 1_040_000}
	for round := range 3 { // map order varies; any order shows it
		var idx refIndex
		hd := head.New(head.Options{}, nil)
		for i, r := range refs {
			idx.set(r, hd.Restore(r, "t", labelsOf("t", i)))
		}
		seen := map[uint64]int{}
		idx.each(func(r uint64, _ *head.Series) {
			seen[r]++
			idx.set(r, nil)
		})
		for _, r := range refs {
			if seen[r] != 1 || idx.get(r) != nil {
				t.Fatalf("round %d, ref %d: visited %d times, forgotten %v", round, r, seen[r], idx.get(r) == nil)
			}
		}
	}
}

// TestDeltaReplayKeepsSeriesWithRefsPastAMillion: refs grow over a data
// directory's life; a delta whose samples come in hash order, the first
// far past the others, must not prune a live series.
func TestDeltaReplayKeepsSeriesWithRefsPastAMillion(t *testing.T) {
	e := newEnv(t)
	now := e.clock.t.UnixMilli()
	dir := filepath.Join(e.dir, "wal")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	refs := []uint64{1, 1_024_000, 2_000_000, 2_000_100}
	scratch := head.New(head.Options{}, nil)
	var ss []*head.Series
	for i, r := range refs {
		ss = append(ss, scratch.Restore(r, "a", labelsOf("a", i)))
	}
	var sw samplesWriter
	rec, _ := appendSeriesRecord(nil, ss, recordSplit)
	sw.begin(rec, now)
	for _, r := range refs {
		sw.add(r, now, float64(now))
	}
	if err := os.WriteFile(filepath.Join(dir, checkpointName(1)), sw.end(), 0o640); err != nil {
		t.Fatal(err)
	}
	sw.begin(appendBase(nil, 1, 0), now+1)
	for _, r := range []uint64{2_000_000, 1_024_000, 2_000_100, 1} {
		sw.add(r, now+1, float64(now+1))
	}
	if err := os.WriteFile(filepath.Join(dir, checkpointName(2)), sw.end(), 0o640); err != nil {
		t.Fatal(err)
	}
	_, hd, _ := e.open()
	mustHold(t, hd, "a", 0, len(refs), now+1)
}

// TestCheckpointNeverBuildsOnItself: were a checkpoint's number given
// again (its clean-up failed before the number was recorded, and nothing
// was logged since), the new one must not be a delta naming itself: that
// would replace its own base.
func TestCheckpointNeverBuildsOnItself(t *testing.T) {
	e := newEnv(t)
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 10, now))
	mustCheckpoint(t, st)
	st.checkpointMu.Lock()
	st.lastCheckpoint = 0 // as if it had not been recorded
	st.checkpointMu.Unlock()
	mustCheckpoint(t, st)
	st.Close()
	_, hd, _ := e.open()
	mustHold(t, hd, "a", 0, 10, now)
}

// TestCrashBetweenDeltas: a crash after a delta was renamed into place but
// before the older delta was deleted leaves both; replay reads the newer
// one with its base, deletes the older one and keeps the base.
func TestCrashBetweenDeltas(t *testing.T) {
	e := newEnv(t)
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 10, now))
	mustCheckpoint(t, st)
	full := checkpoints(t, st)[0]
	mustAppend(t, st, batch("a", 0, 10, now+1))
	mustCheckpoint(t, st)
	older := checkpoints(t, st)[1]
	kept, err := os.ReadFile(filepath.Join(st.dir, checkpointName(older)))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, batch("a", 0, 10, now+2))
	mustCheckpoint(t, st)
	newer := checkpoints(t, st)[1]
	st.Close()
	if err := os.WriteFile(filepath.Join(st.dir, checkpointName(older)), kept, 0o640); err != nil {
		t.Fatal(err)
	}

	st2, hd, _ := e.open()
	if cps := checkpoints(t, st2); !slices.Equal(cps, []int{full, newer}) {
		t.Fatalf("checkpoints after replay %v, want [%d %d]", cps, full, newer)
	}
	mustHold(t, hd, "a", 0, 10, now+2)
}

// TestFullCheckpointOnceDeltasCarryTheBase: deltas carry the series their
// base lacks again and again; once what they carried adds up to the base,
// the next checkpoint is full, after a restart too.
func TestFullCheckpointOnceDeltasCarryTheBase(t *testing.T) {
	e := newEnv(t)
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	kinds := func(st *Storage) string {
		cps := checkpoints(t, st)
		if base, _, _ := checkpointKind(t, st, cps[len(cps)-1]); base != 0 {
			return "delta"
		}
		return "full"
	}
	var got []string
	for i, series := range []int{10, 13, 16, 16, 16} { // carried: 3, 3+6, 3+6+6
		mustAppend(t, st, batch("a", 0, series, now+int64(i)))
		mustCheckpoint(t, st)
		got = append(got, kinds(st))
		if i == 3 { // what was carried survives a restart
			st.Close()
			st, _, _ = e.open()
		}
	}
	if want := []string{"full", "delta", "delta", "delta", "full"}; !slices.Equal(got, want) {
		t.Fatalf("checkpoints written: %v, want %v", got, want)
	}
}

// TestIdleCheckpointStillRemovesExpired: with nothing logged since the last
// checkpoint none is written, but expired series still leave the head.
func TestIdleCheckpointStillRemovesExpired(t *testing.T) {
	e := newEnv(t)
	st, hd, _ := e.open()
	mustAppend(t, st, batch("a", 0, 10, e.clock.t.UnixMilli()))
	mustCheckpoint(t, st)
	before := checkpoints(t, st)
	e.clock.t = e.clock.t.Add(11 * time.Minute) // retention is 10m
	mustCheckpoint(t, st)
	if hd.NumSeries() != 0 {
		t.Fatalf("%d expired series held after a checkpoint with nothing logged", hd.NumSeries())
	}
	if after := checkpoints(t, st); !slices.Equal(after, before) {
		t.Fatalf("checkpoints %v, then %v: want none written", before, after)
	}
}

// TestFailedCheckpointStillRemovesExpired: a checkpoint that cannot be
// written still lets the expired series go (they hold their tenant's
// series limit and memory); the log keeps what replay needs.
func TestFailedCheckpointStillRemovesExpired(t *testing.T) {
	e := newEnv(t)
	st, hd, _ := e.open()
	mustAppend(t, st, batch("a", 0, 10, e.clock.t.UnixMilli()))
	mustCheckpoint(t, st)
	e.clock.t = e.clock.t.Add(11 * time.Minute) // retention is 10m
	mustAppend(t, st, batch("b", 0, 2, e.clock.t.UnixMilli()))
	next := st.log.seq // the segment the next cut closes: the checkpoint's number
	if err := os.Mkdir(filepath.Join(st.dir, checkpointName(next)+".tmp"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := st.Checkpoint(); err == nil {
		t.Fatal("checkpoint written over a directory")
	}
	if n := hd.TenantSeries("a"); n != 0 {
		t.Fatalf("%d expired series held after a failed checkpoint", n)
	}
	st.Close()
	_, hd2, _ := e.open()
	if n := hd2.TenantSeries("a"); n != 0 {
		t.Fatalf("after replay: %d series of a, want none", n)
	}
	mustHold(t, hd2, "b", 0, 2, e.clock.t.UnixMilli())
}

// TestCheckpointMovesSeriesOffSparseSymbolTables: series left on a symbol
// table whose other series have expired are moved to the current table by
// a checkpoint that finds them there, keeping their refs and samples,
// through a replay too; the tables they leave go.
func TestCheckpointMovesSeriesOffSparseSymbolTables(t *testing.T) {
	t.Cleanup(head.SwapSymbolTables(64)) // first, so that it runs last
	e := newEnv(t)
	st, hd, reg := e.open()
	now := e.clock.t.UnixMilli()
	// Each pair value is shared by two series: a symbol, so that some 120
	// series fill a table. Every 16th series is pushed on; the rest expire.
	labels := func(i int) []byte {
		return append(labelsOf("a", i), head.AppendLabel(nil, "pair", fmt.Sprint("p", i/2))...)
	}
	const n, every = 600, 16
	push := func(t0 int64, all bool) {
		b := &head.Batch{Tenant: "a"}
		for i := range n {
			if all || i%every == 0 {
				b.Series = append(b.Series, head.BatchSeries{Labels: labels(i), Samples: []head.Sample{{T: t0, V: float64(t0)}}})
			}
		}
		mustAppend(t, st, b)
	}
	lasting := func(hd *head.Head) map[string][2]int64 {
		m := map[string][2]int64{}
		for _, s := range hd.AppendAllSeries(nil) {
			ts, _ := s.Latest()
			m[string(s.Labels())] = [2]int64{int64(s.Ref()), ts}
		}
		return m
	}
	push(now, true)
	filled, _, _ := head.SymbolStats()
	if filled < 2 {
		t.Fatalf("%d symbol tables after %d new series: none filled", filled, n)
	}

	// A retention on, the others expire, and the checkpoint sees the full
	// tables made way for new ones; another retention on, the lasting
	// series are all those tables hold, and the checkpoint moves them.
	e.clock.t = e.clock.t.Add(11 * time.Minute)
	later := e.clock.t.UnixMilli()
	push(later, false)
	mustCheckpoint(t, st)
	e.clock.t = e.clock.t.Add(11 * time.Minute)
	later = e.clock.t.UnixMilli()
	push(later, false)
	before := lasting(hd)
	if moved := counterValue(t, reg, "fedgate_head_series_moved_total"); moved != 0 {
		t.Fatalf("%v series moved before a retention passed", moved)
	}
	mustCheckpoint(t, st) // moves the lasting ones
	moved := counterValue(t, reg, "fedgate_head_series_moved_total")
	after, _, _ := head.SymbolStats()
	if moved == 0 || after >= filled {
		t.Fatalf("%v series moved; %d symbol tables, %d before", moved, after, filled)
	}
	if got := lasting(hd); len(got) != n/every+1 || !maps.Equal(got, before) {
		t.Fatalf("after the move %d series, want the %d lasting ones as they were", len(got), len(before))
	}
	// The next checkpoint is written from the moved series, after new
	// samples went to them.
	push(later+1, false)
	mustCheckpoint(t, st)
	before = lasting(hd)
	for _, v := range before {
		if v[1] != later+1 {
			t.Fatalf("a moved series holds %d after a push at %d", v[1], later+1)
		}
	}
	st.Close()
	_, hd2, _ := e.open()
	if got := lasting(hd2); !maps.Equal(got, before) {
		t.Fatalf("after replay %d series, want the %d lasting ones as they were", len(got), len(before))
	}
}
