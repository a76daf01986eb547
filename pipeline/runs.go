package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// FindRun resolves a run given as a folder path, "recipe/run-id" or a bare
// run id (or a unique prefix of one) under runsDir.
func FindRun(runsDir, run string) (string, error) {
	if _, err := os.Stat(filepath.Join(run, ManifestName)); err == nil {
		return run, nil
	}
	if _, err := os.Stat(filepath.Join(runsDir, run, ManifestName)); err == nil {
		return filepath.Join(runsDir, run), nil
	}
	matches, _ := filepath.Glob(filepath.Join(runsDir, "*", filepath.Base(run)+"*", ManifestName))
	switch len(matches) {
	case 0:
		return "", Invalid(fmt.Errorf("run %q not found under %s", run, runsDir))
	case 1:
		return filepath.Dir(matches[0]), nil
	}
	return "", Invalid(fmt.Errorf("run %q is ambiguous: %d runs match", run, len(matches)))
}

// ListRuns returns the manifests of all runs under runsDir (of one recipe
// when recipe is not empty), newest first.
func ListRuns(runsDir, recipe string) ([]*Manifest, error) {
	pattern := filepath.Join(runsDir, "*", "*", ManifestName)
	if recipe != "" {
		pattern = filepath.Join(runsDir, recipe, "*", ManifestName)
	}
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var out []*Manifest
	for _, p := range paths {
		m, err := ReadManifest(filepath.Dir(p))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}
