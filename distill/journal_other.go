//go:build !linux

package distill

import "os"

func preallocate(_ *os.File, from, _ int64) int64 { return from }

func syncData(f *os.File) error { return f.Sync() }
