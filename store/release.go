package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"sort"
	"time"
)

// Layout of a release in a store:
//
//	<name>/<version>/<file>...        the files, uploaded first
//	<name>/<version>/release.json     written once every file is verified
//	<name>/latest                     pointer, moved last
//
// A reader that goes through the pointer (Latest) or through release.json
// therefore never sees a version whose files are not all in place.
const (
	releaseFile = "release.json"
	latestKey   = "latest"
)

// ErrVersionExists is wrapped when publishing a version that already exists
// with different content: versions are immutable.
var ErrVersionExists = errors.New("version already exists with different content")

// File is one local file to publish.
type File struct {
	Path string // local path
	Name string // key relative to the version folder, e.g. "model.safetensors"
}

// Release is the content of release.json.
type Release struct {
	Name    string            `json:"name"`
	Version string            `json:"version"`
	Created time.Time         `json:"created"`
	Files   []Object          `json:"files"` // keys relative to the version folder
	Meta    map[string]string `json:"meta,omitempty"`
}

// PublishOptions tunes Publish and Download.
type PublishOptions struct {
	// Progress is called with the file's Name as its bytes are transferred.
	Progress ProgressFunc
}

// Publish uploads files as version of name and then makes it the latest.
// Order matters for readers: files (each verified by sha256), then
// release.json, then the latest pointer. Publishing a version that exists
// with the same files and meta is a no-op that returns the stored release
// (so a publish that died before moving the pointer can be retried);
// different content fails with ErrVersionExists.
//
// The pointer is not moved back: if latest already names a release created
// later than this one, it is left alone.
func Publish(ctx context.Context, s Store, name, version string, files []File, meta map[string]string, opts ...PublishOptions) (Release, error) {
	op := fmt.Sprintf("publish %s@%s to %s", name, version, s.URL())
	var o PublishOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if err := validateRelease(name, version); err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}
	if len(files) == 0 {
		return Release{}, fmt.Errorf("%s: no files", op)
	}
	files = append([]File(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	if err := checkFileNames(names); err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}

	// Hash first: needed to compare with an existing version, and to check
	// each upload against what was meant to be sent.
	want := make([]Object, len(files))
	for i, f := range files {
		obj, err := hashFile(ctx, f.Path)
		if err != nil {
			return Release{}, fmt.Errorf("%s: %w", op, err)
		}
		obj.Key = f.Name
		want[i] = obj
	}

	old, oldRaw, err := readRelease(ctx, s, name, version)
	switch {
	case err == nil:
		if !sameContent(old, want, meta) {
			return Release{}, fmt.Errorf("%s: %w (publish a new version instead)", op, ErrVersionExists)
		}
		if err := checkStored(ctx, s, old); err != nil {
			return Release{}, fmt.Errorf("%s: existing version: %w", op, err)
		}
		if err := movePointer(ctx, s, old, sha256Hex(oldRaw)); err != nil {
			return Release{}, fmt.Errorf("%s: %w", op, err)
		}
		return old, nil
	case !errors.Is(err, ErrNotFound):
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}

	prefix := name + "/" + version + "/"
	for i, f := range files {
		got, err := putLocal(ctx, s, prefix+f.Name, f, want[i], o.Progress)
		if err != nil {
			return Release{}, fmt.Errorf("%s: %w", op, err)
		}
		if got.SHA256 != want[i].SHA256 || got.Size != want[i].Size {
			return Release{}, fmt.Errorf("%s: %s: stored sha256 %s (%d bytes), expected %s (%d bytes)",
				op, f.Name, got.SHA256, got.Size, want[i].SHA256, want[i].Size)
		}
	}

	rel := Release{
		Name:    name,
		Version: version,
		Created: time.Now().UTC().Truncate(time.Millisecond),
		Files:   want,
		Meta:    maps.Clone(meta),
	}
	raw, err := json.MarshalIndent(rel, "", "  ")
	if err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}
	raw = append(raw, '\n')
	if _, err := s.Put(ctx, ReleaseKey(name, version), bytes.NewReader(raw), int64(len(raw))); err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := movePointer(ctx, s, rel, sha256Hex(raw)); err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}
	return rel, nil
}

// hashFile returns the size and sha256 of a local file.
func hashFile(ctx context.Context, path string) (Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return Object{}, err
	}
	defer f.Close()
	sum, n, err := hashAll(ctx, f)
	if err != nil {
		return Object{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return Object{Size: n, SHA256: sum}, nil
}

// hashedPutter is implemented by stores that can skip hashing the source
// again when the caller already knows its sha256.
type hashedPutter interface {
	putHashed(ctx context.Context, key string, r io.Reader, size int64, sum string) (Object, error)
}

// putLocal uploads f, which must still have the size and hash in want.
func putLocal(ctx context.Context, s Store, key string, f File, want Object, progress ProgressFunc) (Object, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return Object{}, err
	}
	defer fh.Close()
	var r io.Reader = fh
	if progress != nil {
		r = &progressReader{r: fh, name: f.Name, total: want.Size, progress: progress}
	}
	if hp, ok := s.(hashedPutter); ok {
		return hp.putHashed(ctx, key, r, want.Size, want.SHA256)
	}
	return s.Put(ctx, key, r, want.Size)
}

// sameContent reports whether a stored release has exactly these files
// (name, size, sha256) and meta.
func sameContent(r Release, files []Object, meta map[string]string) bool {
	if len(r.Files) != len(files) || len(r.Meta) != len(meta) || !maps.Equal(r.Meta, meta) {
		return false
	}
	stored := map[string]Object{}
	for _, f := range r.Files {
		stored[f.Key] = f
	}
	for _, f := range files {
		if g, ok := stored[f.Key]; !ok || g.Size != f.Size || g.SHA256 != f.SHA256 {
			return false
		}
	}
	return true
}

// checkStored checks that every file of r is present with its size (and
// sha256 where the store records it).
func checkStored(ctx context.Context, s Store, r Release) error {
	prefix := r.Name + "/" + r.Version + "/"
	for _, f := range r.Files {
		got, err := s.Stat(ctx, prefix+f.Key)
		if err != nil {
			return err
		}
		if got.Size != f.Size || (got.SHA256 != "" && got.SHA256 != f.SHA256) {
			return fmt.Errorf("%s: stored object does not match release.json", prefix+f.Key)
		}
	}
	return nil
}
