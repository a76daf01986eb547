package model

import (
	"fmt"
	"testing"
)

// TestMeanHidden checks MeanHidden against Forward's own logits: the head
// is linear, so the mean of a sequence's logits is the mean hidden state
// times the head's weight (vocab > hidden, so this pins the vector down),
// for an untied and a tied model. Batching and padding change nothing.
func TestMeanHidden(t *testing.T) {
	for _, tied := range []bool{false, true} {
		t.Run(fmt.Sprintf("tied=%v", tied), func(t *testing.T) {
			cfg := tinyConfig()
			cfg.TieWordEmbeddings = tied
			host := RandomWeights(cfg, 5, 0.3)
			m, err := New(cfg, host, WeightShapes(cfg), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			head := host["lm_head.weight"]
			if tied {
				head = host["model.embed_tokens.weight"]
			}
			seqs := [][]int{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {7, 8}, {9}}
			hid, err := m.MeanHidden(seqs)
			if err != nil {
				t.Fatal(err)
			}
			d, v := cfg.HiddenSize, cfg.VocabSize
			for i, s := range seqs {
				if len(hid[i]) != d {
					t.Fatalf("seq %d: %d floats, want %d", i, len(hid[i]), d)
				}
				logits, err := m.Logits([][]int{s})
				if err != nil {
					t.Fatal(err)
				}
				want := make([]float32, v)
				for _, row := range logits[0] {
					for k, x := range row {
						want[k] += x / float32(len(s))
					}
				}
				got := make([]float32, v)
				for k := range v {
					var dot float64
					for j := range d {
						dot += float64(hid[i][j]) * float64(head[k*d+j])
					}
					got[k] = float32(dot)
				}
				if e := RelativeError(got, want); e > 1e-4 {
					t.Errorf("seq %d: mean hidden · head differs from the mean logits by %g", i, e)
				}
				alone, err := m.MeanHidden([][]int{s})
				if err != nil {
					t.Fatal(err)
				}
				if e := RelativeError(alone[0], hid[i]); e > 1e-5 {
					t.Errorf("seq %d: alone vs in a padded batch differ by %g", i, e)
				}
			}
		})
	}
	cfg := tinyConfig()
	m, _ := New(cfg, RandomWeights(cfg, 5, 0.3), WeightShapes(cfg), LoadOptions{})
	if _, err := m.MeanHidden([][]int{{}}); err == nil {
		t.Error("empty sequence accepted")
	}
	if _, err := m.MeanHidden([][]int{make([]int, cfg.MaxPositionEmbeddings+1)}); err == nil {
		t.Error("too long a sequence accepted")
	}
	if _, err := m.MeanHidden([][]int{{cfg.VocabSize}}); err == nil {
		t.Error("out-of-range id accepted")
	}
}
