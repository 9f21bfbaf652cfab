package wal

import "syscall"

// Sync is fdatasync, retried when a signal interrupts it.
func (f osFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
