// Package wal makes accepted samples durable before fedgate answers 2xx,
// and rebuilds the head from disk at startup.
//
// # Usage
//
//	st, err := wal.Open(dir, hd, opts, logger, reg) // replays checkpoint and segments into hd
//	go st.Run(ctx)                                   // periodic checkpoint, GC and segment cleanup
//	err = st.Append(ctx, batch)                      // returns after the fsync that covers batch
//	st.Close()
//
// Storage.Append is what the write handler calls. It resolves each series
// of the batch to a head series (creating it if new), encodes one series
// record for every series the log has not yet recorded and one samples
// record with every sample of the batch, hands them to the group commit,
// and only after the fsync that covers them applies the newest samples to
// the head and returns. A failed write or fsync returns an error (which the
// gateway answers 503): nothing of the batch was acknowledged.
//
// # Files
//
// Under the storage path:
//
//	wal/00000012             segments, numbered, append-only
//	wal/00000013
//	wal/checkpoint.00000007  a full checkpoint, the base of checkpoint 11
//	wal/checkpoint.00000011  the head as of the end of segment 11 (a delta)
//	wal/checkpoint.00000011.tmp  a checkpoint being written (removed at startup)
//
// A segment is cut when it reaches Options.SegmentSize and at every
// checkpoint. A checkpoint.N covers segments up to N: with what it builds
// on, it holds every series live at the time it was taken, with its newest
// sample. Once it is renamed into place (after its own fsync, followed by an
// fsync of the directory), segments up to N and the checkpoints it does not
// build on are deleted. A checkpoint is one of two kinds:
//
//   - full: a series record and a sample of every live series;
//   - delta: a base record naming an older full checkpoint.B first, then
//     series records only for the live series B does not hold, and a sample
//     of every live series. Labels are most of a full checkpoint's bytes
//     (about 250 of 270 per series); a delta at a million series that mostly
//     persist is some 15 MB instead of 300 MB, and costs that much less CPU,
//     disk bandwidth and fsync.
//
// Replay of a delta N reads B, then N, then removes the series read from B
// that N gives no sample: they expired or were dropped since B. A delta
// only ever builds on a full checkpoint (no chains), and B is deleted only
// once a newer full checkpoint is durable. The WAL writes a full checkpoint
// when it has none to build on; when the series records the deltas since
// the base have carried add up to as many as the base holds (then a full
// one costs no more than those deltas did, so labels are written at most
// twice over); and when the last delta found more than half of the base's
// series gone (replay would read mostly dead series). Disk use is one full
// checkpoint, at most one delta, and the segments written since.
//
// A checkpoint walks the head a stripe at a time (no snapshot the size of
// the head), and the ones Run writes are paced: the writer sleeps three
// times the work of every chunk of 1024 series, so that at a million
// series pushes do not wait behind it. The same walk finds the expired
// series (newest sample older than the retention): they are written into
// the checkpoint like the others — one may have been written again since
// the walk, its sample logged with no new series record — and removed
// from the head once it is durable, if still expired; replay removes those
// a checkpoint holds. The walk also finds the series left on sparse
// symbol tables (see the head's "Label storage"): they are moved to new
// series objects of the same ref once the checkpoint is durable, a chunk
// at a time and paced, at most maxMoves per checkpoint. When nothing was
// logged since the last checkpoint, none is written and a paced walk of
// its own removes and moves them. Covered
// segments are truncated a step at a time, paced, before they are
// unlinked: freeing a 128 MB segment at once held the log's fsyncs up. (A
// crash in the middle leaves one cut short; it is covered, so only a
// checkpoint that later rots would make replay read it, and then only its
// remaining records.)
//
// # Record frame
//
// Segments and checkpoints are sequences of records:
//
//	┌────────────────┬────────────────┬─────────┬──────────────────────┐
//	│ length uint32  │ crc uint32     │ type u8 │ payload              │
//	│ little endian  │ little endian  │         │ (length-1 bytes)     │
//	└────────────────┴────────────────┴─────────┴──────────────────────┘
//
// length counts type and payload (so it is never 0; a zeroed region reads as
// length 0 and is recognised as not a record); crc is CRC32-Castagnoli of
// type and payload. A record is never split across files. A record is at
// most 256 MiB; writers start a new series or samples record once one
// holds 16 MiB, however large the request (its records can take more
// bytes than it does).
//
// Record types and payloads (uvarint/varint are Go's encoding/binary forms;
// writers pad the n of series and samples records to 5 bytes, which
// binary.Uvarint reads as any other):
//
//	1 series:  uvarint n, then n × { uvarint ref, uvarint len, tenant,
//	                                 uvarint len, packed labels (head.Labels) }
//	2 samples: uvarint n, varint base, then n × { uvarint ref,
//	                                 varint t-base, uint64 LE float bits }
//	3 tombstones: uvarint n, then n × uvarint ref: series removed from
//	             the head because their tenant moved to another instance
//	4 base:    uvarint B, uvarint carried: the first record of a delta
//	           checkpoint, naming the full checkpoint.B it builds on (B
//	           below the delta's number), and how many series records the
//	           deltas on B before this one carried; anywhere else it is
//	           corruption
//
// Samples of a series that is not held and whose samples are all older than
// the retention are accepted but neither held nor logged: they could never
// be served.
//
// A ref is a series' number, unique among the series held and the records
// on disk (the ref of a series that expired before the last checkpoint may
// be given out again after a restart). A series record is written the first
// time the log carries a series (again after a failed write, so a samples
// record never depends on a series record that did not reach the disk);
// steady state costs one samples entry, about 11 bytes, per sample.
//
// # Invariants
//
//   - Append returns nil only after fsync (fdatasync) of every byte of the
//     batch's records, and after the head shows the batch.
//   - Concurrent Appends share one write and one sync: a request waits for at
//     most the sync in flight plus the one that carries its records.
//   - After a write or sync error the segment is abandoned: nothing more is
//     appended to it, the next commit starts a fresh segment.
//   - Replay reads the newest complete checkpoint, then every later segment
//     in order. A torn or corrupt tail of the last segment is truncated,
//     synced and logged (segment, offset, bytes dropped). Corruption anywhere
//     else is reported as a *CorruptionError (segment, offset) and counted;
//     the rest of that file is skipped, later files are still read. An I/O
//     error is reported, never repaired by cutting. When the newest
//     checkpoint is damaged, older checkpoints and the segments it covers are
//     replayed too and kept until a good checkpoint replaces them; nothing
//     read is then removed as dropped (a delta's pruning needs the whole
//     delta). A damaged or missing base is reported the same way, and the
//     next checkpoint is full.
//   - Replay syncs the directory before it removes any file, and every
//     segment it read before the Storage is ready: what a crash left in the
//     page cache only is read like the rest, and nothing is acknowledged on
//     the account of bytes that may not last. Open syncs the directories
//     that hold the log's, every time.
//   - A delta's series records plus its base hold the labels of every series
//     the delta gives a sample: the WAL records on each series the full
//     checkpoint its record went to (head.Series.Base), and writes into a
//     delta the record of every series whose mark is not the delta's base.
//   - A checkpoint never loses an acknowledged sample: the segment cut that
//     starts it waits until every batch written to the old segments has been
//     applied to the head, so the head it snapshots includes them.
//
// # Concurrency
//
// Appends run concurrently; the group commit serialises file I/O on one
// goroutine at a time. The cut barrier (a RWMutex held shared from an
// Append's write until its head update, exclusively only for the instant of
// a cut, a drop, the removal of expired series or a chunk of moves, found
// on walks that do not take it) is the WAL's own lock and the only lock held across I/O.
package wal
