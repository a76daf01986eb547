package pipeline

// Incremental harvests (distillery run --incremental): a scheduled retrain
// asks the teacher only about the examples that are new since the last
// published release. Every release carries the harvest's soft labels
// (ReleaseSoftLabels); the next incremental run downloads them and keeps
// the rows whose example id and rendered prompt are unchanged, provided the
// teacher settings that shape an answer are the same as the release's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/store"
)

// ReleaseSoftLabels is where a release keeps the harvest's soft labels: the
// base of the next --incremental run.
const ReleaseSoftLabels = "harvest/" + SoftLabelsFile

const (
	// incrementalBaseDir (in the harvest folder) holds the downloaded base
	// while the stage runs; it is removed before the stage finishes.
	incrementalBaseDir = "incremental-base"
	// newSoftLabelsFile holds the answers for the new examples until they
	// are merged with the carried rows into SoftLabelsFile.
	newSoftLabelsFile = "new_soft_labels.parquet"
)

// openRecipeStore opens publish.store with the publish stage's settings.
func openRecipeStore(ctx context.Context, r *recipes.Recipe) (store.Store, error) {
	return store.Open(ctx, r.StoreURL(), store.Options{Endpoint: r.Publish.S3.Endpoint, Region: r.Publish.S3.Region,
		PathStyle: r.Publish.S3.PathStyle, CreateBucket: r.Publish.CreateBucket})
}

// incrementalBase is the published release an incremental harvest starts
// from.
type incrementalBase struct {
	store store.Store
	name  string
	rel   store.Release // Version "" when nothing is published yet
	// labels and manifest are the release's soft labels and run manifest;
	// Key "" when the release lacks them.
	labels, manifest store.Object
}

// findIncrementalBase looks up the latest release of the recipe's publish
// name. Nothing published yet is not an error.
func findIncrementalBase(ctx context.Context, r *recipes.Recipe) (incrementalBase, error) {
	s, err := openRecipeStore(ctx, r)
	if err != nil {
		return incrementalBase{}, fmt.Errorf("--incremental: %w", err)
	}
	b := incrementalBase{store: s, name: publishName(r)}
	rel, err := store.Latest(ctx, s, b.name)
	if errors.Is(err, store.ErrNotFound) {
		return b, nil
	} else if err != nil {
		return b, fmt.Errorf("--incremental: %w", err)
	}
	b.rel = rel
	for _, f := range rel.Files {
		switch f.Key {
		case ReleaseSoftLabels:
			b.labels = f
		case ManifestName:
			b.manifest = f
		}
	}
	return b, nil
}

// inputs is the key material of the base: the release's soft labels by
// their address in the store and sha256.
func (b incrementalBase) inputs() map[string]string {
	if b.labels.Key == "" {
		return nil
	}
	return map[string]string{b.store.URL() + "/" + b.name + "/" + b.rel.Version + "/" + b.labels.Key: b.labels.SHA256}
}

// IncrementalKey is Key plus the release an incremental harvest starts
// from, so that a harvest made from one base is not reused for another.
func (h HarvestStage) IncrementalKey(ctx context.Context, r *recipes.Recipe) (Key, error) {
	k, err := h.Key(ctx, r)
	if err != nil || r.Task.Kind == "lm" {
		return k, err
	}
	b, err := findIncrementalBase(ctx, r)
	if err != nil {
		return Key{}, err
	}
	k.Config = struct {
		Harvest         any    `json:"harvest"`
		IncrementalBase string `json:"incremental_base"`
	}{k.Config, b.rel.Version}
	k.Inputs = b.inputs()
	return k, nil
}

// carried is the outcome of carryOver.
type carried struct {
	base    string                          // the base release's version; "" when none
	note    string                          // why nothing was carried over, if so
	rows    map[string][]datasets.SoftLabel // carried rows by example id
	carried int                             // how many
	rest    []distill.Example               // the examples to ask the teacher about
}

// carryOver finds the last published release and splits the examples into
// those whose soft labels it already holds (same id, same rendered prompt,
// same teacher settings; for gold labels, the same label) and the rest.
func carryOver(ctx context.Context, sc *StageContext, examples []distill.Example, prompt distill.PromptSpec) (carried, error) {
	r := sc.Recipe
	c := carried{rest: examples}
	b, err := findIncrementalBase(ctx, r)
	if err != nil {
		return c, err
	}
	// The key was made from the latest release when the run started; a
	// release published since then would not match the key.
	if want := b.inputs(); !maps.Equal(want, sc.Inputs) {
		return c, fmt.Errorf("--incremental: the latest release of %s in %s changed while the run started (now %q); run again", b.name, b.store.URL(), b.rel.Version)
	}
	c.base = b.rel.Version
	switch {
	case b.rel.Version == "":
		c.note = fmt.Sprintf("no published release of %s in %s yet", b.name, b.store.URL())
		return c, nil
	case b.labels.Key == "":
		c.note = fmt.Sprintf("release %s@%s has no %s (published before --incremental)", b.name, b.rel.Version, ReleaseSoftLabels)
		return c, nil
	case b.manifest.Key == "":
		c.note = fmt.Sprintf("release %s@%s has no %s to compare teacher settings with", b.name, b.rel.Version, ManifestName)
		return c, nil
	}

	dir := filepath.Join(sc.Dir, incrementalBaseDir)
	if err := os.RemoveAll(dir); err != nil {
		return c, err
	}
	defer os.RemoveAll(dir)
	rel := b.rel
	rel.Files = []store.Object{b.labels, b.manifest}
	if err := store.Download(ctx, b.store, rel, dir); err != nil {
		return c, fmt.Errorf("--incremental: %w", err)
	}
	if diff, err := teacherChanges(filepath.Join(dir, ManifestName), r); err != nil {
		return c, fmt.Errorf("--incremental: release %s@%s: %w", b.name, b.rel.Version, err)
	} else if diff != "" {
		c.note = fmt.Sprintf("the teacher settings changed since %s@%s (%s)", b.name, b.rel.Version, diff)
		return c, nil
	}
	rows, err := datasets.ReadSoftLabels(filepath.Join(dir, filepath.FromSlash(ReleaseSoftLabels)))
	if err != nil {
		return c, fmt.Errorf("--incremental: release %s@%s: %w", b.name, b.rel.Version, err)
	}
	byID := make(map[string][]datasets.SoftLabel, len(rows))
	for _, row := range rows {
		byID[row.ID] = append(byID[row.ID], row)
	}
	gold := r.Teacher.Kind == "labels"
	c.rows = map[string][]datasets.SoftLabel{}
	c.rest = nil
	for _, ex := range examples {
		text := prompt.Render(ex.Text)
		cands := byID[ex.ID]
		i := slices.IndexFunc(cands, func(row datasets.SoftLabel) bool {
			return row.Prompt == text && (!gold || row.Completion == ex.Label)
		})
		if i < 0 {
			c.rest = append(c.rest, ex)
			continue
		}
		row := cands[i]
		byID[ex.ID] = slices.Delete(cands, i, i+1) // a repeated id takes each row once
		row.Split = ex.Split                       // a changed split setting must not leak rows across splits
		c.rows[ex.ID] = append(c.rows[ex.ID], row)
		c.carried++
	}
	return c, nil
}

// teacherFields are the recipe keys, besides the rendered prompt, that
// shape the teacher's answers and their soft labels. Flow control, prices,
// the budget and the API mode do not.
var teacherFields = []string{
	"task.kind", "task.labels",
	"teacher.kind", "teacher.model", "teacher.base_url", "teacher.system_prompt", "teacher.few_shot",
	"teacher.temperature", "teacher.max_tokens", "teacher.top_logprobs",
}

// teacherChanges compares the teacher settings recorded in a release's run
// manifest with the recipe's, and describes the differences ("" if none).
// A value redacted in the manifest counts as changed.
func teacherChanges(manifestPath string, r *recipes.Recipe) (string, error) {
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return "", err
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("%s: %w", ManifestName, err)
	}
	cur, err := json.Marshal(r) // in memory only: secrets are never written
	if err != nil {
		return "", err
	}
	old, now := recipeFields(m.Recipe), recipeFields(cur)
	var diffs []string
	for _, f := range teacherFields {
		if old[f] != now[f] {
			diffs = append(diffs, fmt.Sprintf("%s %s -> %s", f, old[f], now[f]))
		}
	}
	return strings.Join(diffs, ", "), nil
}

// recipeFields returns teacherFields of a recipe's JSON, each as JSON.
func recipeFields(raw []byte) map[string]string {
	var tree map[string]any
	json.Unmarshal(raw, &tree)
	out := map[string]string{}
	for _, f := range teacherFields {
		var v any = tree
		for _, part := range strings.Split(f, ".") {
			obj, _ := v.(map[string]any)
			v = obj[part]
		}
		if s, ok := v.([]any); ok && len(s) == 0 {
			v = nil
		}
		enc, _ := json.Marshal(v)
		out[f] = string(enc)
	}
	return out
}

// mergeIncremental writes the stage's soft labels: the carried rows and the
// new answers (read from newPath), in the order of the examples.
func mergeIncremental(examples []distill.Example, c carried, newPath, out string) error {
	fresh, err := datasets.ReadSoftLabels(newPath)
	if err != nil {
		return err
	}
	byID := make(map[string][]datasets.SoftLabel, len(fresh))
	for _, row := range fresh {
		byID[row.ID] = append(byID[row.ID], row)
	}
	w, err := datasets.NewSoftLabelWriter(out, 0)
	if err != nil {
		return err
	}
	// Each example takes its carried row, else its new answer; an example
	// without either failed or was left unharvested (the summary counts it).
	for _, ex := range examples {
		for _, m := range []map[string][]datasets.SoftLabel{c.rows, byID} {
			if rows := m[ex.ID]; len(rows) > 0 {
				m[ex.ID] = rows[1:]
				if err := w.Write(rows[0]); err != nil {
					w.Abort()
					return err
				}
				break
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.Remove(newPath)
}

// IncrementalNote is the line `distillery run --incremental` prints about
// the harvest, e.g. "incremental: 12 new examples since version
// 20261127-081753-b69857 (4988 carried over)"; "" when the run's harvest
// was not incremental.
func IncrementalNote(m *Manifest) string {
	rec := m.Stage("harvest")
	if rec == nil || rec.Summary == nil {
		return ""
	}
	n, ok := rec.Summary["new_examples"]
	if !ok {
		return ""
	}
	base, _ := rec.Summary["incremental_base_version"].(string)
	carried := rec.Summary["carried_over"]
	if note, _ := rec.Summary["incremental_note"].(string); note != "" {
		return fmt.Sprintf("incremental: %s; harvested all %v examples", note, n)
	}
	return fmt.Sprintf("incremental: %v new examples since version %s (%v carried over)", n, base, carried)
}

// isFile reports whether p is a regular file.
func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
