package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/wal/head"
)

// faultyDisk hands out segment files (real ones, wrapped) whose writes and
// syncs fail while an error is set, and records what each file was given.
type faultyDisk struct {
	mu        sync.Mutex
	createErr error // returned instead of creating a segment
	writeErr  error // returned by Write
	partial   bool  // a failing Write first writes half its bytes
	syncErr   error // returned by Sync
	syncDelay time.Duration
	files     []*faultyFile
	syncs     int
}

type faultyFile struct {
	segmentFile
	disk    *faultyDisk
	name    string
	written int64 // bytes written, less those truncated away
	synced  int64 // bytes covered by the last successful Sync
	failed  bool  // a Write or Sync failed
	late    int   // Writes after a failure: the log must send none
}

func (d *faultyDisk) create(path string) (segmentFile, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.createErr != nil {
		return nil, d.createErr
	}
	f, err := createSegment(path)
	if err != nil {
		return nil, err
	}
	ff := &faultyFile{segmentFile: f, disk: d, name: filepath.Base(path)}
	d.files = append(d.files, ff)
	return ff, nil
}

func (d *faultyDisk) set(fn func(d *faultyDisk)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

func (d *faultyDisk) fileNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, f := range d.files {
		names = append(names, f.name)
	}
	return names
}

func (f *faultyFile) Write(b []byte) (int, error) {
	f.disk.mu.Lock()
	defer f.disk.mu.Unlock()
	if f.failed {
		f.late++
	}
	if err := f.disk.writeErr; err != nil {
		f.failed = true
		if !f.disk.partial {
			return 0, err
		}
		n, _ := f.segmentFile.Write(b[:len(b)/2])
		f.written += int64(n)
		return n, err
	}
	n, err := f.segmentFile.Write(b)
	f.written += int64(n)
	return n, err
}

func (f *faultyFile) Sync() error {
	f.disk.mu.Lock()
	covered, delay, injected := f.written, f.disk.syncDelay, f.disk.syncErr
	f.disk.mu.Unlock()
	// Only widens the window in which concurrent Appends queue up; no test
	// waits on it.
	time.Sleep(delay)
	err := injected
	if err == nil {
		err = f.segmentFile.Sync()
	}
	f.disk.mu.Lock()
	defer f.disk.mu.Unlock()
	f.disk.syncs++
	if err != nil {
		f.failed = true
		return err
	}
	f.synced = max(f.synced, covered)
	return nil
}

func (f *faultyFile) Truncate(size int64) error {
	f.disk.mu.Lock()
	defer f.disk.mu.Unlock()
	err := f.segmentFile.Truncate(size)
	if err == nil {
		f.written = size
	}
	return err
}

// syncedBytes returns how much of the first segment a finished Sync covers.
func (d *faultyDisk) syncedBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.files[0].synced
}

func oneSample(tenant string, t int64, labels ...[]byte) *head.Batch {
	b := &head.Batch{Tenant: tenant}
	for _, l := range labels {
		b.Series = append(b.Series, head.BatchSeries{Labels: l, Samples: []head.Sample{{T: t, V: float64(t)}}})
	}
	return b
}

func sampleAt(t int64) located { return located{s: head.Sample{T: t, V: float64(t)}} }

// TestAppendFailureAbandonsSegment fails one write or fsync and checks that
// the Append reports it, the head does not show the batch, the segment
// gets no more bytes (not even the failed ones), and that a series first
// sent in the failed batch is logged again by the next one, so that replay
// holds every acknowledged sample.
func TestAppendFailureAbandonsSegment(t *testing.T) {
	cases := map[string]struct {
		arm  func(d *faultyDisk)
		want error
	}{
		"write fails":           {func(d *faultyDisk) { d.writeErr = syscall.ENOSPC }, syscall.ENOSPC},
		"write fails half done": {func(d *faultyDisk) { d.writeErr, d.partial = syscall.ENOSPC, true }, syscall.ENOSPC},
		"fsync fails":           {func(d *faultyDisk) { d.syncErr = syscall.EIO }, syscall.EIO},
	}
	old, fresh := seriesLabels("old", "k", "v"), seriesLabels("fresh", "k", "v")
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, dir, disk := context.Background(), t.TempDir(), &faultyDisk{}
			st, hd, reg, err := openReplayed(t, dir, Options{createSegment: disk.create})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Append(ctx, oneSample("a", fixtureT0+1, old)); err != nil {
				t.Fatal(err)
			}
			first := filepath.Join(dir, "wal", segmentName(1))
			acked := fileSize(t, first)

			disk.set(c.arm)
			err = st.Append(ctx, oneSample("a", fixtureT0+2, old, fresh))
			if !errors.Is(err, c.want) {
				t.Fatalf("Append = %v, want an error wrapping %v", err, c.want)
			}
			diffHeld(t, heldSamples(hd), map[string]located{string(old): sampleAt(fixtureT0 + 1)})
			if got := fileSize(t, first); got != acked {
				t.Errorf("failed segment is %d bytes, want the %d acknowledged ones", got, acked)
			}
			if got := counterValue(t, reg, "fedgate_wal_write_errors_total"); got != 1 {
				t.Errorf("fedgate_wal_write_errors_total = %v, want 1", got)
			}

			disk.set(func(d *faultyDisk) { d.writeErr, d.partial, d.syncErr = nil, false, nil })
			if err := st.Append(ctx, oneSample("a", fixtureT0+3, fresh)); err != nil {
				t.Fatalf("Append after the fault cleared: %v", err)
			}
			if got, want := disk.fileNames(), []string{segmentName(1), segmentName(2)}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("segments created = %v, want %v: the failed one abandoned", got, want)
			}
			if disk.files[0].late != 0 || fileSize(t, first) != acked {
				t.Errorf("abandoned segment got %d more writes and is %d bytes, want none and %d", disk.files[0].late, fileSize(t, first), acked)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			_, hd2, reg2, err := openReplayed(t, dir, Options{})
			if err != nil {
				t.Fatalf("replay: %v", err)
			}
			diffHeld(t, heldSamples(hd2), map[string]located{string(old): sampleAt(fixtureT0 + 1), string(fresh): sampleAt(fixtureT0 + 3)})
			if got := counterValue(t, reg2, "fedgate_wal_replay_unknown_series_samples_total"); got != 0 {
				t.Errorf("replay found %v samples without a series record", got)
			}
		})
	}
}

// TestDiskFullRecovers keeps the disk full for several Appends (writes fail,
// then creating a segment fails too), then frees it: Appends succeed again
// without a restart, and replay holds exactly what was acknowledged.
func TestDiskFullRecovers(t *testing.T) {
	ctx, dir, disk := context.Background(), t.TempDir(), &faultyDisk{}
	st, hd, reg, err := openReplayed(t, dir, Options{createSegment: disk.create})
	if err != nil {
		t.Fatal(err)
	}
	base := seriesLabels("base", "k", "v")
	if err := st.Append(ctx, oneSample("a", fixtureT0, base)); err != nil {
		t.Fatal(err)
	}
	want := map[string]located{string(base): sampleAt(fixtureT0)}

	disk.set(func(d *faultyDisk) { d.writeErr = syscall.ENOSPC })
	var refused [][]byte
	for i := range 4 {
		if i == 3 {
			disk.set(func(d *faultyDisk) { d.createErr = syscall.ENOSPC })
		}
		l := seriesLabels("refused", "i", fmt.Sprint(i))
		refused = append(refused, l)
		if err := st.Append(ctx, oneSample("a", fixtureT0+1+int64(i), base, l)); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append %d on a full disk = %v, want ENOSPC", i, err)
		}
		diffHeld(t, heldSamples(hd), want)
	}

	disk.set(func(d *faultyDisk) { d.writeErr, d.createErr = nil, nil })
	if err := st.Append(ctx, oneSample("a", fixtureT0+10, append(refused, base)...)); err != nil {
		t.Fatalf("Append after space returned: %v", err)
	}
	for _, l := range append(refused, base) {
		want[string(l)] = sampleAt(fixtureT0 + 10)
	}
	diffHeld(t, heldSamples(hd), want)
	// Segment 1 failed and was abandoned, 2 and 3 failed at once, creating 4
	// failed, then 4 took the batch.
	if got := fmt.Sprint(disk.fileNames()); got != fmt.Sprint([]string{"00000001", "00000002", "00000003", "00000004"}) {
		t.Errorf("segments created = %v", got)
	}
	for _, f := range disk.files[:3] {
		if f.late != 0 {
			t.Errorf("abandoned segment %s got %d more writes", f.name, f.late)
		}
	}
	// Three failed writes and one failed segment create.
	if got := counterValue(t, reg, "fedgate_wal_write_errors_total"); got != 4 {
		t.Errorf("fedgate_wal_write_errors_total = %v, want 4", got)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	_, hd2, reg2, err := openReplayed(t, dir, Options{})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	diffHeld(t, heldSamples(hd2), want)
	if got := counterValue(t, reg2, "fedgate_wal_corruptions_total"); got != 0 {
		t.Errorf("replay counted %v corruptions, want 0", got)
	}
}

// TestConcurrentAppendsShareSyncs runs many Appends at once against slow
// fsyncs: they must share syncs, and each must return only after a sync
// that covered its records.
func TestConcurrentAppendsShareSyncs(t *testing.T) {
	const n = 64
	ctx, dir := context.Background(), t.TempDir()
	disk := &faultyDisk{syncDelay: 5 * time.Millisecond}
	st, _, _, err := openReplayed(t, dir, Options{createSegment: disk.create})
	if err != nil {
		t.Fatal(err)
	}
	labels := make([][]byte, n)
	syncedAtReturn := make([]int64, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		labels[i] = seriesLabels("concurrent", "writer", fmt.Sprintf("%03d", i))
		wg.Go(func() {
			<-start
			if err := st.Append(ctx, oneSample("a", fixtureT0, labels[i])); err != nil {
				t.Error(err)
			}
			syncedAtReturn[i] = disk.syncedBytes()
		})
	}
	close(start)
	wg.Wait()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	if len(disk.fileNames()) != 1 {
		t.Fatalf("segments created = %v, want one", disk.fileNames())
	}
	if disk.syncs >= n {
		t.Errorf("%d concurrent Appends made %d syncs, want fewer: group commit shares them", n, disk.syncs)
	}
	ends := appendEnds(t, filepath.Join(dir, "wal", segmentName(1)))
	for i, l := range labels {
		end, ok := ends[string(l)]
		if !ok {
			t.Fatalf("series %s not in the segment", head.Labels(l))
		}
		if end > syncedAtReturn[i] {
			t.Errorf("Append of %s returned when syncs covered %d bytes; its records end at %d",
				head.Labels(l), syncedAtReturn[i], end)
		}
	}
	t.Logf("%d Appends, %d syncs", n, disk.syncs)
}

// appendEnds maps the labels of each series record in a segment to where
// the samples record after it, the rest of that Append, ends.
func appendEnds(t *testing.T, path string) map[string]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newReader(filepath.Base(path), f, nil)
	ends := map[string]int64{}
	var pending []string
	for {
		typ, payload, err := r.next()
		if err == io.EOF {
			return ends
		}
		if err != nil {
			t.Fatal(err)
		}
		if typ == recSamples {
			for _, l := range pending {
				ends[l] = r.offset
			}
			pending = pending[:0]
			continue
		}
		if err := decodeSeries(payload, func(_ uint64, _, l []byte) { pending = append(pending, string(l)) }); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Helpers shared with corruption_test.go.

// openReplayed opens and replays the Storage under dir into a new head
// whose metrics, and the Storage's, are on the returned registry.
func openReplayed(t *testing.T, dir string, opts Options) (*Storage, *head.Head, *prometheus.Registry, error) {
	t.Helper()
	reg := prometheus.NewRegistry()
	hd := head.New(head.Options{Retention: 24 * time.Hour, Now: func() time.Time { return time.UnixMilli(replayNowMs) }}, reg)
	st, err := Open(dir, hd, opts, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Replay()
	t.Cleanup(func() { _ = st.Close() })
	return st, hd, reg, err
}

func seriesLabels(name string, kv ...string) []byte {
	b := head.AppendLabel(nil, "__name__", name)
	for i := 0; i < len(kv); i += 2 {
		b = head.AppendLabel(b, kv[i], kv[i+1])
	}
	return b
}

// heldSamples returns the newest sample of every series that has one.
func heldSamples(hd *head.Head) map[string]head.Sample {
	held := map[string]head.Sample{}
	for _, s := range hd.AppendAllSeries(nil) {
		if s.Committed() {
			ts, v := s.Latest()
			held[string(s.Labels())] = head.Sample{T: ts, V: v}
		}
	}
	return held
}

func diffHeld(t *testing.T, got map[string]head.Sample, want map[string]located) {
	t.Helper()
	var diffs []string
	for l, w := range want {
		if g, ok := got[l]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %s (t=%d from %s:%d)", head.Labels(l), w.s.T, w.end.file, w.end.off))
		} else if g != w.s {
			diffs = append(diffs, fmt.Sprintf("%s holds %+v, want %+v", head.Labels(l), g, w.s))
		}
	}
	for l, g := range got {
		if _, ok := want[l]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s holding %+v", head.Labels(l), g))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("held series differ from what was acknowledged, %d differences (up to 10 shown):\n%s",
			len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
	}
}

// counterValue reads a counter from the registry.
func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s in the registry", name)
	return 0
}
