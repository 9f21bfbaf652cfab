package ring

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/golang/snappy"

	"github.com/fedgate/fedgate/gateway/turns"
	"github.com/fedgate/fedgate/wal/head"
)

// gatedAppender blocks each Append until proceed is closed, reading the
// batch's labels (LabelsRead) before it blocks if early is set, else after.
type gatedAppender struct {
	early   bool
	calls   atomic.Int32
	proceed chan struct{}
}

func (a *gatedAppender) Append(_ context.Context, b *head.Batch) error {
	a.calls.Add(1)
	if a.early {
		b.LabelsRead()
	}
	<-a.proceed
	b.LabelsRead()
	return nil
}

// TestPeerBatchesDecodeInTurns: a forwarded batch holds a decoding turn
// from its decode until the storage has read its labels, so that no more
// batches than turns are decoded and unread at once; once read, the next
// one goes ahead while the first waits for its fsync.
func TestPeerBatchesDecodeInTurns(t *testing.T) {
	for _, early := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			ap := &gatedAppender{early: early, proceed: make(chan struct{})}
			h := newSelfPeerHandler(t, ap)
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one turn
			codes := make(chan int, 2)
			for range 2 {
				go func() { codes <- postBatch(h, testBatch("cluster-a", 3)) }()
			}
			synctest.Wait()
			want := int32(1) // the other waits for the only turn
			if early {
				want = 2 // the first gave its turn back with its labels read
			}
			if got := ap.calls.Load(); got != want {
				t.Fatalf("labels read early %v: %d batches in the storage, want %d", early, got, want)
			}
			close(ap.proceed)
			for range 2 {
				if code := <-codes; code != http.StatusNoContent {
					t.Fatalf("status %d", code)
				}
			}
			if n := h.decoding.Held(); n != 0 {
				t.Fatalf("%d turns still held", n)
			}
		})
	}
}

// TestPeerHandlerSharesTurns: with ShareTurns, a forwarded batch waits for
// a turn held elsewhere (by a push on the write path) and goes ahead once
// it is given back.
func TestPeerHandlerSharesTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ap := &gatedAppender{early: true, proceed: make(chan struct{})}
		close(ap.proceed)
		h := newSelfPeerHandler(t, ap)
		shared := new(turns.Turns)
		h.ShareTurns(shared)
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one turn
		if err := shared.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		code := make(chan int, 1)
		go func() { code <- postBatch(h, testBatch("cluster-a", 3)) }()
		synctest.Wait()
		if got := ap.calls.Load(); got != 0 {
			t.Fatalf("%d batches in the storage while the only shared turn is held elsewhere, want 0", got)
		}
		shared.Release()
		if c := <-code; c != http.StatusNoContent {
			t.Fatalf("status %d", c)
		}
		if got := ap.calls.Load(); got != 1 {
			t.Fatalf("%d batches in the storage, want 1", got)
		}
		if n := shared.Held(); n != 0 {
			t.Fatalf("%d shared turns still held", n)
		}
	})
}

// funcAppender calls its function for each batch.
type funcAppender func(*head.Batch) error

func (f funcAppender) Append(_ context.Context, b *head.Batch) error { return f(b) }

// newSelfPeerHandler returns a peer handler of a one-member ring that
// owns every tenant, storing into local.
func newSelfPeerHandler(t *testing.T, local Appender) *PeerHandler {
	t.Helper()
	r, err := New([]Member{{Name: "self", URL: "http://self"}}, "self")
	if err != nil {
		t.Fatal(err)
	}
	cur := &Current{}
	cur.Store(r)
	return NewPeerHandler(cur, local, []byte("s3cret"), 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

func postBatch(h http.Handler, b *head.Batch) int {
	req := httptest.NewRequest(http.MethodPost, PeerPath, bytes.NewReader(snappy.Encode(nil, AppendBatch(nil, b))))
	req.Header.Set("Authorization", "Bearer s3cret")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// TestPeerBatchTenantOutlivesItsLabels: the decoded batch goes back to its
// pool with the labels (LabelsRead), and the storage still reads the
// tenant after that: it must not point into the buffer, which the next
// batch decodes into.
func TestPeerBatchTenantOutlivesItsLabels(t *testing.T) {
	var h *PeerHandler
	calls := 0
	h = newSelfPeerHandler(t, funcAppender(func(b *head.Batch) error {
		calls++
		b.LabelsRead()
		for i, bs := range b.Series {
			if bs.Labels != nil {
				t.Errorf("series %d still points into the released buffer", i)
			}
			if len(bs.Samples) == 0 {
				t.Errorf("series %d lost its samples with its labels", i)
			}
		}
		if calls == 1 {
			// The next batch, of another tenant of the same length,
			// decoded while this one waits for its fsync.
			if code := postBatch(h, testBatch("cluster-b", 3)); code != http.StatusNoContent {
				t.Errorf("second batch: status %d", code)
			}
			if b.Tenant != "cluster-a" {
				t.Errorf("the first batch's tenant reads %q after its labels were released, want cluster-a", b.Tenant)
			}
		}
		return nil
	}))
	if code := postBatch(h, testBatch("cluster-a", 3)); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if calls != 2 {
		t.Fatalf("%d batches stored, want 2", calls)
	}
	if n := h.decoding.Held(); n != 0 {
		t.Fatalf("%d turns held", n)
	}
}

// TestPeerPanicGivesTheTurnBack: a panic in the storage under a decoding
// turn (net/http recovers it) must not keep the turn, or a few would stop
// every forwarded batch.
func TestPeerPanicGivesTheTurnBack(t *testing.T) {
	h := newSelfPeerHandler(t, funcAppender(func(*head.Batch) error { panic("storage failed") }))
	for range runtime.GOMAXPROCS(0) + 1 {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			postBatch(h, testBatch("cluster-a", 3))
		}()
		if n := h.decoding.Held(); n != 0 {
			t.Fatalf("%d decoding turns held after a panic", n)
		}
	}
}
