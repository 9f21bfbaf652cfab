package wal

import (
	"cmp"
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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/wal/head"
)

// Options configure the log.
type Options struct {
	// SegmentSize is the size past which a new segment is started.
	SegmentSize int64
	// CheckpointInterval is how often the head is checkpointed, expired
	// series are removed and covered segments deleted.
	CheckpointInterval time.Duration

	// createSegment opens a new segment file; tests inject failures here.
	createSegment func(path string) (segmentFile, error)
	// syncPath syncs a file or directory that replay found; tests watch
	// it here.
	syncPath func(path string) error
	// maxRecord and recordSplit, lowered by tests (0: the constants).
	maxRecord, recordSplit int
}

func (o *Options) defaults() {
	if o.SegmentSize <= 0 {
		o.SegmentSize = 128 << 20
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.createSegment == nil {
		o.createSegment = createSegment
	}
	if o.syncPath == nil {
		o.syncPath = syncDir // os.File.Sync: a directory or a file alike
	}
	o.maxRecord = cmp.Or(o.maxRecord, maxRecord)
	o.recordSplit = cmp.Or(o.recordSplit, recordSplit)
}

// ErrNotReady is returned by Append before replay has finished and after
// Close.
var ErrNotReady = errors.New("write-ahead log not ready")

// Storage is the durable store behind the write path: the log plus the
// head it feeds. See the package documentation.
type Storage struct {
	dir    string
	head   *head.Head
	opts   Options
	logger *slog.Logger
	m      *metrics

	log   *log
	ready atomic.Bool
	// cutMu is the cut barrier: Appends hold it shared from Prepare to
	// Commit, a cut or GC holds it exclusively.
	cutMu sync.RWMutex
	pool  sync.Pool // of *appendState

	checkpointMu   sync.Mutex
	lastCheckpoint int // the segment the newest checkpoint covers, or 0
	// base is the full checkpoint the next delta builds on (0: none, the
	// next checkpoint is full), baseSeries the series it holds, carried
	// the series records the deltas since have carried; fullNext asks for
	// a full one anyway (see the package documentation).
	base       int
	baseSeries int
	carried    int
	fullNext   bool
}

type appendState struct {
	ss    []*head.Series
	fresh []*head.Series
	buf   []byte
	sw    samplesWriter
}

// Open prepares the log under dir/wal for hd. It reads nothing yet: call
// Replay, which makes the Storage ready.
func Open(dir string, hd *head.Head, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Storage, error) {
	opts.defaults()
	s := &Storage{dir: filepath.Join(dir, "wal"), head: hd, opts: opts, logger: logger, m: newMetrics(reg)}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("open wal: %w", err)
	}
	// The log's name in dir, and dir's in its parent, must last as its
	// files do: synced at every open, since a crash may have come between
	// a previous open's MkdirAll and its syncs.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := s.opts.syncPath(d); err != nil {
			return nil, fmt.Errorf("open wal: %w", err)
		}
	}
	s.pool.New = func() any { return new(appendState) }
	return s, nil
}

// Ready reports whether replay is done and Appends are taken.
func (s *Storage) Ready() bool { return s.ready.Load() }

// Append logs every sample of b, waits for the fsync that covers them, then
// applies b to the head. An error means nothing of b is acknowledged.
func (s *Storage) Append(_ context.Context, b *head.Batch) error {
	if !s.ready.Load() {
		return ErrNotReady
	}
	st := s.pool.Get().(*appendState)
	defer func() {
		st.buf = keepable(st.buf)
		st.sw.b = nil // shares st.buf's array, or a grown one
		s.pool.Put(st)
	}()

	s.cutMu.RLock()
	defer s.cutMu.RUnlock()
	var limitErr error // series refused by the tenant's limit; the rest is stored
	st.ss, limitErr = s.head.Prepare(b, st.ss[:0])
	b.LabelsRead() // series records are written from the held series
	st.fresh = st.fresh[:0]
	first, found := int64(0), false // the samples record's base timestamp
	for i, x := range st.ss {
		if x == nil {
			continue
		}
		if !x.Logged() {
			st.fresh = append(st.fresh, x)
		}
		if !found {
			first, found = b.Series[i].Samples[0].T, true
		}
	}
	buf := st.buf[:0]
	records := 1
	if len(st.fresh) > 0 {
		var n int
		buf, n = appendSeriesRecord(buf, st.fresh, s.opts.recordSplit)
		records += n
	}
	st.sw.split, st.sw.splits = s.opts.recordSplit, 0
	st.sw.begin(buf, first)
	for i, x := range st.ss {
		if x == nil {
			continue
		}
		for _, smp := range b.Series[i].Samples {
			st.sw.add(x.Ref(), smp.T, smp.V)
		}
	}
	if st.sw.count == 0 {
		return limitErr // nothing holdable: refused, or every sample past retention
	}
	st.buf = st.sw.end()
	records += st.sw.splits
	if err := s.log.commit(st.buf); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	s.m.recordsWritten.Add(float64(records))
	for _, x := range st.fresh {
		x.SetLogged()
	}
	s.head.Commit(b, st.ss)
	clear(st.fresh)
	clear(st.ss)
	return limitErr
}

// Replay rebuilds the head from the newest checkpoint and the segments
// after it, repairs a torn tail, and makes the Storage ready. Corruption
// that is not a torn tail is logged, counted and returned as the first
// *CorruptionError found, after replay has gone on past it: the caller may
// serve anyway, as fedgate does.
func (s *Storage) Replay() error {
	start := time.Now()
	segs, cps, err := s.listDir()
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	// A crash between a checkpoint's rename and the sync of the directory
	// leaves a rename that may not last: synced now, before anything is
	// removed on its account.
	if err := s.opts.syncPath(s.dir); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	var firstErr error
	report := func(err error) {
		s.m.corruptions.Inc()
		s.logger.Error("wal corruption; replay goes on with the next file", "err", err)
		if firstErr == nil {
			firstErr = err
		}
	}

	rs := &replayState{refs: &refIndex{}, buf: make([]byte, 0, 1<<20), read: make(map[int]bool), report: report}
	refs, buf := rs.refs, &rs.buf
	cp, cpBad := 0, false
	if len(cps) > 0 {
		cp = cps[len(cps)-1]
		res, err := s.replayCheckpoint(cp, rs, true)
		if err != nil {
			report(err)
			cpBad = true
		} else if res.baseGood {
			s.base, s.baseSeries, s.carried = res.base, res.baseSeries, res.carried
		}
		// Older checkpoints are left by a crash right after a newer one was
		// renamed into place. With a good newest checkpoint they are
		// redundant, but for the base it builds on; with a bad one they,
		// and the segments it covers, are what is left: replay them and
		// keep them for now.
		for _, old := range cps[:len(cps)-1] {
			switch {
			case !cpBad && old != res.base:
				s.remove(checkpointName(old))
			case cpBad && !rs.read[old]:
				if _, err := s.replayCheckpoint(old, rs, false); err != nil {
					report(err)
				}
			}
		}
	}

	last := cp
	expect := cp + 1
	for i, seg := range segs {
		if seg <= cp {
			if !cpBad {
				s.remove(segmentName(seg)) // covered by the checkpoint; a crash kept it
			} else if _, err := s.replayFile(segmentName(seg), refs, buf, nil); err != nil {
				report(err)
			}
			continue
		}
		if seg != expect && !s.skipped(expect, seg) { // a fresh directory starts at segment 1
			report(&CorruptionError{File: segmentName(expect), Err: fmt.Errorf("segments %s to %s are missing", segmentName(expect), segmentName(seg-1))})
		}
		expect, last = seg+1, seg
		off, err := s.replayFile(segmentName(seg), refs, buf, nil)
		if err == nil {
			continue
		}
		var damaged *CorruptionError
		if i == len(segs)-1 && errors.As(err, &damaged) { // a torn or damaged tail
			if terr := s.truncate(segmentName(seg), off); terr != nil {
				report(fmt.Errorf("repair %s: %w", segmentName(seg), terr))
			}
			continue
		}
		report(err) // damage in an older file, or an I/O error: never cut
	}
	// A crash between a write and its fdatasync leaves bytes in the page
	// cache, which were read above as any others. They must be on disk
	// before anything is acknowledged on their account: a series record
	// among them, say, spares later pushes of the series their own.
	for _, seg := range segs {
		if seg <= cp && !cpBad {
			continue // removed above
		}
		if err := s.opts.syncPath(filepath.Join(s.dir, segmentName(seg))); err != nil {
			return fmt.Errorf("replay: sync %s: %w", segmentName(seg), err)
		}
	}

	// A checkpoint holds the series found expired on its walk (see
	// checkpoint): they go now. Then what the next checkpoint should be
	// is decided as the running process would have.
	s.head.GC()
	if s.base != 0 {
		s.fullNext = s.needFull(s.carried, s.baseSeries-s.heldInBase())
	}
	s.lastCheckpoint = cp
	s.log = newLog(s.dir, last, s.opts.SegmentSize, s.opts.createSegment, s.m)
	s.updateSegments()
	took := time.Since(start)
	s.m.replayDuration.Set(took.Seconds())
	s.logger.Info("wal replayed", "checkpoint", cp, "segments", len(segs), "series", s.head.NumSeries(), "duration", took.Round(time.Millisecond))
	s.ready.Store(true)
	return firstErr
}

// truncate cuts a torn tail off the last segment at off and logs what went.
func (s *Storage) truncate(name string, off int64) error {
	path := filepath.Join(s.dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	s.logger.Warn("wal: truncating torn tail of the last segment", "segment", name, "offset", off, "bytes_dropped", fi.Size()-off)
	s.m.corruptions.Inc()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(off); err != nil {
		return err
	}
	return f.Sync()
}

// refIndex maps the refs met during replay to head series. Refs are dense
// (1, 2, 3, ...), so a slice serves them; a ref far past the others goes
// to a map rather than growing the slice, until the slice grows over it.
type refIndex struct {
	dense  []*head.Series
	sparse map[uint64]*head.Series
}

func (x *refIndex) set(ref uint64, s *head.Series) {
	if s == nil { // forgetting never grows the slice: see each
		if ref < uint64(len(x.dense)) {
			x.dense[ref] = nil
		} else {
			delete(x.sparse, ref)
		}
		return
	}
	if ref >= uint64(len(x.dense)) && ref < 2*uint64(len(x.dense))+1<<20 {
		n := max(2*len(x.dense), int(ref)+1)
		x.dense = slices.Grow(x.dense, n-len(x.dense))[:n]
		// The slice now covers refs the map held: they move, or the
		// slice's empty slots would hide them.
		for r, v := range x.sparse {
			if r < uint64(n) {
				x.dense[r] = v
				delete(x.sparse, r)
			}
		}
	}
	if ref < uint64(len(x.dense)) {
		x.dense[ref] = s
		return
	}
	if x.sparse == nil {
		x.sparse = make(map[uint64]*head.Series)
	}
	x.sparse[ref] = s
}

// each calls fn for every ref set; fn may forget refs (set them to nil),
// which moves no other: a set that grew the slice would move refs from the
// map into it while each ranged over the map, and skip them.
func (x *refIndex) each(fn func(ref uint64, s *head.Series)) {
	for ref, s := range x.dense {
		if s != nil {
			fn(uint64(ref), s)
		}
	}
	for ref, s := range x.sparse {
		if s != nil {
			fn(ref, s)
		}
	}
}

func (x *refIndex) get(ref uint64) *head.Series {
	if ref < uint64(len(x.dense)) {
		return x.dense[ref]
	}
	return x.sparse[ref]
}

// replayFile applies one file's records to the head. It returns the offset
// after the last good record and, if it stopped early, why. cp is nil for
// a segment.
func (s *Storage) replayFile(name string, refs *refIndex, buf *[]byte, cp *checkpointReplay) (int64, error) {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return 0, fmt.Errorf("replay %s: %w", name, err) // not damage: never cut
	}
	defer f.Close()
	r := newReader(name, f, *buf)
	r.max = s.opts.maxRecord
	defer func() { *buf = r.buf }()
	unknown := 0
	for {
		at := r.offset
		typ, payload, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return at, err
		}
		switch typ {
		case recBase:
			if cp == nil || cp.onBase == nil || at != 0 {
				err = errors.New("a base record that does not start a delta checkpoint")
				break
			}
			var b int
			if b, cp.carried, err = decodeBase(payload); err == nil && b >= cp.number {
				err = fmt.Errorf("base checkpoint %d is not older than the delta", b)
			}
			if err == nil {
				cp.onBase(b)
			}
		case recSeries:
			err = decodeSeries(payload, func(ref uint64, tenant, labels []byte) {
				x := s.head.Restore(ref, string(tenant), labels)
				refs.set(ref, x)
				if cp != nil {
					cp.series++
					if cp.mark != 0 {
						x.SetBase(cp.mark)
					}
				}
			})
		case recTombstones:
			err = decodeTombstones(payload, func(ref uint64) {
				if x := refs.get(ref); x != nil {
					s.head.Remove([]*head.Series{x})
					refs.set(ref, nil)
				}
			})
		case recSamples:
			err = decodeSamples(payload, func(ref uint64, t int64, v float64) {
				if x := refs.get(ref); x != nil {
					s.head.RestoreSample(x, t, v)
					if cp != nil && cp.sampled != nil {
						cp.sampled.add(x.Ref())
					}
				} else {
					unknown++
				}
			})
		}
		if err != nil {
			r.offset = at
			return at, &CorruptionError{File: name, Offset: at, Err: err}
		}
	}
	if unknown > 0 {
		s.m.unknownRefs.Add(float64(unknown))
		s.logger.Warn("wal: samples of series whose series record was lost", "file", name, "samples", unknown)
	}
	return r.offset, nil
}

// replayState is what a replay carries from file to file.
type replayState struct {
	refs   *refIndex
	buf    []byte
	read   map[int]bool // checkpoints replayed
	report func(error)
}

// checkpointReplay is how replayFile treats a checkpoint.
type checkpointReplay struct {
	number  int
	mark    uint32      // SetBase of every series restored (a full checkpoint read as a base)
	onBase  func(b int) // reads the base of a delta; nil: a base record is corruption
	sampled *refSet     // collects the refs of the series given a sample, if set
	series  int         // series entries read
	carried int         // from a delta's base record
}

// checkpointResult is what replayCheckpoint found.
type checkpointResult struct {
	base       int  // the full checkpoint a delta builds on, or the full one read
	baseSeries int  // the series it holds
	baseGood   bool // base read whole: the next delta may build on it
	carried    int  // series records the deltas on the base have carried
}

// replayCheckpoint applies checkpoint n and, for a delta, its base first.
// With prune, the series read from the base that the delta gives no sample
// (gone since the base was written) are removed again, if both files read
// whole. A damaged base is reported through rs.report; the error returned
// is n's own.
func (s *Storage) replayCheckpoint(n int, rs *replayState, prune bool) (checkpointResult, error) {
	rs.read[n] = true
	var res checkpointResult
	cp := &checkpointReplay{number: n, mark: uint32(n)}
	cp.onBase = func(b int) {
		res.base = b
		cp.mark = 0 // the delta's own series are not in a base
		cp.sampled = &refSet{}
		if rs.read[b] {
			return // read already, as the base of a newer delta
		}
		rs.read[b] = true
		base := &checkpointReplay{number: b, mark: uint32(b)}
		if _, err := os.Lstat(filepath.Join(s.dir, checkpointName(b))); errors.Is(err, os.ErrNotExist) {
			rs.report(&CorruptionError{File: checkpointName(b), Err: fmt.Errorf("missing: it is the base of %s", checkpointName(n))})
			return
		}
		if _, err := s.replayFile(checkpointName(b), rs.refs, &rs.buf, base); err != nil {
			rs.report(err)
			return
		}
		res.baseSeries, res.baseGood = base.series, true
	}
	if _, err := s.replayFile(checkpointName(n), rs.refs, &rs.buf, cp); err != nil {
		return res, err
	}
	if cp.sampled == nil { // a full checkpoint: the base of the next delta
		res.base, res.baseSeries, res.baseGood = n, cp.series, true
		return res, nil
	}
	// The delta gives a sample to every series live when it was written,
	// so it alone decides what of the base is gone: a damaged base's
	// readable part is pruned too.
	if prune {
		res.carried = cp.carried + cp.series
		s.prune(rs.refs, uint32(res.base), cp.sampled)
	}
	return res, nil
}

// prune removes the series read from base b that the delta after it gave
// no sample, and forgets their refs.
func (s *Storage) prune(refs *refIndex, b uint32, sampled *refSet) {
	var gone []*head.Series
	refs.each(func(ref uint64, x *head.Series) {
		if x.Base() == b && !sampled.has(x.Ref()) {
			if x.Ref() == ref {
				gone = append(gone, x)
			}
			refs.set(ref, nil)
		}
	})
	s.head.Remove(gone)
}

// refSet is a set of refs: a bitmap over the dense ones, a map for those
// far past them, as refIndex.
type refSet struct {
	dense  []uint64
	sparse map[uint64]struct{}
}

func (x *refSet) add(ref uint64) {
	w := ref / 64
	if w >= uint64(len(x.dense)) && w < 2*uint64(len(x.dense))+1<<14 {
		n := max(2*len(x.dense), int(w)+1)
		x.dense = slices.Grow(x.dense, n-len(x.dense))[:n]
		for r := range x.sparse {
			if r/64 < uint64(n) {
				x.dense[r/64] |= 1 << (r % 64)
				delete(x.sparse, r)
			}
		}
	}
	if w < uint64(len(x.dense)) {
		x.dense[w] |= 1 << (ref % 64)
		return
	}
	if x.sparse == nil {
		x.sparse = make(map[uint64]struct{})
	}
	x.sparse[ref] = struct{}{}
}

func (x *refSet) has(ref uint64) bool {
	if w := ref / 64; w < uint64(len(x.dense)) {
		return x.dense[w]&(1<<(ref%64)) != 0
	}
	_, ok := x.sparse[ref]
	return ok
}

// skipped reports whether every segment name from..to-1 is held by an
// entry that is not a segment, which the log skips when it creates
// segments: a gap it left on purpose, not lost segments.
func (s *Storage) skipped(from, to int) bool {
	for n := from; n < to; n++ {
		if _, err := os.Lstat(filepath.Join(s.dir, segmentName(n))); err != nil {
			return false
		}
	}
	return true
}

func checkpointName(n int) string { return "checkpoint." + segmentName(n) }

// listDir returns the segment and checkpoint numbers in dir, sorted, and
// removes unfinished checkpoints. Other files are left alone and logged.
func (s *Storage) listDir() (segs, cps []int, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			s.remove(name)
		case strings.HasPrefix(name, "checkpoint."):
			if n, ok := parseSegmentName(strings.TrimPrefix(name, "checkpoint.")); ok && e.Type().IsRegular() {
				cps = append(cps, n)
				continue
			}
			s.logger.Warn("wal: ignoring a file that is not a checkpoint", "file", name)
		default:
			if n, ok := parseSegmentName(name); ok && e.Type().IsRegular() {
				segs = append(segs, n)
				continue
			}
			s.logger.Warn("wal: ignoring a file that is not a segment", "file", name)
		}
	}
	slices.Sort(segs)
	slices.Sort(cps)
	return segs, cps, nil
}

func (s *Storage) remove(name string) {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("wal: cannot remove file", "file", name, "err", err)
	}
}

// truncateStep is how much of a file removePaced frees at a time.
const truncateStep = 8 << 20

// removePaced removes a file the way Run's checkpoints are written: when
// ctx is set, the file is first truncated a step at a time, paced. Freeing
// the blocks of a 128 MB segment in one unlink held up the log's fsyncs,
// which wait for the same filesystem journal, for some 60 ms (ext4).
func (s *Storage) removePaced(ctx context.Context, name string) {
	if ctx != nil {
		if f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_WRONLY, 0); err == nil {
			work := time.Now()
			if fi, err := f.Stat(); err == nil {
				for size := fi.Size() - truncateStep; size > 0; size -= truncateStep {
					if f.Truncate(size) != nil {
						break
					}
					pace(ctx, &work)
				}
			}
			f.Close()
		}
	}
	s.remove(name)
}

func (s *Storage) updateSegments() {
	segs, _, err := s.listDir()
	if err == nil {
		s.m.segments.Set(float64(len(segs)))
	}
}

// Checkpoint cuts the log, removes expired series from the head, writes the
// head to a checkpoint covering every segment before the cut, and deletes
// those segments. It writes at full speed; Run paces the checkpoints it
// writes (see checkpointDuty).
func (s *Storage) Checkpoint() error { return s.checkpoint(nil) }

// checkpointDuty paces the checkpoints Run writes: the writer works at most
// one part in checkpointDuty of the time, sleeping the rest. At a million
// series a checkpoint is seconds of CPU; unpaced, on one CPU, the pushes
// and the log's writer goroutine waited behind it a scheduler slice at a
// time, and the p99 of pushes at half the maximum rate rose from ~11 ms to
// 0.3-1 s while it ran (bench/README.md).
const checkpointDuty = 4

// checkpoint is Checkpoint, paced while ctx (if not nil) is not done.
func (s *Storage) checkpoint(ctx context.Context) error {
	if !s.ready.Load() {
		return ErrNotReady
	}
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	start := time.Now()

	s.cutMu.Lock()
	n := s.log.cut()
	s.cutMu.Unlock()
	if n <= s.lastCheckpoint {
		s.gc(ctx) // nothing logged since the last checkpoint: none to write
		return nil
	}
	if ctx != nil {
		settle(ctx, min(checkpointSettle, s.opts.CheckpointInterval/4))
	}
	base := s.base
	if s.fullNext || base >= n {
		base = 0
	}
	size, cs, err := s.writeCheckpoint(n, base, ctx)
	if err != nil {
		s.m.checkpointErrors.Inc()
		// Expired series go all the same (they hold their tenant's
		// series limit and memory): their records are still in the
		// segments and checkpoints kept.
		s.gc(ctx)
		return fmt.Errorf("checkpoint %d: %w", n, err)
	}
	// Durable: from here on n is the newest checkpoint, even if what
	// follows fails (a checkpoint of the same number would replace it).
	s.lastCheckpoint = n
	// The walk found the expired series; they are in the checkpoint (one
	// may have been written again since the walk, its sample logged without
	// a series record) and go now, those still expired.
	gcStart := time.Now()
	for c := range slices.Chunk(cs.expired, checkpointChunk) {
		s.head.RemoveExpired(c, &s.cutMu)
	}
	clear(cs.expired)
	// So are the series left on sparse symbol tables moved, so that the
	// tables can go (see head's "Label storage"), a chunk at a time and
	// paced like the walk: pushes wait while a chunk moves.
	work := time.Now()
	for c := range slices.Chunk(cs.moving, head.MoveChunk) {
		s.head.MoveSeries(c, &s.cutMu)
		if ctx != nil {
			pace(ctx, &work)
		}
	}
	clear(cs.moving)
	head.RetireSymbolTables()
	gcTook := time.Since(gcStart)
	kind := "full"
	if base == 0 {
		s.base, s.baseSeries, s.carried, s.fullNext = n, cs.series, 0, false
	} else {
		kind = "delta"
		s.carried += cs.records
		s.fullNext = s.needFull(s.carried, s.baseSeries-cs.inBase)
	}
	cleanup := time.Now()
	segs, cps, err := s.listDir()
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", n, err)
	}
	for _, seg := range segs {
		if seg <= n {
			s.removePaced(ctx, segmentName(seg))
		}
	}
	for _, cp := range cps {
		if cp < n && cp != base {
			s.removePaced(ctx, checkpointName(cp))
		}
	}
	s.updateSegments()
	cleaned := time.Since(cleanup)
	s.m.checkpointDuration.Observe(time.Since(start).Seconds())
	s.m.checkpointBytes.Set(float64(size))
	s.m.checkpoints.WithLabelValues(kind).Inc()
	s.logger.Debug("wal checkpoint written", "covers", segmentName(n), "kind", kind, "base", base, "series", cs.series, "bytes", size,
		"duration", time.Since(start), "write", cs.write, "sync", cs.sync, "gc", gcTook, "cleanup", cleaned)
	return nil
}

// gc removes the expired series without a checkpoint: GC may not remove a
// series between an Append's Prepare and its Commit, so it holds the
// barrier while it removes, one chunk at a time; its walk is paced while
// ctx (if not nil) is not done.
func (s *Storage) gc(ctx context.Context) {
	work := time.Now()
	for c := range head.GCChunks {
		s.head.GCChunk(c, &s.cutMu)
		if ctx != nil {
			pace(ctx, &work)
		}
	}
}

// checkpointSettle is how long a paced checkpoint waits after the cut
// before it walks the head (at most a quarter of the interval). Measured,
// not understood: at a million series on one CPU (ext4), starting the walk
// and the writes the moment the log moved to a new segment made every push
// slow (over 50 ms) for 0.3-0.5 s, in each of four runs; with this pause,
// in none of three (bench/README.md).
const checkpointSettle = time.Second

// settle waits d, or until ctx is done.
func settle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkpointSyncEvery is how much of a checkpoint is written between
// syncs. Synced only at the end, a 300 MB checkpoint's fsync (0.1-0.15 s)
// held the log's fdatasyncs up behind it, and some 50 pushes with them.
const checkpointSyncEvery = 16 << 20

// maxMoves bounds the series one checkpoint moves off sparse symbol
// tables (a table stays sparse, so the next one goes on).
const maxMoves = 64 << 10

// checkpointChunk is how many series go into one pair of records (a
// millisecond or two of work).
const checkpointChunk = 1024

// pace sleeps checkpointDuty-1 times the work done since *since, or until
// ctx is done, and restarts *since.
func pace(ctx context.Context, since *time.Time) {
	if ctx.Err() != nil {
		return // stopping: finish at full speed
	}
	t := time.NewTimer(time.Since(*since) * (checkpointDuty - 1))
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	*since = time.Now()
}

// heldInBase returns how many held series the base holds.
func (s *Storage) heldInBase() int {
	n := 0
	var part []*head.Series
	for p := range head.SeriesParts {
		part = s.head.AppendSeriesPart(part[:0], p)
		for _, x := range part {
			if x.Base() == uint32(s.base) {
				n++
			}
		}
	}
	return n
}

// needFull reports whether the next checkpoint should be full, given the
// series records the deltas since the base have carried and how many of
// the base's series are gone: once the deltas have written as many labels
// as the base holds, a full checkpoint costs no more than they already
// did (so labels are never written more than twice over), and a base
// mostly gone makes replay read mostly dead series.
func (s *Storage) needFull(carried, gone int) bool {
	return carried >= max(s.baseSeries, 1) || 2*gone > s.baseSeries
}

// checkpointStats counts what a checkpoint held.
type checkpointStats struct {
	series  int // live series: a sample each
	records int // series records written: those the base lacks
	inBase  int // series, not expired, whose record the base holds
	// how long writing the records and the fsync after took
	write, sync time.Duration
	expired     []*head.Series // found expired on the walk
	moving      []*head.Series // found on sparse symbol tables on the walk
}

// writeCheckpoint writes checkpoint n: a full one if base is 0, else a
// delta building on checkpoint.base.
func (s *Storage) writeCheckpoint(n, base int, ctx context.Context) (int64, checkpointStats, error) {
	var cs checkpointStats
	started := time.Now()
	minT := s.head.MinTime()
	final := filepath.Join(s.dir, checkpointName(n))
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return 0, cs, err
	}
	defer os.Remove(tmp) // a no-op once renamed
	var (
		size     int64
		unsynced int // bytes written since the last sync
		buf      []byte
		sw       samplesWriter
		chunk    = make([]*head.Series, 0, checkpointChunk)
		fresh    = make([]*head.Series, 0, checkpointChunk) // of chunk, those the base lacks
		ts       = make([]int64, 0, checkpointChunk)
		vs       = make([]float64, 0, checkpointChunk)
	)
	if base != 0 {
		buf = appendBase(buf, base, s.carried)
	}
	flush := func() error {
		if len(chunk) == 0 && len(buf) == 0 {
			return nil
		}
		if len(fresh) > 0 {
			buf, _ = appendSeriesRecord(buf, fresh, s.opts.recordSplit)
		}
		if len(chunk) == 0 { // a delta of an empty head: its base record
			w, err := f.Write(buf)
			size += int64(w)
			buf = buf[:0]
			return err
		}
		sw.split = s.opts.recordSplit
		sw.begin(buf, ts[0])
		for i, x := range chunk {
			sw.add(x.Ref(), ts[i], vs[i])
		}
		buf = sw.end()
		w, err := f.Write(buf)
		size += int64(w)
		buf, chunk, fresh, ts, vs = buf[:0], chunk[:0], fresh[:0], ts[:0], vs[:0]
		if unsynced += w; err == nil && unsynced >= checkpointSyncEvery {
			unsynced, err = 0, f.Sync()
		}
		return err
	}
	// A series found on the walk may be removed (its tenant handed off)
	// before its record is written: its labels stay readable until the
	// last record is.
	pin, pinned := head.PinSymbols(), true
	defer func() {
		if pinned {
			pin.Release()
		}
	}()
	// A part of the head at a time: a snapshot of a million series at once
	// was a 16 MB allocation burst, enough to start a GC cycle whose mark
	// (0.4 s at 1M series on one CPU) stalled pushes.
	var part []*head.Series
	work := time.Now()
	sparse := s.head.Sparse()
	for p := range head.SeriesParts {
		part = s.head.AppendSeriesPart(part[:0], p)
		for _, x := range part {
			t, v := x.Latest()
			expired := t < minT
			switch {
			case expired:
				cs.expired = append(cs.expired, x) // not visible: GC removes it after
			case sparse.Holds(x) && len(cs.moving) < maxMoves:
				cs.moving = append(cs.moving, x)
			}
			if !x.Logged() || !x.Committed() {
				continue // never made it to the log: nothing acknowledged
			}
			cs.series++
			switch {
			case base == 0:
				fresh = append(fresh, x)
				cs.records++
				// Marked before the file is durable: were it lost, no
				// later checkpoint has its number, so no delta builds on
				// a mark that is wrong.
				x.SetBase(uint32(n))
			case x.Base() == uint32(base):
				if !expired {
					cs.inBase++ // an expired one is about to be gone
				}
			default:
				fresh = append(fresh, x)
				cs.records++
			}
			chunk, ts, vs = append(chunk, x), append(ts, t), append(vs, v)
			if len(chunk) == checkpointChunk {
				if err := flush(); err != nil {
					f.Close()
					return 0, cs, err
				}
				if ctx != nil {
					pace(ctx, &work)
				}
			}
		}
	}
	clear(part)
	if err := flush(); err != nil {
		f.Close()
		return 0, cs, err
	}
	pin.Release()
	pinned = false
	synced := time.Now()
	cs.write = synced.Sub(started)
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, cs, err
	}
	if err := f.Close(); err != nil {
		return 0, cs, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return 0, cs, err
	}
	err = syncDir(s.dir)
	cs.sync = time.Since(synced)
	return size, cs, err
}

// Run checkpoints every CheckpointInterval until ctx is done.
func (s *Storage) Run(ctx context.Context) {
	tick := time.NewTicker(s.opts.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := s.checkpoint(ctx); err != nil {
				s.logger.Error("wal checkpoint failed; segments are kept", "err", err)
			}
		}
	}
}

// Drop removes the series of ss whose newest sample is still at ts[i]
// (their tenant moved to another instance, which now has that sample) and
// returns how many it removed. It works under the barrier, so that no
// Append is between its Prepare and Commit: an Append that decided this
// instance owned the tenant before the ring changed may have committed a
// newer sample, and been answered, since the handoff read ts; such a
// series stays, for a later handoff to forward. A tombstones record is
// synced first, so that replay removes them again; if it cannot be written
// they all stay, and the caller retries.
func (s *Storage) Drop(ss []*head.Series, ts []int64) (int, error) {
	if len(ss) == 0 {
		return 0, nil
	}
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	gone := s.head.AppendUnchanged(nil, ss, ts)
	if len(gone) == 0 {
		return 0, nil
	}
	if err := s.log.commit(appendTombstones(nil, gone)); err != nil {
		return 0, fmt.Errorf("wal: %w", err)
	}
	s.m.recordsWritten.Inc()
	s.head.Remove(gone)
	return len(gone), nil
}

// Close stops taking Appends and closes the open segment. Appends still
// running finish first.
func (s *Storage) Close() error {
	s.ready.Store(false)
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	if s.log != nil {
		s.log.close()
	}
	return nil
}
