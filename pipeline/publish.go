package pipeline

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/store"
)

// PublishStage pushes the served model (INT4 when quantized), the LoRA
// adapter, the tokenizer, the report, routes.json and the run manifest to
// the recipe's store as one release; `latest` moves only after every file
// is stored and verified.
type PublishStage struct{}

func (PublishStage) Name() string { return "publish" }

func (PublishStage) Key(_ context.Context, r *recipes.Recipe) (Key, error) {
	return Key{Version: "1", Config: struct {
		Store, Name string
	}{r.StoreURL(), publishName(r)}}, nil
}

func (PublishStage) Run(ctx context.Context, sc *StageContext) error {
	r := sc.Recipe
	if r.Task.Kind == "lm" {
		sc.Summarize("skipped", "task.kind lm: nothing is served; the checkpoint is in the train stage's model folder")
		return nil
	}
	files, err := releaseFiles(sc)
	if err != nil {
		return err
	}
	s, err := openRecipeStore(ctx, r)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f.Path); err == nil {
			total += fi.Size()
		}
	}
	var done int64
	sizes := map[string]int64{}
	rel, err := store.Publish(ctx, s, publishName(r), sc.RunID, files, map[string]string{"recipe": r.Name, "run": sc.RunID},
		store.PublishOptions{Progress: func(key string, n, _ int64) {
			done += n - sizes[key]
			sizes[key] = n
			sc.Progress(done, total, "bytes")
		}})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	sc.Summarize("store", s.URL())
	sc.Summarize("name", rel.Name)
	sc.Summarize("version", rel.Version)
	sc.Summarize("files", len(rel.Files))
	sc.Summarize("bytes", total)
	sc.Log.Info("published", "store", s.URL(), "name", rel.Name, "version", rel.Version, "files", len(rel.Files))
	return nil
}

// releaseFiles lays out a release: model/ (the served checkpoint with its
// tokenizer), adapter/, report.*, routes.json, harvest/soft_labels.parquet
// and manifest.json.
func releaseFiles(sc *StageContext) ([]store.File, error) {
	var files []store.File
	served := sc.UpstreamFile("quantize", ModelDir)
	if !dirExists(served) || sc.Recipe.Quantize.Method == "none" {
		served = sc.UpstreamFile("train", ModelDir)
	}
	add := func(dir, prefix string) error {
		return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			files = append(files, store.File{Path: p, Name: prefix + filepath.ToSlash(rel)})
			return nil
		})
	}
	if err := add(served, ModelDir+"/"); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if a := sc.UpstreamFile("train", AdapterDir); dirExists(a) {
		if err := add(a, AdapterDir+"/"); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{"report.json", "report.md", "report.html", RoutesFile} {
		p := sc.UpstreamFile("eval", name)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("publish: the eval stage's %s is missing: %w", name, err)
		}
		files = append(files, store.File{Path: p, Name: name})
	}
	// The soft labels are the base of the next `run --incremental`.
	if p := sc.UpstreamFile("harvest", SoftLabelsFile); isFile(p) {
		files = append(files, store.File{Path: p, Name: ReleaseSoftLabels})
	}
	files = append(files, store.File{Path: filepath.Join(sc.RunDir, ManifestName), Name: ManifestName})
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}
