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
	"path/filepath"
	"regexp"
	"sort"
	"strings"
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

// pointer is the content of <name>/latest.
type pointer struct {
	Version string `json:"version"`
	Release string `json:"release"` // key of release.json
	SHA256  string `json:"sha256"`  // of release.json's bytes
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// ValidateName checks a release name or version: one path segment of
// letters, digits and ". _ + -", not starting with a punctuation mark and
// without "..", so it can never escape its folder.
func ValidateName(kind, s string) error {
	if !nameRE.MatchString(s) || strings.Contains(s, "..") {
		return fmt.Errorf("invalid %s %q: want 1-128 of [A-Za-z0-9._+-], starting with a letter or digit, no \"..\"", kind, s)
	}
	return nil
}

func validateRelease(name, version string) error {
	if err := ValidateName("release name", name); err != nil {
		return err
	}
	if err := ValidateName("version", version); err != nil {
		return err
	}
	if version == latestKey {
		return fmt.Errorf("invalid version %q: reserved for the latest pointer", version)
	}
	return nil
}

// ReleaseKey is the key of a version's release.json.
func ReleaseKey(name, version string) string { return name + "/" + version + "/" + releaseFile }

// LatestKey is the key of a release name's latest pointer.
func LatestKey(name string) string { return name + "/" + latestKey }

// checkFileNames rejects names that are invalid keys, collide with
// release.json, repeat, or are both a file and a folder ("a" and "a/b").
func checkFileNames(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if err := ValidateKey(n); err != nil {
			return err
		}
		if n == releaseFile {
			return fmt.Errorf("file name %q is reserved", n)
		}
		if seen[n] {
			return fmt.Errorf("file name %q given twice", n)
		}
		seen[n] = true
	}
	for _, n := range names {
		for dir := n; strings.Contains(dir, "/"); {
			dir = dir[:strings.LastIndex(dir, "/")]
			if seen[dir] {
				return fmt.Errorf("file name %q is also used as a folder by %q", dir, n)
			}
		}
	}
	return nil
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

// movePointer points latest at r unless it already names a newer release.
func movePointer(ctx context.Context, s Store, r Release, relSum string) error {
	key := LatestKey(r.Name)
	cur, err := Latest(ctx, s, r.Name)
	switch {
	case err == nil && cur.Version != r.Version && cur.Created.After(r.Created):
		return nil // a newer release is already latest
	case err == nil && cur.Version == r.Version:
		if raw, err := readAll(ctx, s, key); err == nil {
			var p pointer
			if json.Unmarshal(raw, &p) == nil && p.SHA256 == relSum {
				return nil // already there
			}
		}
	}
	// Any other state (missing, unreadable or older pointer) is replaced.
	raw, err := json.Marshal(pointer{Version: r.Version, Release: ReleaseKey(r.Name, r.Version), SHA256: relSum})
	if err != nil {
		return err
	}
	raw = append(raw, '\n')
	if _, err := s.Put(ctx, key, bytes.NewReader(raw), int64(len(raw))); err != nil {
		return fmt.Errorf("move latest: %w", err)
	}
	return nil
}

// readAll reads a small object into memory.
func readAll(ctx context.Context, s Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}

// readRelease reads and checks name/version/release.json; it also returns
// the raw bytes, whose hash the pointer records.
func readRelease(ctx context.Context, s Store, name, version string) (Release, []byte, error) {
	key := ReleaseKey(name, version)
	raw, err := readAll(ctx, s, key)
	if err != nil {
		return Release{}, nil, err
	}
	var r Release
	if err := json.Unmarshal(raw, &r); err != nil {
		return Release{}, nil, fmt.Errorf("%s: %w", key, err)
	}
	if r.Name != name || r.Version != version {
		return Release{}, nil, fmt.Errorf("%s: names %s@%s", key, r.Name, r.Version)
	}
	names := make([]string, len(r.Files))
	for i, f := range r.Files {
		names[i] = f.Key
	}
	if err := checkFileNames(names); err != nil {
		return Release{}, nil, fmt.Errorf("%s: %w", key, err)
	}
	return r, raw, nil
}

// ReadRelease returns a given version's release.json. A version whose
// upload has not finished does not have one yet (ErrNotFound).
func ReadRelease(ctx context.Context, s Store, name, version string) (Release, error) {
	if err := validateRelease(name, version); err != nil {
		return Release{}, err
	}
	r, _, err := readRelease(ctx, s, name, version)
	if err != nil {
		return Release{}, fmt.Errorf("release %s@%s in %s: %w", name, version, s.URL(), err)
	}
	return r, nil
}

// Latest follows name's latest pointer and returns the release it names,
// after checking release.json against the sha256 in the pointer.
// If nothing was published yet the error wraps ErrNotFound.
func Latest(ctx context.Context, s Store, name string) (Release, error) {
	op := fmt.Sprintf("latest %s in %s", name, s.URL())
	if err := ValidateName("release name", name); err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}
	raw, err := readAll(ctx, s, LatestKey(name))
	if err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}
	var p pointer
	if err := json.Unmarshal(raw, &p); err != nil {
		return Release{}, fmt.Errorf("%s: bad pointer: %w", op, err)
	}
	if err := validateRelease(name, p.Version); err != nil || p.Release != ReleaseKey(name, p.Version) {
		return Release{}, fmt.Errorf("%s: bad pointer to %q", op, p.Release)
	}
	r, rawRel, err := readRelease(ctx, s, name, p.Version)
	if errors.Is(err, ErrNotFound) {
		// Not ErrNotFound: something was published, the store is damaged.
		return Release{}, fmt.Errorf("%s: pointer names %s, which is missing", op, p.Release)
	} else if err != nil {
		return Release{}, fmt.Errorf("%s: %w", op, err)
	}
	if got := sha256Hex(rawRel); got != p.SHA256 {
		return Release{}, fmt.Errorf("%s: %s has sha256 %s, pointer says %s", op, p.Release, got, p.SHA256)
	}
	return r, nil
}

// Versions lists name's complete versions (those with a release.json),
// in natural order ("v2" before "v10").
func Versions(ctx context.Context, s Store, name string) ([]string, error) {
	if err := ValidateName("release name", name); err != nil {
		return nil, err
	}
	objs, err := s.List(ctx, name+"/")
	if err != nil {
		return nil, fmt.Errorf("versions of %s: %w", name, err)
	}
	out := []string{}
	for _, o := range objs {
		v, rest, ok := strings.Cut(strings.TrimPrefix(o.Key, name+"/"), "/")
		if ok && rest == releaseFile {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return naturalLess(out[i], out[j]) })
	return out, nil
}

// Download fetches every file of r into dir (keeping sub-folders). Each
// file is written to a temp file, checked against its size and sha256 and
// only then renamed into place, so dir never holds a corrupt file.
func Download(ctx context.Context, s Store, r Release, dir string, opts ...PublishOptions) error {
	op := fmt.Sprintf("download %s@%s from %s", r.Name, r.Version, s.URL())
	var o PublishOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if err := validateRelease(r.Name, r.Version); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	names := make([]string, len(r.Files))
	for i, f := range r.Files {
		names[i] = f.Key
	}
	if err := checkFileNames(names); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	prefix := r.Name + "/" + r.Version + "/"
	for _, f := range r.Files {
		if err := downloadOne(ctx, s, prefix+f.Key, f, filepath.Join(dir, filepath.FromSlash(f.Key)), o.Progress); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

func downloadOne(ctx context.Context, s Store, key string, f Object, dst string, progress ProgressFunc) error {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	hr := newHashReader(ctx, rc, f.Key, f.Size, progress)
	return WriteAtomic(dst, func(w io.Writer) error {
		if _, err := io.Copy(w, hr); err != nil {
			return err
		}
		if hr.n != f.Size || hr.Sum() != f.SHA256 {
			return fmt.Errorf("%s: got sha256 %s (%d bytes), release says %s (%d bytes)", key, hr.Sum(), hr.n, f.SHA256, f.Size)
		}
		return nil
	})
}

// naturalLess orders strings with digit runs compared as numbers
// ("v2" < "v10"); ties such as "1.01" and "1.1" fall back to byte order.
func naturalLess(a, b string) bool {
	x, y := a, b
	for x != "" && y != "" {
		cx, rx := chunk(x)
		cy, ry := chunk(y)
		if cx != cy {
			if isDigit(cx[0]) && isDigit(cy[0]) {
				nx, ny := strings.TrimLeft(cx, "0"), strings.TrimLeft(cy, "0")
				if len(nx) != len(ny) {
					return len(nx) < len(ny)
				}
				if nx != ny {
					return nx < ny
				}
			} else {
				return cx < cy
			}
		}
		x, y = rx, ry
	}
	if x != "" || y != "" {
		return x == ""
	}
	return a < b
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// chunk splits off the leading run of digits or of non-digits.
func chunk(s string) (string, string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}
