package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked is returned when another process holds a run folder.
var ErrLocked = errors.New("run folder is locked by another process")

// lock takes an exclusive advisory lock on dir/.lock. The kernel drops it
// when the process dies, even by SIGKILL, so a crashed run never leaves a
// stale lock behind.
func lock(dir string) (unlock func(), err error) {
	p := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		buf := make([]byte, 32)
		n, _ := f.Read(buf)
		f.Close()
		holder := strings.TrimSpace(string(buf[:n]))
		if holder != "" {
			return nil, fmt.Errorf("%s: %w (pid %s)", dir, ErrLocked, holder)
		}
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
