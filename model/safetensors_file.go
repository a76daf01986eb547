package model

import (
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
)

// SafetensorsFile is one open safetensors file. The file is memory-mapped
// read-only, so opening a multi-gigabyte checkpoint costs no reads and
// Tensor returns zero-copy views that the kernel pages in on demand. If
// mmap is unavailable the file is read into memory instead.
//
// Tensor may be called from several goroutines; Close must not race with
// it, and tensors obtained before Close must not be used after it.
type SafetensorsFile struct {
	Path   string
	Header *Header

	data   []byte // the whole file
	mapped bool   // data came from mmap and must be unmapped
	closed bool
}

// safetensorsMmap is syscall.Mmap; tests replace it to exercise the
// read-into-memory fallback.
var safetensorsMmap = syscall.Mmap

// OpenSafetensors opens, maps and validates a safetensors file. A truncated
// file or corrupt header gives an error naming the file.
func OpenSafetensors(path string) (*SafetensorsFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors %s: not a regular file", path)
	}
	size := st.Size()
	if size > math.MaxInt {
		return nil, fmt.Errorf("safetensors %s: %d bytes is too large to map", path, size)
	}
	sf := &SafetensorsFile{Path: path}
	if size > 0 {
		if data, err := safetensorsMmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED); err == nil {
			sf.data, sf.mapped = data, true
		}
	}
	if !sf.mapped {
		// mmap failed (an empty file, a filesystem without mmap): read it.
		sf.data = make([]byte, size)
		if _, err := io.ReadFull(f, sf.data); err != nil {
			return nil, fmt.Errorf("safetensors %s: %w", path, err)
		}
	}
	sf.Header, err = ParseHeader(sf.data, size)
	if err != nil {
		sf.Close()
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	return sf, nil
}

// Tensor returns a named tensor whose Data is a read-only view into the
// file (valid until Close). Shape is a fresh copy.
func (f *SafetensorsFile) Tensor(name string) (Tensor, error) {
	if f.closed {
		return Tensor{}, fmt.Errorf("safetensors %s: tensor %q: file is closed", f.Path, name)
	}
	info, ok := f.Header.Tensors[name]
	if !ok {
		return Tensor{}, fmt.Errorf("safetensors %s: tensor %q: %w", f.Path, name, ErrMissingTensor)
	}
	b, e := f.Header.DataStart+info.Begin, f.Header.DataStart+info.End
	return Tensor{
		Name:  name,
		DType: info.DType,
		Shape: append([]int{}, info.Shape...),
		Data:  f.data[b:e:e], // capped so an append cannot write past the tensor
	}, nil
}

// Close unmaps the file. It is safe to call more than once.
func (f *SafetensorsFile) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	data, mapped := f.data, f.mapped
	f.data = nil
	if mapped {
		if err := syscall.Munmap(data); err != nil {
			return fmt.Errorf("safetensors %s: munmap: %w", f.Path, err)
		}
	}
	return nil
}
