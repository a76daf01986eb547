package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
)

// ProgressFunc is told how many bytes of name have been transferred so
// far; total is -1 when the size is unknown. It is called from the
// goroutine doing the transfer and must be cheap.
type ProgressFunc func(name string, done, total int64)

// hashReader hashes (sha256) and counts everything read through it, checks
// the context before every read so that a cancelled transfer stops
// promptly, and reports progress.
type hashReader struct {
	ctx      context.Context
	r        io.Reader
	h        hash.Hash
	n        int64
	name     string
	total    int64
	progress ProgressFunc
}

func newHashReader(ctx context.Context, r io.Reader, name string, total int64, progress ProgressFunc) *hashReader {
	return &hashReader{ctx: ctx, r: r, h: sha256.New(), name: name, total: total, progress: progress}
}

func (h *hashReader) Read(p []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.r.Read(p)
	if n > 0 {
		h.h.Write(p[:n])
		h.n += int64(n)
		if h.progress != nil {
			h.progress(h.name, h.n, h.total)
		}
	}
	return n, err
}

// Sum is the hex sha256 of what has been read so far.
func (h *hashReader) Sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// hashAll reads r to the end and returns its hex sha256 and length.
func hashAll(ctx context.Context, r io.Reader) (string, int64, error) {
	hr := newHashReader(ctx, r, "", -1, nil)
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return "", hr.n, err
	}
	return hr.Sum(), hr.n, nil
}

// sha256Hex is the hex sha256 of b.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// progressReader reports bytes read to a ProgressFunc.
type progressReader struct {
	r        io.Reader
	name     string
	done     int64
	total    int64
	progress ProgressFunc
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.progress(p.name, p.done, p.total)
	}
	return n, err
}
