package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/gomlx/compute"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/quantize"
	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/store"
)

// QuantizeReport is the quantize stage's summary file.
const QuantizeReport = "quantize.json"

// QuantizeStage quantizes the trained (merged) student: AWQ or RTN INT4 in
// the AutoAWQ GEMM layout, or INT8; `method: none` keeps it as trained.
type QuantizeStage struct{}

func (QuantizeStage) Name() string { return "quantize" }

func (QuantizeStage) Key(_ context.Context, r *recipes.Recipe) (Key, error) {
	return Key{Version: "1", Config: struct {
		Quantize  recipes.Quantize
		MaxSeqLen int
	}{r.Quantize, r.Student.MaxSeqLen}}, nil
}

// quantSummary is quantize.json.
type quantSummary struct {
	Method            string          `json:"method"`
	GroupSize         int             `json:"group_size"`
	CalibrationSeqs   int             `json:"calibration_sequences"`
	EvaluationSeqs    int             `json:"evaluation_sequences"`
	FP                quantize.PPL    `json:"fp_perplexity"`
	Quantized         quantize.PPL    `json:"quantized_perplexity"`
	PerplexityRise    float64         `json:"perplexity_increase"`
	Memory            quantize.Sizes  `json:"memory"`
	Disk              quantize.Sizes  `json:"disk"`
	ResidentBytes     int64           `json:"resident_bytes"`
	Result            json.RawMessage `json:"result"`
	QuantizeSeconds   float64         `json:"quantize_seconds"`
	ServedCheckpoint  string          `json:"served_checkpoint"`
	CalibrationSource string          `json:"calibration_source"`
}

func (QuantizeStage) Run(ctx context.Context, sc *StageContext) error {
	r := sc.Recipe
	q := r.Quantize
	if q.Method == "none" || r.Task.Kind == "lm" {
		sc.Summarize("skipped", "quantize.method none: the trained checkpoint is served as it is")
		return nil
	}
	b, err := model.NewBackend(r.Student.Backend)
	if err != nil {
		return Invalid(err)
	}
	fpDir := sc.UpstreamFile("train", ModelDir)
	fp, err := model.Load(fpDir, model.LoadOptions{Backend: b})
	if err != nil {
		return err
	}
	tok, err := model.LoadTokenizer(fpDir)
	if err != nil {
		return err
	}
	calib, held, err := calibrationSeqs(sc, tok, q.CalibSamples)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := quantize.Quantize(ctx, fp, calib, quantize.Options{Method: q.Method, GroupSize: q.GroupSize, ClipSearch: q.ClipSearch,
		ModulesToNotConvert: q.ModulesToNotConvert, Progress: func(done, total int) { sc.Progress(int64(done), int64(total), "steps") }})
	if err != nil {
		return err
	}
	secs := time.Now().Sub(start).Seconds()
	out := filepath.Join(sc.Dir, ModelDir)
	if err := res.Save(out); err != nil {
		return err
	}
	qm, err := quantize.Load(out, model.LoadOptions{Backend: b})
	if err != nil {
		return fmt.Errorf("quantize: reload %s: %w", out, err)
	}
	sum := quantSummary{Method: q.Method, GroupSize: q.GroupSize, CalibrationSeqs: len(calib), EvaluationSeqs: len(held),
		Memory: quantize.MemorySizes(qm), QuantizeSeconds: secs, ServedCheckpoint: ModelDir, CalibrationSource: "harvest train split"}
	if len(held) > 0 {
		if sum.FP, err = quantize.Perplexity(ctx, fp, held); err != nil {
			return err
		}
		if sum.Quantized, err = quantize.Perplexity(ctx, qm, held); err != nil {
			return err
		}
		sum.PerplexityRise = sum.Quantized.Perplexity - sum.FP.Perplexity
	}
	if sum.Disk, err = quantize.CheckpointSizes(out); err != nil {
		return err
	}
	sum.ResidentBytes = quantize.ResidentBytes()
	sum.Result, _ = json.Marshal(res)
	data, _ := json.MarshalIndent(sum, "", "  ")
	if err := store.WriteFileAtomic(filepath.Join(sc.Dir, QuantizeReport), data); err != nil {
		return err
	}
	sc.Summarize("method", q.Method)
	sc.Summarize("group_size", q.GroupSize)
	sc.Summarize("linear_bytes_ratio", sum.Memory.LinearRatio)
	sc.Summarize("weights_bytes", sum.Memory.TotalBytes)
	sc.Summarize("weights_16bit_bytes", sum.Memory.Total16Bytes)
	sc.Summarize("val_perplexity_fp", sum.FP.Perplexity)
	sc.Summarize("val_perplexity_quantized", sum.Quantized.Perplexity)
	sc.Summarize("quantize_seconds", secs)
	return nil
}

// calibrationSeqs are the first n harvested train rows and, disjoint from
// them, up to 64 val rows for perplexity: each the prompt in the student's
// chat format followed by the teacher's answer.
func calibrationSeqs(sc *StageContext, tok *model.Tokenizer, n int) (calib, held [][]int, err error) {
	r := sc.Recipe
	rows, err := datasets.ReadSoftLabels(sc.UpstreamFile("harvest", SoftLabelsFile))
	if err != nil {
		return nil, nil, err
	}
	o := distill.SequenceOptions{Tokenizer: tok, System: r.Teacher.SystemPrompt, MaxLen: r.Student.MaxSeqLen}
	for _, split := range []string{"train", "val"} {
		limit := n
		if split == "val" {
			limit = 64
		}
		seqs, _, err := distill.BuildSequences(splitRows(rows, split, limit), o)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range seqs {
			ids := make([]int, len(s.IDs))
			for i, id := range s.IDs {
				ids[i] = int(id)
			}
			if split == "train" {
				calib = append(calib, ids)
			} else {
				held = append(held, ids)
			}
		}
	}
	if len(calib) == 0 {
		return nil, nil, Invalid(fmt.Errorf("quantize: the harvest has no train rows to calibrate on"))
	}
	return calib, held, nil
}

// loadEvalModel loads a plain or quantized checkpoint.
func loadEvalModel(dir string, b compute.Backend) (*model.Model, error) {
	return quantize.Load(dir, model.LoadOptions{Backend: b})
}
