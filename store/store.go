// Package store keeps published artifacts in a local folder (file://DIR)
// or an S3-compatible bucket (s3://bucket/prefix).
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) when a key does not exist.
var ErrNotFound = errors.New("not found")

// Object describes one stored object.
type Object struct {
	Key     string    `json:"key"`
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256,omitempty"`
	ModTime time.Time `json:"mod_time,omitzero"`
}

// Store is a flat key/value space of immutable-ish objects. Keys use '/' as
// separator and never start with '/'.
type Store interface {
	// Put stores r under key. size may be -1 when unknown. It returns the
	// object with its sha256, checked against what the store holds.
	Put(ctx context.Context, key string, r io.Reader, size int64) (Object, error)
	// Get opens key for reading; a missing key gives an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes key; a missing key gives an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (Object, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// URL is the store's location, without credentials.
	URL() string
}
