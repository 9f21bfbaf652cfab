package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/fedgate/fedgate/wal/head"
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

type env struct {
	t     *testing.T
	dir   string
	clock *testClock
	opts  Options
}

func newEnv(t *testing.T) *env {
	return &env{t: t, dir: t.TempDir(), clock: &testClock{t: time.UnixMilli(1_700_000_000_000)}}
}

// open starts a Storage on the env's directory with a fresh head, replays,
// and returns both.
func (e *env) open() (*Storage, *head.Head, *prometheus.Registry) {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	hd := head.New(head.Options{Retention: 10 * time.Minute, Now: e.clock.now}, reg)
	st, err := Open(e.dir, hd, e.opts, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.Replay(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st, hd, reg
}

func labelsOf(tenant string, i int) []byte {
	b := head.AppendLabel(nil, "__name__", "m")
	b = head.AppendLabel(b, "cluster_id", tenant)
	return head.AppendLabel(b, "i", fmt.Sprint(i))
}

// batch has series [from, to) of tenant, each with samples at the given
// timestamps and value = timestamp.
func batch(tenant string, from, to int, ts ...int64) *head.Batch {
	b := &head.Batch{Tenant: tenant}
	for i := from; i < to; i++ {
		bs := head.BatchSeries{Labels: labelsOf(tenant, i)}
		for _, t := range ts {
			bs.Samples = append(bs.Samples, head.Sample{T: t, V: float64(t)})
		}
		b.Series = append(b.Series, bs)
	}
	return b
}

func mustAppend(t *testing.T, st *Storage, b *head.Batch) {
	t.Helper()
	if err := st.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// dropTenant drops every series of tenant, as a handoff does.
func dropTenant(t *testing.T, st *Storage, hd *head.Head, tenant string) {
	t.Helper()
	var gone []*head.Series
	var ts []int64
	for _, s := range hd.AppendAllSeries(nil) {
		if s.Tenant() == tenant {
			gone = append(gone, s)
			t, _ := s.Latest()
			ts = append(ts, t)
		}
	}
	if n, err := st.Drop(gone, ts); err != nil || n != len(gone) {
		t.Fatalf("dropped %d of %d series (%v)", n, len(gone), err)
	}
}

// held returns the newest timestamp held for series i of tenant, or -1.
func held(hd *head.Head, tenant string, i int) int64 {
	want := string(labelsOf(tenant, i))
	for _, s := range hd.AppendFamily(nil, "m") {
		if string(s.Labels()) == want && s.Committed() {
			t, v := s.Latest()
			if v != float64(t) {
				return -2
			}
			return t
		}
	}
	return -1
}

func TestReplayRestoresEveryAcknowledgedSample(t *testing.T) {
	e := newEnv(t)
	e.opts.SegmentSize = 4096 // several segments
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 100, now-3000))
	mustAppend(t, st, batch("b", 0, 50, now-2000, now-1000)) // a sender catching up
	mustAppend(t, st, batch("a", 50, 150, now-500))          // half new, half existing
	mustAppend(t, st, batch("a", 0, 10, now-4000))           // older: accepted, not held
	st.Close()

	segs, _, err := st.listDir()
	if err != nil || len(segs) < 2 {
		t.Fatalf("want several segments, got %v (%v)", segs, err)
	}
	_, hd, _ := e.open()
	for i := range 150 {
		want := now - 3000
		if i >= 50 {
			want = now - 500
		}
		if got := held(hd, "a", i); got != want {
			t.Fatalf("a/%d: held %d, want %d", i, got, want)
		}
	}
	for i := range 50 {
		if got := held(hd, "b", i); got != now-1000 {
			t.Fatalf("b/%d: held %d, want %d", i, got, now-1000)
		}
	}
	if hd.NumSeries() != 200 || hd.TenantSeries("a") != 150 {
		t.Fatalf("%d series (a: %d), want 200 (a: 150)", hd.NumSeries(), hd.TenantSeries("a"))
	}
}

func TestAppendBeforeReplayIsRefused(t *testing.T) {
	e := newEnv(t)
	hd := head.New(head.Options{Retention: time.Minute, Now: e.clock.now}, nil)
	st, err := Open(e.dir, hd, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Append(context.Background(), batch("a", 0, 1, e.clock.t.UnixMilli())); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Append before Replay = %v, want ErrNotReady", err)
	}
	if st.Ready() {
		t.Fatal("ready before replay")
	}
}

func TestCheckpointBoundsDiskAndDropsExpiredSeries(t *testing.T) {
	e := newEnv(t)
	e.opts.SegmentSize = 8192
	st, hd, _ := e.open()
	now := e.clock.t.UnixMilli()
	for round := range 20 {
		mustAppend(t, st, batch("a", 0, 100, now+int64(round)))
	}
	mustAppend(t, st, batch("old", 0, 30, now))
	segsBefore, _, _ := st.listDir()
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	segs, cps, _ := st.listDir()
	if len(cps) != 1 || len(segs) != 0 {
		t.Fatalf("after checkpoint: segments %v, checkpoints %v (before: %d segments); want none and one", segs, cps, len(segsBefore))
	}
	if got := testutil.ToFloat64(st.m.checkpointBytes); got <= 0 {
		t.Fatalf("checkpoint size metric = %v", got)
	}

	// Time passes: "old" expires, "a" keeps being written.
	e.clock.t = e.clock.t.Add(11 * time.Minute)
	later := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 100, later))
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, batch("a", 0, 10, later+1)) // after the checkpoint: in a segment
	if hd.TenantSeries("old") != 0 {
		t.Fatalf("expired series still held: %d", hd.TenantSeries("old"))
	}
	st.Close()

	_, hd2, _ := e.open()
	if hd2.TenantSeries("old") != 0 || hd2.TenantSeries("a") != 100 {
		t.Fatalf("after replay: old %d, a %d; want 0 and 100", hd2.TenantSeries("old"), hd2.TenantSeries("a"))
	}
	for i := range 100 {
		want := later
		if i < 10 {
			want = later + 1
		}
		if got := held(hd2, "a", i); got != want {
			t.Fatalf("a/%d: held %d, want %d", i, got, want)
		}
	}
}

func TestBytesPerSample(t *testing.T) {
	e := newEnv(t)
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 2000, now)) // series records once
	first := testutil.ToFloat64(st.m.bytesWritten)
	const rounds = 20
	for r := 1; r <= rounds; r++ {
		mustAppend(t, st, batch("a", 0, 2000, now+int64(r)*15000))
	}
	perSample := (testutil.ToFloat64(st.m.bytesWritten) - first) / (rounds * 2000)
	t.Logf("%.1f bytes per sample in steady state", perSample)
	if perSample > 24 {
		t.Fatalf("%.1f bytes per sample, want at most 24", perSample)
	}
}

func TestLeftoverFilesAreCleanedUp(t *testing.T) {
	e := newEnv(t)
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 10, now))
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, batch("a", 0, 10, now+1))
	st.Close()
	// A crash between writing a checkpoint and deleting what it covers
	// leaves an old segment and a temp file behind.
	dir := filepath.Join(e.dir, "wal")
	for _, name := range []string{segmentName(1), "checkpoint.00000009.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st2, hd, _ := e.open()
	if got := held(hd, "a", 3); got != now+1 {
		t.Fatalf("held %d, want %d", got, now+1)
	}
	for _, name := range []string{segmentName(1), "checkpoint.00000009.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was not removed", name)
		}
	}
	if n := testutil.ToFloat64(st2.m.corruptions); n != 0 {
		t.Errorf("leftovers counted as %v corruptions", n)
	}
}

func TestLostFirstSegmentsAreReported(t *testing.T) {
	e := newEnv(t)
	e.opts.SegmentSize = 1024
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	for r := range 10 {
		mustAppend(t, st, batch("a", 0, 20, now+int64(r)))
	}
	st.Close()
	if err := os.Remove(filepath.Join(e.dir, "wal", segmentName(1))); err != nil {
		t.Fatal(err)
	}
	hd := head.New(head.Options{Retention: 10 * time.Minute, Now: e.clock.now}, nil)
	reg := prometheus.NewRegistry()
	st2, err := Open(e.dir, hd, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	var ce *CorruptionError
	if err := st2.Replay(); !errors.As(err, &ce) || ce.File != segmentName(1) {
		t.Fatalf("Replay = %v, want a CorruptionError naming segment 1", err)
	}
	// The series records were in the lost segment: the later samples cannot
	// be attached, and that loss is counted, not silent.
	if !st2.Ready() || testutil.ToFloat64(st2.m.unknownRefs) == 0 {
		t.Fatalf("ready %v, unknown-series samples %v", st2.Ready(), testutil.ToFloat64(st2.m.unknownRefs))
	}
	mustAppend(t, st2, batch("a", 0, 20, now+10))
	if held(hd, "a", 0) != now+10 {
		t.Fatal("appends after a damaged replay are not held")
	}
}

// TestDamagedCheckpointFallsBackOnCoveredSegments: when the newest
// checkpoint is damaged, the segments it covered (kept by a crash right
// after it was renamed into place) are replayed instead, and kept.
func TestDamagedCheckpointFallsBackOnCoveredSegments(t *testing.T) {
	e := newEnv(t)
	e.opts.SegmentSize = 2048
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	for r := range 8 {
		mustAppend(t, st, batch("a", 0, 30, now+int64(r)))
	}
	dir := filepath.Join(e.dir, "wal")
	saved := map[string][]byte{}
	segs, _, _ := st.listDir()
	for _, n := range segs {
		b, err := os.ReadFile(filepath.Join(dir, segmentName(n)))
		if err != nil {
			t.Fatal(err)
		}
		saved[segmentName(n)] = b
	}
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, batch("a", 0, 5, now+100))
	st.Close()

	// The crash: the covered segments are back; then the checkpoint rots.
	for name, b := range saved {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, cps, _ := st.listDir()
	cpPath := filepath.Join(dir, checkpointName(cps[0]))
	b, err := os.ReadFile(cpPath)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0x40 // inside the first record
	if err := os.WriteFile(cpPath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	hd := head.New(head.Options{Retention: 10 * time.Minute, Now: e.clock.now}, nil)
	st2, err := Open(e.dir, hd, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	var ce *CorruptionError
	if err := st2.Replay(); !errors.As(err, &ce) || ce.File != checkpointName(cps[0]) {
		t.Fatalf("Replay = %v, want a CorruptionError in the checkpoint", err)
	}
	for i := range 30 {
		want := now + 7
		if i < 5 {
			want = now + 100
		}
		if got := held(hd, "a", i); got != want {
			t.Fatalf("a/%d: held %d, want %d", i, got, want)
		}
	}
	for name := range saved {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("covered segment %s was deleted although the checkpoint is damaged: %v", name, err)
		}
	}
}

// TestDroppedSeriesStayDropped: series handed off to another instance are
// tombstoned, so a restart does not bring them back; their labels can be
// written again afterwards.
func TestDroppedSeriesStayDropped(t *testing.T) {
	e := newEnv(t)
	st, hd, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("moved", 0, 5, now))
	mustAppend(t, st, batch("stays", 0, 5, now))
	dropTenant(t, st, hd, "moved")
	mustAppend(t, st, batch("moved", 0, 1, now+1)) // it came back later
	st.Close()

	_, hd2, _ := e.open()
	if hd2.TenantSeries("moved") != 1 || hd2.TenantSeries("stays") != 5 {
		t.Fatalf("after replay: moved %d (want 1), stays %d (want 5)", hd2.TenantSeries("moved"), hd2.TenantSeries("stays"))
	}
	if got := held(hd2, "moved", 0); got != now+1 {
		t.Fatalf("the series written again after its drop holds %d, want %d", got, now+1)
	}
}

// TestReplaySyncsWhatItRead: every open syncs the directories holding the
// log's; replay syncs the log's directory before it removes anything, and
// every segment it read before it is ready, since a crash may have left
// their last writes in the page cache only.
func TestReplaySyncsWhatItRead(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var synced []string
	e.opts.syncPath = func(path string) error {
		mu.Lock()
		synced = append(synced, path)
		mu.Unlock()
		return syncDir(path)
	}
	st, _, _ := e.open()
	walDir := filepath.Join(e.dir, "wal")
	if want := []string{filepath.Dir(e.dir), e.dir, walDir}; !slices.Equal(synced, want) {
		t.Fatalf("a new log synced %q, want %q", synced, want)
	}
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 5, now))
	st.Close()
	segs, _, err := st.listDir()
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments %v (%v)", segs, err)
	}

	synced = nil
	st2, _, _ := e.open()
	want := []string{filepath.Dir(e.dir), e.dir, walDir}
	for _, seg := range segs {
		want = append(want, filepath.Join(walDir, segmentName(seg)))
	}
	if !slices.Equal(synced, want) {
		t.Fatalf("replay synced %q, want %q", synced, want)
	}
	if !st2.Ready() {
		t.Fatal("not ready after replay")
	}
}

// TestLargeBatchesAreSplitIntoRecords: a batch whose series or samples
// would make records larger than a reader takes is written in several,
// by Append and by a checkpoint alike, and all of it replays.
func TestLargeBatchesAreSplitIntoRecords(t *testing.T) {
	e := newEnv(t)
	e.opts.maxRecord, e.opts.recordSplit = 64<<10, 8<<10
	st, _, reg := e.open()
	now := e.clock.t.UnixMilli()
	const n = 3000 // series records of about 100 KB, samples of about 90 KB
	mustAppend(t, st, batch("a", 0, n, now-2, now-1))
	check := func(when string, reg *prometheus.Registry, hd *head.Head) {
		t.Helper()
		if c := counterValue(t, reg, "fedgate_wal_corruptions_total"); c != 0 {
			t.Fatalf("%s: %v corruptions", when, c)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			if got := held(hd, "a", i); got != now-1 {
				t.Fatalf("%s: series %d holds %d, want %d", when, i, got, now-1)
			}
		}
		if hd.NumSeries() != n {
			t.Fatalf("%s: %d series held, want %d", when, hd.NumSeries(), n)
		}
	}
	if w := counterValue(t, reg, "fedgate_wal_records_written_total"); w < 4 {
		t.Fatalf("%v records written for %d new series, want them split", w, n)
	}
	st.Close()
	st2, hd2, reg2 := e.open()
	check("after replaying the segment", reg2, hd2)
	if err := st2.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	st2.Close()
	_, hd3, reg3 := e.open()
	check("after replaying the checkpoint", reg3, hd3)
}

// TestDropKeepsASeriesPushedSince: a series given a newer sample after
// the handoff read the one it forwarded is not dropped, nor tombstoned:
// that push was answered, and the next handoff forwards it.
func TestDropKeepsASeriesPushedSince(t *testing.T) {
	e := newEnv(t)
	st, hd, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("moved", 0, 3, now))
	ss := hd.AppendAllSeries(nil)
	ts := make([]int64, len(ss))
	for i, s := range ss {
		ts[i], _ = s.Latest()
	}
	mustAppend(t, st, batch("moved", 1, 2, now+1)) // pushed while the handoff forwarded
	if n, err := st.Drop(ss, ts); err != nil || n != 2 {
		t.Fatalf("dropped %d series (%v), want the 2 not pushed since", n, err)
	}
	check := func(hd *head.Head, when string) {
		t.Helper()
		if got := [3]int64{held(hd, "moved", 0), held(hd, "moved", 1), held(hd, "moved", 2)}; got != [3]int64{-1, now + 1, -1} {
			t.Fatalf("%s: series hold %v, want only series 1, at %d", when, got, now+1)
		}
	}
	check(hd, "after the drop")
	st.Close()
	_, hd2, _ := e.open()
	check(hd2, "after replay")
}

// TestLabelsAreReleasedBeforeTheSync pins head.Batch.ReleaseLabels: Append
// calls it once, before it returns, and reads no label after it — labels
// scribbled over in the callback change nothing held or logged.
func TestLabelsAreReleasedBeforeTheSync(t *testing.T) {
	e := newEnv(t)
	st, hd, _ := e.open()
	now := e.clock.t.UnixMilli()
	for round, from := range []int{0, 5} { // new series, then half held ones
		b := batch("a", from, from+10, now-int64(1000-round))
		calls := 0
		b.ReleaseLabels = func() {
			calls++
			for i := range b.Series {
				for k := range b.Series[i].Labels {
					b.Series[i].Labels[k] = 'X'
				}
			}
		}
		mustAppend(t, st, b)
		if calls != 1 {
			t.Fatalf("round %d: ReleaseLabels called %d times, want 1", round, calls)
		}
	}
	check := func(hd *head.Head) {
		t.Helper()
		for i := range 15 {
			want := now - 1000
			if i >= 5 {
				want = now - 999
			}
			if got := held(hd, "a", i); got != want {
				t.Fatalf("a/%d: held %d, want %d", i, got, want)
			}
		}
		if hd.NumSeries() != 15 {
			t.Fatalf("%d series held, want 15", hd.NumSeries())
		}
	}
	check(hd)
	st.Close()
	_, hd, _ = e.open()
	check(hd)
}

// TestRunWritesPacedCheckpoints: the checkpoints Run writes (paced, in
// parts of the head) cover every series and sample, and a Run stopped
// mid-way leaves a log that replays whole.
func TestRunWritesPacedCheckpoints(t *testing.T) {
	e := newEnv(t)
	e.opts.CheckpointInterval = time.Millisecond
	st, _, _ := e.open()
	now := e.clock.t.UnixMilli()
	mustAppend(t, st, batch("a", 0, 3*checkpointChunk+10, now-1000))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { st.Run(ctx); close(done) }()
	waitCheckpoints := func(n uint64) {
		for histogramCount(t, st.m.checkpointDuration) < n {
			runtime.Gosched()
		}
	}
	waitCheckpoints(1)
	mustAppend(t, st, batch("a", 5, 15, now-500))
	waitCheckpoints(2) // one more, covering the second batch
	mustAppend(t, st, batch("a", 5, 15, now-400))
	cancel()
	<-done
	segs, cps, err := st.listDir()
	if err != nil || len(cps) == 0 {
		t.Fatalf("no checkpoint left (%v)", err)
	}
	for _, seg := range segs {
		if seg <= cps[len(cps)-1] {
			t.Fatalf("segment %d is covered by checkpoint %d but was not removed", seg, cps[len(cps)-1])
		}
	}
	st.Close()
	_, hd, _ := e.open()
	for i := range 3*checkpointChunk + 10 {
		want := now - 1000
		if i >= 5 && i < 15 {
			want = now - 400
		}
		if got := held(hd, "a", i); got != want {
			t.Fatalf("a/%d: held %d, want %d", i, got, want)
		}
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
