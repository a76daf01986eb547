package store

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
)

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
