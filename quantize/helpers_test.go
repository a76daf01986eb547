package quantize

import (
	"context"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/gomlx/compute"

	"github.com/distillery/distillery/model"
)

// testConfig is a tiny decoder: d, 2 layers, GQA 4 heads over 2 KV heads
// (qwen2: q/k/v bias; qwen3: QK-norm).
func testConfig(kind string, d, inter int) *model.Config {
	c := &model.Config{ModelType: kind, HiddenSize: d, IntermediateSize: inter, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: d / 4, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositionEmbeddings: 256, VocabSize: 256, HiddenAct: "silu"}
	if kind == "qwen2" {
		c.AttentionBias = true
		c.NumKeyValueHeads = 4 // MHA: v_proj and o_proj have the same shape
	}
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return c
}

var (
	backendOnce sync.Once
	backend     compute.Backend
)

// testBackend shares one backend between the tests.
func testBackend(t testing.TB) compute.Backend {
	backendOnce.Do(func() {
		b, err := model.NewBackend("")
		if err != nil {
			t.Fatal(err)
		}
		backend = b
	})
	return backend
}

// randomWeights are HF-initialised weights with norm weights jittered and
// biases drawn, so every feature of the forward pass matters.
func randomWeights(cfg *model.Config, seed uint64) map[string][]float32 {
	w := model.RandomWeights(cfg, seed, 0.05)
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, name := range slices.Sorted(maps.Keys(w)) {
		v := w[name]
		if len(model.WeightShapes(cfg)[name]) == 1 {
			for i := range v {
				if v[i] == 1 {
					v[i] = float32(1 + 0.1*rng.NormFloat64())
				} else {
					v[i] = float32(0.05 * rng.NormFloat64())
				}
			}
		}
	}
	return w
}

func newModel(t testing.TB, cfg *model.Config, w map[string][]float32) *model.Model {
	t.Helper()
	m, err := model.New(cfg, w, model.WeightShapes(cfg), model.LoadOptions{Backend: testBackend(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// randomSeqs draws n token sequences of the given length.
func randomSeqs(n, length, vocab int, seed uint64) [][]int {
	rng := rand.New(rand.NewPCG(seed, 3))
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, length)
		for j := range out[i] {
			out[i][j] = rng.IntN(vocab)
		}
	}
	return out
}

// sampledSeqs samples n sequences of the given length from m
// (temperature 1), each after a random first token.
func sampledSeqs(t testing.TB, m *model.Model, n, length int, seed uint64) [][]int {
	t.Helper()
	gen, err := m.Generate(context.Background(), randomSeqs(n, 1, m.Config.VocabSize, seed), model.GenerateOptions{MaxNewTokens: length - 1, Temperature: 1, Seed: seed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]int, n)
	for i, s := range gen {
		out[i] = append(slices.Clone(s.Prompt), s.IDs()...)
	}
	return out
}

func logits(t testing.TB, m *model.Model, seqs [][]int) [][][]float32 {
	t.Helper()
	out, err := m.Logits(seqs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// gap returns the largest absolute and the largest row-relative logit
// difference (model.RelativeError) over all positions.
func gap(a, b [][][]float32) (abs, rel float64) {
	for i := range a {
		for j := range a[i] {
			rel = math.Max(rel, model.RelativeError(a[i][j], b[i][j]))
			for k := range a[i][j] {
				abs = math.Max(abs, math.Abs(float64(a[i][j][k]-b[i][j][k])))
			}
		}
	}
	return abs, rel
}

func fpOpts(t testing.TB) model.LoadOptions { return model.LoadOptions{Backend: testBackend(t)} }
