package turns

import (
	"context"
	"runtime"
	"sync"
)

// Turns is a counting semaphore whose bound is GOMAXPROCS as it is when
// asked. The zero value is ready to use.
type Turns struct {
	mu      sync.Mutex
	held    int
	waiters []chan struct{} // FIFO; a waiter's channel is closed when it is granted a turn
}

// Acquire waits for a turn until ctx ends. It returns ctx's error if ctx
// ended first, and then holds no turn.
func (t *Turns) Acquire(ctx context.Context) error {
	t.mu.Lock()
	if len(t.waiters) == 0 && t.held < runtime.GOMAXPROCS(0) {
		t.held++
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	t.waiters = append(t.waiters, ch)
	// GOMAXPROCS may have grown since turns were last given back: hand out
	// what it now allows, in order (this waiter's turn among them, if it
	// comes to that), rather than wait for the next Release.
	t.grant()
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, w := range t.waiters {
		if w == ch {
			t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
			return ctx.Err()
		}
	}
	// Granted as ctx ended: give the turn to the next in line.
	t.held--
	t.grant()
	return ctx.Err()
}

// Release gives a turn back. It panics if no turn is held: a Release
// without its Acquire would raise the bound for good.
func (t *Turns) Release() {
	t.mu.Lock()
	if t.held <= 0 {
		t.mu.Unlock()
		panic("turns: Release without Acquire")
	}
	t.held--
	t.grant()
	t.mu.Unlock()
}

// grant hands free turns to waiters, first come first served. The caller
// holds mu.
func (t *Turns) grant() {
	for n := runtime.GOMAXPROCS(0); len(t.waiters) > 0 && t.held < n; {
		t.held++
		close(t.waiters[0])
		t.waiters[0] = nil
		t.waiters = t.waiters[1:]
	}
}

// Held returns the number of turns held; for tests and metrics.
func (t *Turns) Held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.held
}
