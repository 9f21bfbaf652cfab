package wal

import (
	"errors"
	"io"
	"log/slog"
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
	for i := range 2010 {
		want := now - 800
		if i < 5 {
			want = now - 700
		}
		if got := held(hd2, "a", i); got != want {
			t.Fatalf("a/%d: held %d, want %d", i, got, want)
		}
	}
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
	var gone []*head.Series
	for _, s := range hd.AppendAllSeries(nil) {
		if s.Tenant() == "moved" {
			gone = append(gone, s)
		}
	}
	if err := st.Drop(gone); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, batch("moved", 0, 1, later+1)) // back, under a new ref
	e.clock.t = e.clock.t.Add(2 * time.Minute)       // "old" expires
	mustCheckpoint(t, st)
	cps := checkpoints(t, st)
	if len(cps) != 2 || cps[0] != full {
		t.Fatalf("checkpoints %v, want the base %d and a delta", cps, full)
	}
	if base, refs, samples := checkpointKind(t, st, cps[1]); base != full || len(refs) != 1 || samples != 5 {
		t.Fatalf("delta: base %d, %d series records, %d samples; want %d, 1 (moved/0) and 5", base, len(refs), samples, full)
	}
	st.Close()

	st2, hd2, _ := e.open()
	if hd2.TenantSeries("old") != 0 || hd2.TenantSeries("stays") != 4 || hd2.TenantSeries("moved") != 1 {
		t.Fatalf("after replay: old %d, stays %d, moved %d; want 0, 4, 1",
			hd2.TenantSeries("old"), hd2.TenantSeries("stays"), hd2.TenantSeries("moved"))
	}
	if got := held(hd2, "moved", 0); got != later+1 {
		t.Fatalf("moved/0 holds %d, want %d", got, later+1)
	}

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
// corruption of the base; the delta's own series are still held, and the
// next checkpoint is a full one.
func TestDeltaNeedsItsBase(t *testing.T) {
	for _, damage := range []string{"flipped bit", "missing"} {
		t.Run(damage, func(t *testing.T) {
			e := newEnv(t)
			st, _, _ := e.open()
			now := e.clock.t.UnixMilli()
			mustAppend(t, st, batch("a", 0, 10, now))
			mustCheckpoint(t, st)
			full := checkpoints(t, st)[0]
			mustAppend(t, st, batch("a", 10, 12, now+1))
			mustCheckpoint(t, st)
			st.Close()

			path := filepath.Join(st.dir, checkpointName(full))
			if damage == "missing" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				flipBit(t, path, headerSize+12)
			}
			hd := head.New(head.Options{Retention: 10 * time.Minute, Now: e.clock.now}, nil)
			st2, err := Open(e.dir, hd, e.opts, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			var ce *CorruptionError
			if err := st2.Replay(); !errors.As(err, &ce) || ce.File != checkpointName(full) {
				t.Fatalf("Replay = %v, want a CorruptionError in %s", err, checkpointName(full))
			}
			for i := 10; i < 12; i++ {
				if got := held(hd, "a", i); got != now+1 {
					t.Fatalf("a/%d (in the delta's own series records): held %d, want %d", i, got, now+1)
				}
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
	for i := range 10 {
		if got := held(hd, "a", i); got != now+2 {
			t.Fatalf("a/%d: held %d, want %d", i, got, now+2)
		}
	}
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
