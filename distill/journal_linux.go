package distill

import (
	"os"
	"syscall"
)

// preallocate reserves file space up to size (zeros) and returns how much
// is reserved; where the file system cannot, it returns from unchanged.
func preallocate(f *os.File, from, size int64) int64 {
	if err := syscall.Fallocate(int(f.Fd()), 0, from, size-from); err != nil {
		return from
	}
	return size
}

// syncData flushes written data without metadata that did not change.
func syncData(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
