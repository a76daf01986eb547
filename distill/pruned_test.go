//go:build !race

package distill

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/model"
)

// quickstartRows reads n labelled reviews of a Fine Foods file as the
// quickstart prompts them (gold labels as the answers).
func quickstartRows(t testing.TB, file string, skip, n int) []datasets.SoftLabel {
	f, err := os.Open(filepath.Join("..", "data", "fine-foods", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec := PromptSpec{Template: "{instruction}\n\nReview: {text}\nAnswer:", Instruction: "Does this review give the product five stars? Answer great or other."}
	var rows []datasets.SoftLabel
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for i := 0; sc.Scan() && len(rows) < n; i++ {
		if i < skip {
			continue
		}
		var r struct{ ID, Text, Label string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, datasets.SoftLabel{ID: r.ID, Prompt: spec.Render(r.Text), Completion: r.Label, Label: r.Label})
	}
	return rows
}

// TestPrunedBeatsRandom: the student base `make teacher` prunes from the
// teacher loads, runs, and after the same short training on the gold
// labels ends with a lower val loss than a randomly initialised model of
// the same shape.
func TestPrunedBeatsRandom(t *testing.T) {
	dir := filepath.Join("..", "models", "fine-foods-student-base")
	pruned, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatalf("the committed student base (make teacher): %v", err)
	}
	tok, err := model.LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	labels := []string{"great", "other"}
	labelIDs, err := LabelTokens(tok, labels)
	if err != nil {
		t.Fatal(err)
	}
	o := SequenceOptions{Tokenizer: tok, MaxLen: 64, Labels: labels}
	train, _, err := BuildSequences(quickstartRows(t, "train.jsonl", 0, 240), o)
	if err != nil {
		t.Fatal(err)
	}
	val, _, err := BuildSequences(quickstartRows(t, "train.jsonl", 3600, 96), o)
	if err != nil {
		t.Fatal(err)
	}
	shapes := model.WeightShapes(pruned.Config)
	run := func(w map[string][]float32) TrainResult {
		res, err := Train(context.Background(), TrainOptions{Config: pruned.Config, Trainable: NewFullWeights(w, shapes),
			Train: train, Val: val, K: 2, Loss: KDSpec{Kind: KindCE, Temperature: 1}, MaxSteps: 15, LR: 1e-3, WarmupRatio: 0.1,
			MaxGradNorm: 1, BatchSize: 16, GradAccum: 1, Seed: 1, Bucketing: true, LabelIDs: labelIDs})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	p := run(pruned.HostWeights())
	r := run(model.RandomWeights(pruned.Config, 1, 0.02))
	t.Logf("pruned: val loss %.4f -> %.4f, accuracy %.3f -> %.3f", p.FirstValLoss, p.ValLoss, p.FirstValAcc, p.ValAccuracy)
	t.Logf("random: val loss %.4f -> %.4f, accuracy %.3f -> %.3f", r.FirstValLoss, r.ValLoss, r.FirstValAcc, r.ValAccuracy)
	if !(p.ValLoss < r.ValLoss) {
		t.Errorf("after the same 15 steps the pruned base's val loss %.4f is not below the random model's %.4f", p.ValLoss, r.ValLoss)
	}
}
