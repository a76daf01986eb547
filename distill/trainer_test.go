//go:build !race

// GoMLX graphs run too slowly under the race detector (and compute trips checkptr);
// make test runs these without -race.

package distill

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distillery/distillery/lora"
	"github.com/distillery/distillery/model"
)

func tinyConfig() *model.Config {
	return &model.Config{ModelType: "llama", HiddenSize: 32, IntermediateSize: 64, NumHiddenLayers: 1,
		NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDim: 16, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositionEmbeddings: 64, VocabSize: 64, HiddenAct: "silu", TieWordEmbeddings: true}
}

// toySequences is a learnable classification task: the label token (3 or
// 4) says whether the last input token is below 25; inputs vary in length.
// The teacher's soft label puts 0.9 on the right answer.
func toySequences(n int, seed uint64) []Sequence { return toySequencesLen(n, seed, 0) }

// toySequencesLen makes inputs of fixedLen tokens, or 4 to 13 when 0.
func toySequencesLen(n int, seed uint64, fixedLen int) []Sequence {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]Sequence, n)
	for i := range out {
		ln := 4 + rng.IntN(10)
		if fixedLen > 0 {
			ln = fixedLen
		}
		ids := []int32{1}
		for range ln {
			ids = append(ids, int32(10+rng.IntN(30)))
		}
		label := 0
		if ids[len(ids)-1] >= 25 {
			label = 1
		}
		answer := len(ids) - 1 // the deciding token predicts the label
		ids = append(ids, int32(3+label), 5)
		loss := make([]float32, len(ids))
		loss[answer], loss[answer+1] = 1, 1
		out[i] = Sequence{ID: string(rune('a' + i%26)), IDs: ids, Loss: loss, Label: label, Answer: answer,
			Soft: []SoftTarget{{Pos: answer, IDs: []int32{int32(3 + label), int32(4 - label)}, Logp: []float32{float32(math.Log(0.9)), float32(math.Log(0.08))}}}}
	}
	return out
}

func toyOptions(t testing.TB, tr Trainable, base map[string][]float32, dir string) TrainOptions {
	return TrainOptions{Config: tinyConfig(), Base: base, Trainable: tr, Train: toySequences(192, 1), Val: toySequences(48, 2),
		K: 2, Loss: KDSpec{Kind: KindForwardKL, Temperature: 2, Alpha: 0.7, Beta: 0.5},
		Epochs: 2, LR: 1e-2, WarmupRatio: 0.1, WeightDecay: 0.01, MaxGradNorm: 1, BatchSize: 16, GradAccum: 1, Seed: 3,
		Bucketing: true, EvalEvery: 8, LabelIDs: []int32{3, 4}, Dir: dir}
}

func readMetrics(t testing.TB, dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestTrainLearnsFullAndLoRA(t *testing.T) {
	cfg := tinyConfig()
	base := model.RandomWeights(cfg, 1, 0.05)
	ad, err := lora.New(lora.Config{Rank: 4, Alpha: 8, Dropout: 0.05, TargetModules: []string{"all-linear"}, ModulesToSave: []string{"lm_head"}}, cfg, 5, base)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tr     Trainable
		frozen map[string][]float32
	}{
		{"full", NewFullWeights(base, model.WeightShapes(cfg)), nil},
		{"lora", ad, base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := toyOptions(t, tc.tr, tc.frozen, t.TempDir())
			o.Dropout, o.Epochs, o.EvalEvery = tc.name == "lora", 8, 24
			if tc.name == "lora" {
				o.Epochs = 16 // adapters on a random base learn slower
			}
			res, err := Train(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if !(res.FinalLoss < 0.6*res.FirstLoss) {
				t.Errorf("loss %g -> %g: did not fall", res.FirstLoss, res.FinalLoss)
			}
			if !(res.ValAccuracy > res.FirstValAcc+0.2) || res.ValAccuracy < 0.85 {
				t.Errorf("val accuracy %g -> %g", res.FirstValAcc, res.ValAccuracy)
			}
			if res.ValLoss >= res.FirstValLoss {
				t.Errorf("val loss %g -> %g", res.FirstValLoss, res.ValLoss)
			}
			// AdamW keeps two f32 moments per trainable value, none for frozen weights.
			if want := 8 * res.TrainableParams; res.OptimizerBytes != want {
				t.Errorf("optimizer state %d bytes, want %d", res.OptimizerBytes, want)
			}
			if m := readMetrics(t, o.Dir); !strings.Contains(m, `"kd_loss"`) || !strings.Contains(m, `"val_accuracy"`) {
				t.Errorf("metrics.jsonl lacks KD loss or val accuracy:\n%.300s", m)
			}
			if _, err := os.Stat(filepath.Join(o.Dir, CheckpointDir, "state.json")); err != nil {
				t.Error("no checkpoint written")
			}
		})
	}
}

// The same seed gives the same weights; an interrupted run resumed from its
// checkpoint ends exactly where an uninterrupted one does.
func TestResumeMatchesUninterrupted(t *testing.T) {
	cfg := tinyConfig()
	base := model.RandomWeights(cfg, 1, 0.05)
	newAdapter := func() *lora.Adapter {
		a, err := lora.New(lora.Config{Rank: 4, Alpha: 8, Dropout: 0.1, TargetModules: []string{"q_proj", "v_proj", "down_proj"}}, cfg, 5, base)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	run := func(dir string, stopAt int) (TrainResult, map[string][]float32, error) {
		a := newAdapter()
		o := toyOptions(t, a, base, dir)
		o.Dropout, o.SaveEvery, o.GradAccum = true, 4, 2
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if stopAt > 0 {
			o.Progress = func(p TrainProgress) {
				if p.Step == stopAt {
					cancel()
				}
			}
		}
		res, err := Train(ctx, o)
		return res, a.Values(), err
	}
	full, want, err := run(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	again, same, err := run(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if again.FinalLoss != full.FinalLoss || !equalWeights(same, want) {
		t.Errorf("same seed, different result: loss %g vs %g", again.FinalLoss, full.FinalLoss)
	}
	dir := t.TempDir()
	if _, _, err := run(dir, 7); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	res, got, err := run(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom != 7 {
		t.Errorf("resumed from step %d, want 7 (the interrupt saves a checkpoint)", res.ResumedFrom)
	}
	if res.FinalLoss != full.FinalLoss || res.ValLoss != full.ValLoss || !equalWeights(got, want) {
		t.Errorf("resumed run ends at loss %g val %g, uninterrupted %g val %g", res.FinalLoss, res.ValLoss, full.FinalLoss, full.ValLoss)
	}
	if m := readMetrics(t, dir); strings.Count(m, `"loss"`) != full.Steps {
		t.Errorf("metrics.jsonl has %d step lines, want %d", strings.Count(m, `"loss"`), full.Steps)
	}
}

func equalWeights(a, b map[string][]float32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// Early stopping keeps the best evaluated weights: with val labels that
// contradict training, val loss rises and the run stops.
func TestEarlyStoppingKeepsBest(t *testing.T) {
	cfg := tinyConfig()
	base := model.RandomWeights(cfg, 1, 0.05)
	o := toyOptions(t, NewFullWeights(base, model.WeightShapes(cfg)), nil, t.TempDir())
	for i := range o.Val {
		s := &o.Val[i]
		s.IDs[s.Answer+1] = 7 - s.IDs[s.Answer+1] // 3 <-> 4
		s.Label = 1 - s.Label
	}
	o.EvalEvery, o.Patience, o.Epochs = 2, 2, 4
	res, err := Train(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.EarlyStopped || res.Steps >= o.totalSteps() || res.BestStep >= res.Steps {
		t.Errorf("no early stop: %+v", res)
	}
	if res.ValLoss > res.FirstValLoss+1e-9 && res.BestStep > 0 {
		t.Errorf("kept val loss %g is worse than the start %g", res.ValLoss, res.FirstValLoss)
	}
}

// Two micro-batches of 8 accumulate to the same update as one batch of 16
// when every row has the same number of loss tokens.
func TestGradAccumMatchesBigBatch(t *testing.T) {
	cfg := tinyConfig()
	base := model.RandomWeights(cfg, 1, 0.05)
	seqs := toySequencesLen(16, 9, 8) // same length everywhere: no padding differences
	step := func(batch, accum int) map[string][]float32 {
		f := NewFullWeights(base, model.WeightShapes(cfg))
		o := TrainOptions{Config: cfg, Trainable: f, Train: seqs, K: 2, Loss: KDSpec{Kind: KindCE, Temperature: 1},
			MaxSteps: 1, LR: 1e-2, MaxGradNorm: 0, BatchSize: batch, GradAccum: accum, Seed: 1}
		if _, err := Train(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		return f.Values()
	}
	a, b := step(16, 1), step(8, 2)
	if worst := maxWeightDiff(a, b); worst > 1e-5 {
		t.Errorf("accumulated update differs by %g", worst)
	}
}

func TestSchedule(t *testing.T) {
	tests := []struct {
		step, total, warm int
		want              float64
	}{
		{0, 100, 10, 0.1}, {9, 100, 10, 1}, {10, 100, 10, 1}, {55, 100, 10, 0.5}, {100, 100, 10, 0}, {0, 10, 0, 1}, {5, 5, 5, 1},
	}
	for _, tc := range tests {
		if got := Schedule(tc.step, tc.total, tc.warm, 1); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Schedule(%d, %d, %d) = %g, want %g", tc.step, tc.total, tc.warm, got, tc.want)
		}
	}
}

func TestPadLen(t *testing.T) {
	for _, tc := range [][2]int{{1, 16}, {16, 16}, {17, 24}, {24, 24}, {25, 32}, {33, 48}, {100, 128}, {129, 192}, {193, 256}} {
		if got := model.PadLen(tc[0]); got != tc[1] {
			t.Errorf("PadLen(%d) = %d, want %d", tc[0], got, tc[1])
		}
	}
}

// A checkpoint written under other settings is refused, not silently mixed in.
func TestCheckpointOfOtherSettingsRefused(t *testing.T) {
	cfg := tinyConfig()
	base := model.RandomWeights(cfg, 1, 0.05)
	dir := t.TempDir()
	o := toyOptions(t, NewFullWeights(base, model.WeightShapes(cfg)), nil, dir)
	o.MaxSteps, o.EvalEvery = 2, 0
	if _, err := Train(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	o.Trainable = NewFullWeights(base, model.WeightShapes(cfg))
	o.LR = 5e-3
	if _, err := Train(context.Background(), o); err == nil || !strings.Contains(err.Error(), "other training settings") {
		t.Errorf("got %v", err)
	}
}

// The compacted layout (the head only at the answer's positions) trains as
// the dense one does: same losses, same weights, within float tolerance.
func TestCompactTargetsMatchDense(t *testing.T) {
	cfg := tinyConfig()
	base := model.RandomWeights(cfg, 1, 0.05)
	run := func(compact bool) (map[string][]float32, TrainResult) {
		compactTargets = compact
		defer func() { compactTargets = true }()
		f := NewFullWeights(base, model.WeightShapes(cfg))
		o := toyOptions(t, f, nil, "")
		o.Train, o.Val = toySequencesLen(64, 9, 30), toySequencesLen(32, 10, 0)
		o.Epochs, o.EvalEvery = 1, 2
		sum, err := Train(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		return f.Values(), sum
	}
	a, sa := run(true)
	b, sb := run(false)
	if worst := maxWeightDiff(a, b); worst > 1e-5 {
		t.Errorf("weights differ by %g", worst)
	}
	if math.Abs(sa.FinalLoss-sb.FinalLoss) > 1e-5 || math.Abs(sa.ValLoss-sb.ValLoss) > 1e-5 || sa.ValAccuracy != sb.ValAccuracy || sa.Steps != sb.Steps {
		t.Errorf("compact: %+v\ndense: %+v", sa, sb)
	}
}

// maxWeightDiff is the largest absolute difference between two weight sets.
func maxWeightDiff(a, b map[string][]float32) float64 {
	var worst float64
	for k, v := range a {
		for i := range v {
			worst = math.Max(worst, math.Abs(float64(v[i]-b[k][i])))
		}
	}
	return worst
}
