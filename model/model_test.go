package model

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
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
// log-probabilities, as argmax over full forward passes: with a cache longer
// than the prefill, and with one exactly as long (30 + 2 tokens fill 32).
func TestGenerateMatchesFullForward(t *testing.T) {
	cfg := tinyConfig()
	m, err := New(cfg, RandomWeights(cfg, 2, 0.3), WeightShapes(cfg), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	long := make([]int, 30)
	for i := range long {
		long[i] = (i*7 + 3) % cfg.VocabSize
	}
	for _, tc := range []struct {
		name    string
		prompts [][]int
		newTok  int
	}{
		{"mixed lengths", [][]int{{1, 2, 3, 4, 5}, {7, 8}, {9}}, 12},
		{"cache exactly full", [][]int{long, {4, 5, 6}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seqs, err := m.Generate(context.Background(), tc.prompts, GenerateOptions{MaxNewTokens: tc.newTok, TopLogprobs: 3}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range tc.prompts {
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
				if seqs[i].FinishReason != "length" || len(seqs[i].Steps) != tc.newTok {
					t.Errorf("seq %d: %s after %d", i, seqs[i].FinishReason, len(seqs[i].Steps))
				}
			}
		})
	}
}

// bf16 compute follows the f32 logits closely (bf16 has ~3 significant
// digits), and a sharded checkpoint loads to the same model as one file.
func TestBF16AndShardedLoad(t *testing.T) {
	dir := "testdata/golden/llama-gqa"
	f32, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bf16, err := Load(dir, LoadOptions{DType: "bf16"})
	if err != nil {
		t.Fatal(err)
	}
	ids := [][]int{{3, 14, 15, 92, 65, 35}}
	a, _ := f32.Logits(ids)
	b, err := bf16.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	for p := range a[0] {
		if e := RelativeError(b[0][p], a[0][p]); e > 0.05 {
			t.Errorf("bf16 position %d: relative error %.3f", p, e)
		}
	}

	cfg, _ := LoadConfig(dir)
	w, _ := OpenWeights(dir)
	host := map[string][]float32{}
	for _, n := range w.Names() {
		tt, _ := w.Get(n)
		host[n], _ = tt.Float32()
	}
	w.Close()
	out := t.TempDir()
	if err := SaveCheckpoint(out, cfg, host, F32, 40_000); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors.index.json")); err != nil {
		t.Fatalf("not sharded: %v", err)
	}
	sharded, err := Load(out, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := sharded.Logits(ids)
	for p := range a[0] {
		if e := RelativeError(c[0][p], a[0][p]); e != 0 {
			t.Errorf("sharded position %d: relative error %g", p, e)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	src := "testdata/golden/qwen2-bias"
	cfgData, _ := os.ReadFile(filepath.Join(src, "config.json"))
	weights, _ := os.ReadFile(filepath.Join(src, "model.safetensors"))
	tests := []struct {
		name    string
		edit    func(cfg string) string
		weights []byte
		want    string
	}{
		{"unsupported field", func(c string) string { return strings.Replace(c, "{", `{"sliding_attention_magic": 3,`, 1) }, weights, "unsupported field(s) sliding_attention_magic"},
		{"unsupported act", func(c string) string { return strings.Replace(c, `"silu"`, `"gelu"`, 1) }, weights, `hidden_act "gelu" is not supported`},
		{"shape mismatch", func(c string) string {
			return strings.Replace(c, `"intermediate_size": 64`, `"intermediate_size": 96`, 1)
		}, weights, "shape [64 48], config.json implies [96 48]"},
		{"truncated weights", func(c string) string { return c }, weights[:len(weights)/2], "model.safetensors"},
		{"unknown model type", func(c string) string { return strings.Replace(c, `"qwen2"`, `"gpt2"`, 1) }, weights, `model_type "gpt2" is not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.edit(string(cfgData))), 0o644)
			os.WriteFile(filepath.Join(dir, "model.safetensors"), tc.weights, 0o644)
			_, err := Load(dir, LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// Sampling is reproducible per seed, and top_p keeps to the nucleus.
func TestSampling(t *testing.T) {
	cfg := tinyConfig()
	m, err := New(cfg, RandomWeights(cfg, 4, 0.5), WeightShapes(cfg), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen := func(o GenerateOptions) []int {
		s, err := m.Generate(context.Background(), [][]int{{1, 2, 3}}, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s[0].IDs()
	}
	a := gen(GenerateOptions{MaxNewTokens: 20, Temperature: 1, Seed: 7})
	b := gen(GenerateOptions{MaxNewTokens: 20, Temperature: 1, Seed: 7})
	c := gen(GenerateOptions{MaxNewTokens: 20, Temperature: 1, Seed: 8})
	if !equalInts(a, b) || equalInts(a, c) {
		t.Errorf("seeded sampling: %v %v %v", a, b, c)
	}
	// A tiny top_p leaves only the most likely token: greedy.
	if g, p := gen(GenerateOptions{MaxNewTokens: 20}), gen(GenerateOptions{MaxNewTokens: 20, Temperature: 1.5, TopP: 1e-6, Seed: 3}); !equalInts(g, p) {
		t.Errorf("top_p 1e-6 = %v, greedy = %v", p, g)
	}
	// Stop ids end a sequence with finish reason "stop", the stop token included.
	g := gen(GenerateOptions{MaxNewTokens: 20})
	s, _ := m.Generate(context.Background(), [][]int{{1, 2, 3}}, GenerateOptions{MaxNewTokens: 20, StopIDs: []int{g[2]}}, nil)
	if s[0].FinishReason != "stop" || len(s[0].Steps) > 3 {
		t.Errorf("stop id: %s after %d steps", s[0].FinishReason, len(s[0].Steps))
	}
}
