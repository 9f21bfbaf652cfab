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
		third, _ := acquirer(&tu, ctx) // behind the waiter: FIFO
		synctest.Wait()
		tu.Release() // grants up to the new bound
		synctest.Wait()
		if !waiting.Load() || !third.Load() || tu.Held() != 2 {
			t.Fatalf("after GOMAXPROCS 3: waiter %v, third %v, %d held", waiting.Load(), third.Load(), tu.Held())
		}
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
