// Package wal will own fedgate's segmented write-ahead log: records framed
// with length and CRC32-Castagnoli, group-committed fsyncs, checkpoints and
// replay, so that a 2xx answer means the samples are on disk.
//
// Today it holds only the head (package wal/head), the in-memory
// latest-sample store that the log will rebuild at startup. The write path
// already waits on Storage.Append before it answers, so putting the log
// under it changes no caller.
package wal
