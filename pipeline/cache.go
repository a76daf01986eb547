package pipeline

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distillery/distillery/store"
)

// findCached looks through the recipe's other runs, newest first, for a
// finished stage with the same key whose outputs are still intact.
func findCached(runsDir, recipe, exceptRun, stage, key string) (string, *StageRecord) {
	dirs, _ := filepath.Glob(filepath.Join(runsDir, recipe, "*", ManifestName))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, mp := range dirs {
		dir := filepath.Dir(mp)
		if filepath.Base(dir) == exceptRun {
			continue
		}
		m, err := ReadManifest(dir)
		if err != nil {
			continue
		}
		rec := m.Stage(stage)
		if !rec.Complete() || rec.Key != key {
			continue
		}
		if verifyOutputs(filepath.Join(dir, stage), rec.Outputs) != nil {
			continue
		}
		return dir, rec
	}
	return "", nil
}

// linkOutputs hard-links (or, across file systems, copies) a stage's
// outputs into another run folder.
func linkOutputs(src, dst string, outs []store.Object) error {
	for _, o := range outs {
		from := filepath.Join(src, filepath.FromSlash(o.Key))
		to := filepath.Join(dst, filepath.FromSlash(o.Key))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if os.Link(from, to) == nil {
			continue
		}
		if err := copyFile(from, to); err != nil {
			return fmt.Errorf("copy %s: %w", o.Key, err)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	return store.WriteAtomic(to, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// removeTempFiles deletes the temp files of atomic writes that a killed
// attempt left behind. Under the run lock nobody else can be writing them.
func removeTempFiles(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), ".tmp-") {
			return os.Remove(p)
		}
		return nil
	})
}
