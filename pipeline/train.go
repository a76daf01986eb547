package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/lora"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/store"
)

// Outputs of the train stage.
const (
	ModelDir    = "model"   // the trained (merged) HF checkpoint with its tokenizer
	AdapterDir  = "adapter" // PEFT adapter, when LoRA is on
	TrainReport = "train.json"
	LossPlot    = "loss.png"
)

// TrainStage trains the student on the harvested answers (or, for task.kind
// lm, pretrains it on the raw texts): LoRA adapters, or all weights with
// `lora: none`.
type TrainStage struct{}

func (TrainStage) Name() string { return "train" }

func (TrainStage) Key(_ context.Context, r *recipes.Recipe) (Key, error) {
	inputs := map[string]string{}
	dirs := []string{r.Path(r.Student.Base)}
	if r.Student.Tokenizer != "" {
		dirs = append(dirs, r.Path(r.Student.Tokenizer))
	}
	for _, d := range dirs {
		if err := hashModelFiles(d, inputs); err != nil {
			return Key{}, Invalid(fmt.Errorf("student: %w", err))
		}
	}
	st := r.Student
	st.Backend = ""
	return Key{Version: "1", Config: struct {
		Task    recipes.Task
		Student recipes.Student
		LoRA    recipes.LoRA
		Train   recipes.Train
		Kind    string
		System  string
	}{r.Task, st, r.LoRA, r.Train, r.Teacher.Kind, r.Teacher.SystemPrompt}, Inputs: inputs}, nil
}

// hashModelFiles adds the sha256 of a checkpoint's or tokenizer's files.
func hashModelFiles(dir string, into map[string]string) error {
	if fi, err := os.Stat(dir); err != nil {
		return err
	} else if !fi.IsDir() {
		sum, err := datasets.SHA256File(dir)
		into[dir] = sum
		return err
	}
	found := false
	for _, pat := range []string{"config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"} {
		files, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, f := range files {
			sum, err := datasets.SHA256File(f)
			if err != nil {
				return err
			}
			into[f], found = sum, true
		}
	}
	if !found {
		return fmt.Errorf("%s holds no checkpoint or tokenizer files", dir)
	}
	return nil
}

func (TrainStage) Run(ctx context.Context, sc *StageContext) error {
	r := sc.Recipe
	b, err := model.NewBackend(r.Student.Backend)
	if err != nil {
		return Invalid(fmt.Errorf("student.backend: %w", err))
	}
	baseDir := r.Path(r.Student.Base)
	base, err := model.Load(baseDir, model.LoadOptions{Backend: b})
	if err != nil {
		return Invalid(fmt.Errorf("student.base: %w", err))
	}
	tokDir := baseDir
	if r.Student.Tokenizer != "" {
		tokDir = r.Path(r.Student.Tokenizer)
	}
	tok, err := model.LoadTokenizer(tokDir)
	if err != nil {
		return Invalid(fmt.Errorf("student tokenizer: %w", err))
	}
	if tok.VocabSize() > base.Config.VocabSize {
		return Invalid(fmt.Errorf("student tokenizer has %d tokens but the model's vocab_size is %d", tok.VocabSize(), base.Config.VocabSize))
	}
	d, err := trainData(sc, tok)
	if err != nil {
		return err
	}
	host := base.HostWeights()
	shapes := model.WeightShapes(base.Config)
	var tr distill.Trainable
	frozen := host
	var adapter *lora.Adapter
	if r.LoRA.Enabled {
		adapter, err = lora.New(lora.Config{Rank: r.LoRA.Rank, Alpha: r.LoRA.Alpha, Dropout: r.LoRA.Dropout,
			TargetModules: r.LoRA.TargetModules, RSLoRA: r.LoRA.RSLoRA, ModulesToSave: r.LoRA.ModulesToSave},
			base.Config, uint64(r.Train.Seed), host)
		if err != nil {
			return Invalid(fmt.Errorf("lora: %w", err))
		}
		tr = adapter
	} else {
		tr, frozen = distill.NewFullWeights(host, shapes), nil
	}
	trainable, total := countTrainable(tr, shapes, adapter)
	sc.Log.Info("training", "sequences", len(d.train), "val", len(d.val), "loss", d.spec.Kind,
		"trainable_params", trainable, "trainable_share", fmt.Sprintf("%.4f%%", 100*float64(trainable)/float64(total)),
		"truncated", d.stats.Truncated)
	t := r.Train
	res, err := distill.Train(ctx, distill.TrainOptions{
		Config: base.Config, Backend: b, Base: frozen, Trainable: tr, Train: d.train, Val: d.val, K: d.k, Loss: d.spec,
		Epochs: t.Epochs, MaxSteps: t.MaxSteps, LR: t.LearningRate, WarmupRatio: t.WarmupRatio, WeightDecay: t.WeightDecay,
		MaxGradNorm: t.MaxGradNorm, BatchSize: t.BatchSize, GradAccum: t.GradAccum, Seed: uint64(t.Seed),
		Dropout: r.LoRA.Enabled && r.LoRA.Dropout > 0, Bucketing: r.Task.Kind != "lm",
		EvalEvery: t.EvalEvery, Patience: t.EarlyStopPatience, SaveEvery: t.SaveEvery, LabelIDs: d.labelIDs,
		Dir: sc.Dir, Log: sc.Log,
		Progress: func(p distill.TrainProgress) {
			sc.ProgressFields(int64(p.Step), int64(p.Steps), "steps", map[string]any{
				"loss": round4(p.Loss), "lr": fmt.Sprintf("%.2e", p.LR), "tok/s": int(p.TokensPerSec)})
		},
	})
	if err != nil {
		return err
	}
	_, peak := model.ProcessMemory()
	sc.SummarizeAll(res)
	sc.Summarize("peak_rss_bytes", peak)
	sc.Summarize("trainable_share", float64(trainable)/float64(total))
	sc.Summarize("loss_kind", d.spec.Kind)
	if err := writeTrained(sc, baseDir, tokDir, base.Config, host, tr, adapter); err != nil {
		return err
	}
	if err := writeLossPlot(sc.Dir); err != nil {
		return err
	}
	rep, _ := json.MarshalIndent(struct {
		distill.TrainResult
		TrainableShare float64               `json:"trainable_share"`
		PeakRSSBytes   int64                 `json:"peak_rss_bytes"`
		Loss           distill.KDSpec        `json:"loss"`
		Sequences      distill.SequenceStats `json:"sequences"`
	}{res, float64(trainable) / float64(total), peak, d.spec, d.stats}, "", "  ")
	if err := store.WriteFileAtomic(filepath.Join(sc.Dir, TrainReport), rep); err != nil {
		return err
	}
	return distill.RemoveCheckpoint(sc.Dir)
}

func round4(x float64) float64 { return float64(int64(x*1e4+0.5)) / 1e4 }

func countTrainable(tr distill.Trainable, shapes map[string][]int, a *lora.Adapter) (trainable, total int64) {
	if a != nil {
		return a.Count(shapes)
	}
	for _, s := range tr.Shapes() {
		n := int64(1)
		for _, d := range s {
			n *= int64(d)
		}
		trainable += n
	}
	return trainable, trainable
}

// writeTrained writes the merged checkpoint (in the base's dtype, with the
// tokenizer files) and, with LoRA, the PEFT adapter.
func writeTrained(sc *StageContext, baseDir, tokDir string, cfg *model.Config, host map[string][]float32, tr distill.Trainable, a *lora.Adapter) error {
	dtype := checkpointDType(baseDir)
	out := filepath.Join(sc.Dir, ModelDir)
	weights, mc := tr.Values(), cfg
	if a != nil {
		if err := a.Save(filepath.Join(sc.Dir, AdapterDir), baseDir); err != nil {
			return err
		}
		merged, err := a.Merge(host)
		if err != nil {
			return err
		}
		weights, mc = merged, a.MergedConfig()
	}
	if err := model.SaveCheckpoint(out, mc, weights, dtype, 0); err != nil {
		return err
	}
	return copyTokenizer(tokDir, out)
}

// checkpointDType is the dtype of a checkpoint's embedding table.
func checkpointDType(dir string) model.DType {
	w, err := model.OpenWeights(dir)
	if err != nil {
		return model.F32
	}
	defer w.Close()
	if info, ok := w.Info("model.embed_tokens.weight"); ok {
		return info.DType
	}
	return model.F32
}

// copyTokenizer copies the tokenizer files next to a checkpoint.
func copyTokenizer(from, to string) error {
	if fi, err := os.Stat(from); err == nil && !fi.IsDir() {
		from = filepath.Dir(from)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"} {
		data, err := os.ReadFile(filepath.Join(from, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if err := store.WriteFileAtomic(filepath.Join(to, name), data); err != nil {
			return err
		}
	}
	return nil
}
