package turns

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// withProcs runs f with GOMAXPROCS at n.
func withProcs(t *testing.T, n int) {
	t.Helper()
	old := runtime.GOMAXPROCS(n)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

// acquirer starts a goroutine acquiring a turn of tu with ctx, and returns
// a flag set once it has one and its error channel.
func acquirer(tu *Turns, ctx context.Context) (*atomic.Bool, chan error) {
	got, errc := new(atomic.Bool), make(chan error, 1)
	go func() {
		err := tu.Acquire(ctx)
		got.Store(err == nil)
		errc <- err
	}()
	return got, errc
}

func TestBoundAndOrder(t *testing.T) {
	withProcs(t, 2)
	synctest.Test(t, func(t *testing.T) {
		var tu Turns
		ctx := context.Background()
		for range 2 {
			if err := tu.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var got [3]*atomic.Bool
		for i := range got {
			got[i], _ = acquirer(&tu, ctx)
			synctest.Wait() // each waits before the next asks: a known order
		}
		for i, g := range got {
			if g.Load() {
				t.Fatalf("waiter %d has a turn while 2 of 2 are held", i)
			}
		}
		for i := range got {
			tu.Release()
			synctest.Wait()
			for k, g := range got {
				if g.Load() != (k <= i) {
					t.Fatalf("after %d releases, waiter %d has a turn: %v", i+1, k, g.Load())
				}
			}
		}
		if tu.Held() != 2 {
			t.Fatalf("%d held", tu.Held())
		}
	})
}

func TestCancelledWaiterTakesNoTurn(t *testing.T) {
	withProcs(t, 1)
	synctest.Test(t, func(t *testing.T) {
		var tu Turns
		if err := tu.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		_, errc := acquirer(&tu, ctx)
		next, _ := acquirer(&tu, context.Background())
		synctest.Wait()
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("a cancelled waiter got a turn")
		}
		tu.Release()
		synctest.Wait()
		if !next.Load() || tu.Held() != 1 {
			t.Fatalf("the next waiter has a turn: %v; %d held", next.Load(), tu.Held())
		}
	})
}

// TestGrantedAsCancelled: a waiter whose turn comes as its context ends
// either keeps the turn (Acquire returns nil) or passes it to the next in
// line; never both, never neither. Rounds alternate the order: a release
// then a cancel wakes the waiter with its turn; a cancel then a release
// (before the woken waiter runs) grants the turn to a waiter that is
// leaving, which must pass it on.
func TestGrantedAsCancelled(t *testing.T) {
	withProcs(t, 1)
	synctest.Test(t, func(t *testing.T) {
		var tu Turns
		kept, passed := 0, 0
		for round := range 200 {
			if err := tu.Acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			first, errc := acquirer(&tu, ctx)
			synctest.Wait()
			next, nextErr := acquirer(&tu, context.Background())
			synctest.Wait()
			if round%2 == 0 {
				tu.Release() // the turn goes to first...
				cancel()     // ...as its context ends
			} else {
				cancel()
				tu.Release()
			}
			err := <-errc
			synctest.Wait()
			if tu.Held() != 1 || (err == nil) == next.Load() || first.Load() != (err == nil) {
				t.Fatalf("first: err %v; next has a turn: %v; %d held, want exactly one of them holding the only turn", err, next.Load(), tu.Held())
			}
			if err == nil {
				kept++
				tu.Release() // first's; next gets it
				synctest.Wait()
			} else {
				passed++
			}
			if e := <-nextErr; e != nil {
				t.Fatal(e)
			}
			tu.Release() // next's
		}
		if tu.Held() != 0 || kept == 0 || passed == 0 {
			t.Fatalf("%d held at the end; kept %d, passed on %d: both ways must be taken", tu.Held(), kept, passed)
		}
	})
}

func TestReleaseWithoutAcquirePanics(t *testing.T) {
	var tu Turns
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	tu.Release()
}

// TestFollowsGOMAXPROCS: the bound is GOMAXPROCS as it is now, in both
// directions.
func TestFollowsGOMAXPROCS(t *testing.T) {
	withProcs(t, 1)
	synctest.Test(t, func(t *testing.T) {
		var tu Turns
		ctx := context.Background()
		if err := tu.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		waiting, _ := acquirer(&tu, ctx)
		synctest.Wait()
		if waiting.Load() {
			t.Fatal("a second turn with GOMAXPROCS 1")
		}
		runtime.GOMAXPROCS(3)
		// The next Acquire hands out the new turns, in order: the waiter
		// first, then itself; no Release needed.
		third, _ := acquirer(&tu, ctx)
		synctest.Wait()
		if !waiting.Load() || !third.Load() || tu.Held() != 3 {
			t.Fatalf("after GOMAXPROCS 3: waiter %v, third %v, %d held", waiting.Load(), third.Load(), tu.Held())
		}
		tu.Release()
		runtime.GOMAXPROCS(1)
		fourth, _ := acquirer(&tu, ctx)
		tu.Release()
		synctest.Wait()
		if fourth.Load() {
			t.Fatal("a turn granted with 1 held and GOMAXPROCS 1")
		}
		tu.Release()
		synctest.Wait()
		if !fourth.Load() {
			t.Fatal("no turn with none held")
		}
	})
}

func TestNoAllocationWhileFree(t *testing.T) {
	var tu Turns
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		if err := tu.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		tu.Release()
	}); n != 0 {
		t.Fatalf("%v allocations per free turn", n)
	}
}
