package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// fileStore keeps each object as a plain file under root, so a published
// folder can be used directly (or rsynced) without this package.
type fileStore struct {
	root     string // absolute
	progress ProgressFunc
}

func openFile(dir string, opts Options) (*fileStore, error) {
	if dir == "" {
		return nil, errors.New("open store: empty path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("open store %s: not a directory", abs)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	return &fileStore{root: abs, progress: opts.Progress}, nil
}

func (s *fileStore) URL() string { return "file://" + filepath.ToSlash(s.root) }

func (s *fileStore) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// notExist reports errors that mean "no such object": a missing file, or
// a path component that is a file rather than a folder.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Put writes r to a temp file next to the target while hashing it, checks
// the size, re-reads the temp file to verify the hash, and only then
// renames it into place: readers see the old object or the new one.
func (s *fileStore) Put(ctx context.Context, key string, r io.Reader, size int64) (Object, error) {
	p, err := s.path(key)
	if err != nil {
		return Object{}, fmt.Errorf("file put: %w", err)
	}
	hr := newHashReader(ctx, r, key, size, s.progress)
	err = WriteAtomic(p, func(w io.Writer) error {
		if _, err := io.Copy(w, hr); err != nil {
			return err
		}
		if size >= 0 && hr.n != size {
			return fmt.Errorf("size mismatch: read %d bytes, expected %d", hr.n, size)
		}
		ra, ok := w.(io.ReaderAt)
		if !ok {
			return nil
		}
		got, _, err := hashAll(ctx, io.NewSectionReader(ra, 0, hr.n))
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if got != hr.Sum() {
			return fmt.Errorf("verify: sha256 of written data %s, expected %s", got, hr.Sum())
		}
		return nil
	})
	if err != nil {
		return Object{}, fmt.Errorf("file put %s: %w", key, err)
	}
	obj := Object{Key: key, Size: hr.n, SHA256: hr.Sum()}
	if fi, err := os.Stat(p); err == nil {
		obj.ModTime = fi.ModTime().UTC()
	}
	return obj, nil
}

func (s *fileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("file get: %w", err)
	}
	f, err := os.Open(p)
	if notExist(err) {
		return nil, fmt.Errorf("file get %s: %w", key, ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("file get %s: %w", key, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("file get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

// Stat describes key. The file store keeps no hash beside the data, so
// SHA256 is left empty rather than re-reading a possibly huge file.
func (s *fileStore) Stat(ctx context.Context, key string) (Object, error) {
	p, err := s.path(key)
	if err != nil {
		return Object{}, fmt.Errorf("file stat: %w", err)
	}
	fi, err := os.Stat(p)
	if notExist(err) || (err == nil && !fi.Mode().IsRegular()) {
		return Object{}, fmt.Errorf("file stat %s: %w", key, ErrNotFound)
	} else if err != nil {
		return Object{}, fmt.Errorf("file stat %s: %w", key, err)
	}
	return Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()}, nil
}

// List walks only the folder the prefix points into and skips WriteAtomic
// temp files, so an upload in progress is invisible.
func (s *fileStore) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("file list: %w", err)
	}
	start := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	var out []Object
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && notExist(err) {
				return filepath.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || tempName.MatchString(d.Name()) {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if notExist(err) {
			return nil // deleted while listing
		} else if err != nil {
			return err
		}
		out = append(out, Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes key. Emptied folders are left in place: removing them
// could race with a concurrent Put creating a file inside.
func (s *fileStore) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("file delete: %w", err)
	}
	if err := os.Remove(p); err != nil && !notExist(err) {
		return fmt.Errorf("file delete %s: %w", key, err)
	}
	return nil
}
