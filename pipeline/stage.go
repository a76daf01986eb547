// Package pipeline runs a recipe's stages (data, harvest, train, quantize,
// eval, publish) in a run folder, with caching, resume and progress.
package pipeline

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/distillery/distillery/recipes"
)

// Order is the fixed order of the stages. Each stage may use the outputs of
// every stage before it.
var Order = []string{"data", "harvest", "train", "quantize", "eval", "publish"}

// Stage is one step of a run. Implementations live next to the package
// that does the work and are registered in Stages.
type Stage interface {
	// Name is one of Order.
	Name() string
	// Key says what, besides upstream outputs, determines the stage's
	// result: typically its recipe section and the hashes of files it
	// reads. Two runs with equal keys may share the result.
	Key(ctx context.Context, r *recipes.Recipe) (Key, error)
	// Run does the work, writing outputs into sc.Dir. It must honour ctx and
	// may find partial work of an interrupted earlier attempt in sc.Dir.
	Run(ctx context.Context, sc *StageContext) error
}

// IncrementalKeyer is implemented by a stage whose key also depends on
// --incremental (Options.Incremental): when it is set, the engine calls
// IncrementalKey instead of Key.
type IncrementalKeyer interface {
	IncrementalKey(ctx context.Context, r *recipes.Recipe) (Key, error)
}

// Key is a stage's cache key material.
type Key struct {
	// Version changes when the stage's code changes its outputs.
	Version string
	// Config is JSON-encodable settings, usually the recipe section.
	Config any
	// Inputs maps files read from outside the run folder to their sha256.
	Inputs map[string]string
}

// StageContext is what a running stage sees.
type StageContext struct {
	Recipe *recipes.Recipe
	RunID  string
	RunDir string
	// Dir is the stage's own output folder (RunDir/<name>).
	Dir string
	// Upstream holds the records of the stages before this one.
	Upstream map[string]*StageRecord
	Log      *slog.Logger
	// Incremental is Options.Incremental: harvest only the examples that
	// are new since the last published release.
	Incremental bool
	// Inputs are the outside files the stage's key covered (Key.Inputs).
	Inputs map[string]string

	summary  map[string]any
	progress func(done, total int64, unit string, fields map[string]any)
}

// Progress reports how far the stage is; total may be 0 when unknown.
func (sc *StageContext) Progress(done, total int64, unit string) {
	sc.ProgressFields(done, total, unit, nil)
}

// ProgressFields is Progress with figures shown beside the bar and in the
// JSON event (loss, learning rate).
func (sc *StageContext) ProgressFields(done, total int64, unit string, fields map[string]any) {
	if sc.progress != nil {
		sc.progress(done, total, unit, fields)
	}
}

// Summarize records a figure shown in the manifest and by `runs show`.
func (sc *StageContext) Summarize(key string, value any) {
	if sc.summary == nil {
		sc.summary = map[string]any{}
	}
	sc.summary[key] = value
}

// SummarizeAll records every field of a JSON-encodable struct, by its JSON
// name.
func (sc *StageContext) SummarizeAll(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return
	}
	for k, x := range m {
		sc.Summarize(k, x)
	}
}

// UpstreamFile returns the absolute path of an output of an earlier stage.
func (sc *StageContext) UpstreamFile(stage, name string) string {
	return sc.RunDir + "/" + stage + "/" + name
}
