package model

import (
	"context"
	"math"
	"testing"
)

func tinyConfig() *Config {
	c := &Config{ModelType: "llama", HiddenSize: 32, IntermediateSize: 64, NumHiddenLayers: 2, NumAttentionHeads: 4,
		NumKeyValueHeads: 2, HeadDim: 8, RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 128, VocabSize: 50, HiddenAct: "silu"}
	return c
}

func TestForwardRuns(t *testing.T) {
	cfg := tinyConfig()
	m, err := New(cfg, RandomWeights(cfg, 1, 0.2), WeightShapes(cfg), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(DescribeBackend(m.Backend))
	out, err := m.Logits([][]int{{1, 2, 3, 4}, {5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	// Causality: the prefix's logits do not depend on later tokens.
	out2, err := m.Logits([][]int{{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	for pos := range 2 {
		for i := range out2[0][pos] {
			if d := math.Abs(float64(out2[0][pos][i] - out[0][pos][i])); d > 1e-5 {
				t.Fatalf("pos %d vocab %d: %v vs %v", pos, i, out2[0][pos][i], out[0][pos][i])
			}
		}
	}
	t.Log(out[0][3][:5])
}

// The KV-cached generation must pick the same tokens, with the same
// log-probabilities, as argmax over full forward passes.
func TestGenerateMatchesFullForward(t *testing.T) {
	cfg := tinyConfig()
	m, err := New(cfg, RandomWeights(cfg, 2, 0.3), WeightShapes(cfg), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	prompts := [][]int{{1, 2, 3, 4, 5}, {7, 8}, {9}}
	seqs, err := m.Generate(context.Background(), prompts, GenerateOptions{MaxNewTokens: 12, TopLogprobs: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		ids := append([]int{}, p...)
		for step, st := range seqs[i].Steps {
			full, err := m.Logits([][]int{ids})
			if err != nil {
				t.Fatal(err)
			}
			lp := LogProbs(full[0][len(ids)-1])
			want := argmax(lp)
			if st.ID != want || math.Abs(float64(st.Logprob-lp[want])) > 1e-4 {
				t.Fatalf("seq %d step %d: cached %d (%v), full %d (%v)", i, step, st.ID, st.Logprob, want, lp[want])
			}
			if len(st.Top) != 3 || st.Top[0].ID != want {
				t.Fatalf("top: %+v", st.Top)
			}
			ids = append(ids, st.ID)
		}
		if seqs[i].FinishReason != "length" || len(seqs[i].Steps) != 12 {
			t.Errorf("seq %d: %s after %d", i, seqs[i].FinishReason, len(seqs[i].Steps))
		}
	}
}
