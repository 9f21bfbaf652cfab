// Package head holds the latest sample of every series, per tenant: what
// /federate serves.
//
// # What it owns
//
// A series is identified by its complete label set, cluster label included,
// in the packed form of Labels (sorted by name, length-prefixed, one string).
// For each series the head keeps one (timestamp, value) pair: the newest it
// has seen. It never decodes requests, validates labels or writes files.
//
// # Invariants
//
//   - A sample older than the one held is accepted but does not replace it;
//     one with the same timestamp does not replace it either (first wins, as
//     a retried request carries the same value). The newest of several
//     samples of one series in a batch is the one held.
//   - A stale marker (value bits 0x7ff0000000000002) newer than the held
//     sample is held like any sample; Visible reports such a series as not
//     visible, so it leaves /federate at once and comes back only with a
//     newer real sample.
//   - A series whose newest sample is older than now-retention is not
//     visible, and GC (which its owner, the WAL, runs with each checkpoint)
//     removes it. A new series whose only sample is already that old is not
//     created.
//   - Labels passed in are only read during the call; the head copies what it
//     keeps (one allocation per new series, none per existing one).
//
// # Concurrency
//
// Series are spread over lock stripes by label hash; an append holds one
// stripe lock for one series at a time and never across I/O. The newest
// sample of a series is published with a sequence lock, so readers
// (/federate) never take a stripe lock. Families (series grouped by metric
// name, for /federate's grouped output) are guarded by one RWMutex that is
// taken for writing only when a series is created or removed; the lock
// order is stripe, then families.
package head
