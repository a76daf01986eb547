package model

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

type golden struct {
	IDs    [][]int       `json:"ids"`
	Logits [][][]float32 `json:"logits"`
	Greedy struct {
		Prompt []int `json:"prompt"`
		IDs    []int `json:"ids"`
	} `json:"greedy"`
}

// TestGoldenLogits compares the GoMLX forward pass with logits computed by
// the independent PyTorch implementation in testdata/oracle/llama_ref.py,
// for every supported variant (see testdata/golden/README.md).
func TestGoldenLogits(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/golden/*/golden.json")
	if len(dirs) < 7 {
		t.Fatalf("found %d golden variants, want 7", len(dirs))
	}
	for _, gpath := range dirs {
		dir := filepath.Dir(gpath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(gpath)
			if err != nil {
				t.Fatal(err)
			}
			var g golden
			if err := json.Unmarshal(data, &g); err != nil {
				t.Fatal(err)
			}
			m, err := Load(dir, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Logits(g.IDs)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for s := range g.IDs {
				for p := range g.IDs[s] {
					worst = math.Max(worst, RelativeError(got[s][p], g.Logits[s][p]))
				}
			}
			t.Logf("max relative error %.2e", worst)
			if worst > 1e-4 {
				t.Errorf("logits differ from PyTorch: max relative error %.2e > 1e-4", worst)
			}
			if len(g.Greedy.IDs) > 0 {
				seqs, err := m.Generate(context.Background(), [][]int{g.Greedy.Prompt}, GenerateOptions{MaxNewTokens: len(g.Greedy.IDs)}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if ids := seqs[0].IDs(); !equalInts(ids, g.Greedy.IDs) {
					t.Errorf("greedy ids %v, PyTorch %v", ids, g.Greedy.IDs)
				}
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
