//go:build !race

package distill

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/distillery/distillery/model"
)

// BenchmarkTrainStep times LoRA-free full training steps of the quickstart
// student base on 16 reviews of up to 128 tokens, with the head run only at
// the answer's positions (compact) and at every position (dense):
//
//	go test ./distill -run '^$' -bench TrainStep -benchtime 6x
func BenchmarkTrainStep(b *testing.B) {
	dir := filepath.Join("..", "models", "fine-foods-student-base")
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := model.LoadTokenizer(dir)
	if err != nil {
		b.Fatal(err)
	}
	labels := []string{"great", "other"}
	ids, err := LabelTokens(tok, labels)
	if err != nil {
		b.Fatal(err)
	}
	seqs, _, err := BuildSequences(quickstartRows(b, "train.jsonl", 0, 160), SequenceOptions{Tokenizer: tok, MaxLen: 128, Labels: labels})
	if err != nil {
		b.Fatal(err)
	}
	w := m.HostWeights()
	for _, bc := range []struct {
		name    string
		compact bool
	}{{"compact", true}, {"dense", false}} {
		b.Run(bc.name, func(b *testing.B) {
			compactTargets = bc.compact
			defer func() { compactTargets = true }()
			o := TrainOptions{Config: m.Config, Trainable: NewFullWeights(w, model.WeightShapes(m.Config)), Train: seqs,
				K: 2, Loss: KDSpec{Kind: KindCE, Temperature: 1}, MaxSteps: 1, LR: 1e-3, BatchSize: 16, GradAccum: 1, Seed: 1, LabelIDs: ids}
			if _, err := Train(context.Background(), o); err != nil { // compiles
				b.Fatal(err)
			}
			o.MaxSteps = b.N
			b.ResetTimer()
			res, err := Train(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.TokensPerSecond, "tokens/s")
		})
	}
}
