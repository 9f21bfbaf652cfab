//go:build !linux

package wal

// Sync is os.File.Sync: there is no fdatasync here (on macOS it is
// F_FULLFSYNC, which also flushes the drive's cache).
func (f osFile) Sync() error { return f.File.Sync() }
