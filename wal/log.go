package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// segmentFile is what the log needs of an open segment.
type segmentFile interface {
	Write(b []byte) (int, error)
	Sync() error // fdatasync
	Truncate(size int64) error
	Close() error
}

// osFile syncs with fdatasync where there is one (sync_linux.go): the
// segment's size changes are the only metadata replay needs, and fdatasync
// writes those too. Elsewhere it is os.File.Sync (on macOS F_FULLFSYNC).
type osFile struct{ *os.File }

func createSegment(path string) (segmentFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func segmentName(n int) string { return fmt.Sprintf("%08d", n) }

// maxSegment is the highest number a segment name can carry.
const maxSegment = 99_999_999

// syncGroup is one write-and-sync: everyone whose records it carries waits
// on done and then reads err.
type syncGroup struct {
	done chan struct{}
	err  error
}

// log appends records to numbered segments with group commit: callers add
// their records to a pending buffer, one writer goroutine writes and syncs
// whatever is pending, then releases everyone it carried.
type log struct {
	dir     string
	segSize int64
	create  func(path string) (segmentFile, error)
	metrics *metrics

	mu       sync.Mutex
	cond     *sync.Cond
	pending  []byte
	group    *syncGroup
	cutReq   chan int // a cut asks here and receives the closed segment
	closing  bool
	spare    []byte
	finished chan struct{}

	// Owned by the writer goroutine.
	file   segmentFile
	seq    int   // number of the open segment, or of the last one
	size   int64 // bytes in the open segment
	broken bool  // the open segment had a write or sync error
}

func newLog(dir string, lastSegment int, segSize int64, create func(string) (segmentFile, error), m *metrics) *log {
	l := &log{dir: dir, seq: lastSegment, segSize: segSize, create: create, metrics: m,
		group: &syncGroup{done: make(chan struct{})}, finished: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	go l.run()
	return l
}

var errClosed = errors.New("write-ahead log is closed")

// commit writes recs and returns once they are synced, or the error of the
// write or sync that carried them.
func (l *log) commit(recs []byte) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return errClosed
	}
	l.pending = append(l.pending, recs...)
	g := l.group
	l.cond.Signal()
	l.mu.Unlock()
	<-g.done
	return g.err
}

// cut closes the open segment so that the next write starts a new one, and
// returns the number of the last segment written before the cut. The
// caller ensures nothing is pending (the cut barrier).
func (l *log) cut() int {
	reply := make(chan int)
	l.mu.Lock()
	l.cutReq = reply
	l.cond.Signal()
	l.mu.Unlock()
	return <-reply
}

func (l *log) close() {
	l.mu.Lock()
	l.closing = true
	l.cond.Signal()
	l.mu.Unlock()
	<-l.finished
}

// maxKeptBuffer bounds the buffers kept for reuse: steady pushes of held
// series need far less (about 12 bytes a sample); a burst of new series
// (a series record each) grows them for a moment, not for good.
const maxKeptBuffer = 1 << 20

// keepable returns buf emptied for reuse, or nil if it is too big to keep.
func keepable(buf []byte) []byte {
	if cap(buf) > maxKeptBuffer {
		return nil
	}
	return buf[:0]
}

func (l *log) run() {
	defer close(l.finished)
	l.mu.Lock()
	for {
		for len(l.pending) == 0 && l.cutReq == nil && !l.closing {
			l.cond.Wait()
		}
		if len(l.pending) > 0 {
			buf, g := l.pending, l.group
			l.pending, l.group = l.spare[:0], &syncGroup{done: make(chan struct{})}
			l.mu.Unlock()
			g.err = l.writeAndSync(buf)
			close(g.done)
			l.mu.Lock()
			l.spare = keepable(buf)
			continue
		}
		if l.cutReq != nil {
			reply := l.cutReq
			l.cutReq = nil
			l.mu.Unlock()
			reply <- l.closeSegment()
			l.mu.Lock()
			continue
		}
		// closing, nothing pending
		l.mu.Unlock()
		l.closeSegment()
		return
	}
}

// closeSegment closes the open segment, if any, and returns the number of
// the last segment written.
func (l *log) closeSegment() int {
	if l.file != nil {
		_ = l.file.Close() // its contents are synced, or were never acknowledged
		l.file = nil
	}
	return l.seq
}

func (l *log) writeAndSync(buf []byte) error {
	if l.file != nil && (l.broken || l.size > 0 && l.size+int64(len(buf)) > l.segSize) {
		l.closeSegment()
	}
	if l.file == nil {
		if err := l.openNext(); err != nil {
			l.metrics.writeErrors.Inc()
			return err
		}
	}
	start := time.Now()
	n, err := l.file.Write(buf)
	l.size += int64(n)
	if err == nil {
		err = l.file.Sync()
		l.metrics.fsyncDuration.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		// Nothing of buf is acknowledged. Cut it off if we can, and never
		// append to this file again: after a failed fsync its page cache
		// state is unknown.
		l.broken = true
		if terr := l.file.Truncate(l.size - int64(n)); terr == nil {
			l.size -= int64(n)
		}
		l.metrics.writeErrors.Inc()
		return fmt.Errorf("write segment %d: %w", l.seq, err)
	}
	l.metrics.bytesWritten.Add(float64(len(buf)))
	return nil
}

func (l *log) openNext() error {
	next := l.seq + 1
	f, err := l.create(filepath.Join(l.dir, segmentName(next)))
	// An entry that is not a segment (a directory, say; listDir ignores it)
	// may hold the name: skip it rather than fail every commit from now on.
	// Replay does not count such a skipped name as a missing segment.
	for tries := 0; errors.Is(err, fs.ErrExist) && tries < 100; tries++ {
		next++
		f, err = l.create(filepath.Join(l.dir, segmentName(next)))
	}
	if err != nil {
		return fmt.Errorf("create segment %d: %w", next, err)
	}
	if err := syncDir(l.dir); err != nil {
		_ = f.Close()
		_ = os.Remove(filepath.Join(l.dir, segmentName(next)))
		return fmt.Errorf("create segment %d: %w", next, err)
	}
	l.file, l.seq, l.size, l.broken = f, next, 0, false
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// parseSegmentName returns the number of a segment file name.
func parseSegmentName(name string) (int, bool) {
	if len(name) != 8 {
		return 0, false
	}
	n, err := strconv.Atoi(name)
	return n, err == nil && n >= 0
}
