package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// pointer is the content of <name>/latest.
type pointer struct {
	Version string `json:"version"`
	Release string `json:"release"` // key of release.json
	SHA256  string `json:"sha256"`  // of release.json's bytes
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
