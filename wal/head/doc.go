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
// # Label storage
//
// A held series keeps its labels in one allocation with it, as tokens: for
// each label (sorted by name) a name token and a value token, each
//
//	uvarint(id<<1)              a symbol: the id'th string of the series' symbol table
//	uvarint(len<<1|1) bytes     a literal
//
// The symbol tables are process-wide. New series take their tokens from
// the current table, and a series names its table in its flags. A table
// is filled once: a symbol's id and string never change while the table
// lives, so readers decode without a lock. A name or value becomes a
// symbol the second time a new series brings it (a lossy filter of hashes
// counts sightings), so that strings seen once (a pod's hash, an address,
// a tenant's ever new names) stay literals and do not fill the table. A
// token is never longer than the packed form of its string. A table is
// bounded (maxSymbols strings, maxSymbolBytes bytes, strings up to
// maxSymbolLen).
//
// Tables come and go, so that pods that churn do not leave their strings
// behind for good:
//
//   - When the current table is full, the next new series opens a new one
//     in a free slot (there are maxTables) and takes its tokens from it;
//     the full table's index for interning goes (its strings, and its
//     filter of sightings, stay). With no slot free, new strings are
//     literals, so memory per series is never more than without symbols,
//     plus the tables.
//   - A table counts the held series that name it (a Head dropped with
//     series held, as tests and benchmarks do, leaves them counted). A table that is not
//     current and names none is retired, its slot freed, once every
//     SymbolPin taken before that was seen has been released, and if no
//     series was made on it meanwhile (its maker may have got it just
//     before the rollover).
//   - A few long-lived series must not keep a table whose other series
//     are gone: when a table stopped being current at least a retention
//     ago (so that the series that churned have expired) and holds at
//     most 1/sparseShare of the series made on it, the walks that find
//     expired series (the WAL's checkpoint, GC) move those it holds to
//     the current table. A moved series is replaced, under the caller's
//     barrier as for a removal, by a new Series with the same ref,
//     labels, newest sample and log marks, in its stripe's table, its
//     family and the memo; the old one is marked removed and moved.
//     Held and Remove take it for its replacement, found by labels and
//     ref (a series of the same labels made after the replacement was
//     removed has another ref).
//   - Whoever reads the labels of a series it got from the head (its memo,
//     families, parts, Prepare) holds a SymbolPin from before it got the
//     series until its last read: then the series' table is not retired
//     meanwhile, even if the series is removed. A series that is held, as
//     under its stripe lock or the caller's barrier between Prepare and
//     Commit, needs none. A pin blocks no one; it only delays retirement.
//   - A series read after its table was retired (a reader without a pin)
//     panics, as long as its slot's next table is not one 65,536 tables
//     later (a series names its table by slot and the low 16 bits of a
//     serial); a LabelIter made before keeps its table alive.
//
// Labels come in and go out in the packed form of Labels (AppendLabels,
// Iter); only the head stores tokens.
//
// # Known series
//
// Each tenant has a memo from keys its callers choose (the gateway hashes
// the bytes a sender encoded a series' labels in) to the series Prepare
// resolved a batch series carrying that key to. A caller that finds a
// candidate with Memo.Get (or Memo.GetMany, for many keys at once, so
// that their cache misses overlap) and checks that its labels are the
// ones its input makes passes it as BatchSeries.Known, and Prepare takes
// it without hashing the labels or probing the table. The memo is a
// cache, never an authority:
//
//   - Get and GetMany return only series that are held; Prepare takes a
//     Known series only if it is still held and is the batch tenant's,
//     and looks the labels up as usual otherwise. (Removals and moves
//     happen under the caller's barrier, as for GC, so a series Prepare
//     takes stays held until Commit.)
//   - A key names one series and a series has one key: a newer Prepare
//     with the same key, or of the same series under another key,
//     replaces the entry. So the memo never holds more entries than the
//     tenant holds series, however a sender varies its encoding. Nothing
//     is ever looked up by key alone: a key collision costs a failed check
//     and the full path, not a wrong series.
//   - Removing a series deletes its entry. (Only a series removed while
//     a Prepare runs without the caller's barrier, which Head.Append's
//     callers may do, can leave one; the table drops it when it grows.)
//
// # Concurrency
//
// Series are spread over lock stripes by label hash; an append holds one
// stripe lock for one series at a time and never across I/O. The newest
// sample of a series is published with a sequence lock, so readers
// (/federate) never take a stripe lock. Families (series grouped by metric
// name, for /federate's grouped output) are guarded by one RWMutex that is
// taken for writing only when a series is created, moved or removed. A new
// series takes the symbol tables' lock (a rollover) and a table's own
// (interning) under its stripe lock; the lock order is stripe, families,
// tables, table.
package head
