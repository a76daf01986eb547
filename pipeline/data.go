package pipeline

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/recipes"
)

// ExamplesFile is the data stage's output: the canonical Parquet dataset.
const ExamplesFile = "examples.parquet"

// ImportOptions are the recipe's data settings for datasets.Import.
func ImportOptions(r *recipes.Recipe, out string) datasets.ImportOptions {
	opts := datasets.ImportOptions{
		TextField:   r.Data.TextField,
		LabelField:  r.Data.LabelField,
		IDField:     r.Data.IDField,
		Fractions:   datasets.Fractions{Train: r.Data.Split.Train, Val: r.Data.Split.Val, Test: r.Data.Split.Test},
		Seed:        r.Data.Split.Seed,
		Dedupe:      r.Data.Dedupe,
		SkipInvalid: r.Data.SkipInvalid,
		Out:         out,
	}
	for _, s := range r.Data.Source {
		opts.Sources = append(opts.Sources, datasets.Source{Path: r.Path(s.Path), Format: s.Format, Split: s.Split})
	}
	return opts
}

// DataStage imports the recipe's data sources into one canonical Parquet
// file with train/val/test splits.
type DataStage struct{}

func (DataStage) Name() string { return "data" }

func (DataStage) Key(ctx context.Context, r *recipes.Recipe) (Key, error) {
	inputs := map[string]string{}
	for i, s := range r.Data.Source {
		p := r.Path(s.Path)
		sum, err := datasets.SHA256File(p)
		if err != nil {
			return Key{}, Invalid(fmt.Errorf("data.source[%d]: %w", i, err))
		}
		inputs[p] = sum
	}
	return Key{Version: "1", Config: r.Section("data"), Inputs: inputs}, nil
}

func (DataStage) Run(ctx context.Context, sc *StageContext) error {
	r := sc.Recipe
	opts := ImportOptions(r, filepath.Join(sc.Dir, ExamplesFile))
	opts.Progress = func(rows int64) { sc.Progress(rows, 0, "rows") }
	res, err := datasets.Import(ctx, opts)
	if err != nil {
		var re datasets.RowErrors
		var one datasets.RowError
		if errors.As(err, &re) || errors.As(err, &one) {
			return Invalid(err)
		}
		return err
	}
	for _, w := range res.Warnings {
		sc.Log.Warn(w)
	}
	if len(r.Task.Labels) > 0 && r.Data.LabelField != "" {
		for label := range res.ByLabel {
			if !slices.Contains(r.Task.Labels, label) {
				return Invalid(fmt.Errorf("data: label %q in %s is not in task.labels %v", label, r.Data.LabelField, r.Task.Labels))
			}
		}
	}
	sc.Summarize("rows", res.Rows)
	sc.Summarize("duplicates", res.Duplicates)
	sc.Summarize("invalid", res.Invalid)
	sc.Summarize("by_split", res.BySplit)
	if len(res.ByLabel) > 0 {
		sc.Summarize("by_label", res.ByLabel)
	}
	return nil
}
