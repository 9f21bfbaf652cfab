// Package turns bounds how many requests do CPU-bound work at once (decode
// a body and hold its decoded form) to the number of CPUs Go runs on.
//
// It owns only that count. It reads runtime.GOMAXPROCS at every Acquire
// and Release rather than once: since Go 1.25 the runtime lowers or raises
// it when a container's CPU limit changes, and a bound fixed at startup
// would then hold too many decoded requests at once, or too few.
//
// Invariants:
//   - At most GOMAXPROCS turns are held at a moment GOMAXPROCS does not
//     change; after it falls, turns already held are kept until released,
//     and no new one is granted until fewer are held than it now is; after
//     it rises, the next Acquire hands the new turns to the waiters.
//   - Waiters get turns in the order they asked (FIFO), and a waiter
//     whose context ends before its turn takes none: no turn is lost.
//   - It never allocates while a turn is free.
package turns
