package model

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// benchConfigs mirror testdata/oracle/bench_torch.py, so `make bench`
// compares the Go backend with PyTorch on the same shapes.
func benchConfigs() map[string]*Config {
	mk := func(d, layers, heads, kv int) *Config {
		return &Config{ModelType: "llama", HiddenSize: d, IntermediateSize: (d*11/4 + 31) / 32 * 32, NumHiddenLayers: layers,
			NumAttentionHeads: heads, NumKeyValueHeads: kv, HeadDim: d / heads, RMSNormEps: 1e-5, RopeTheta: 10000,
			MaxPositionEmbeddings: 512, VocabSize: 4096, HiddenAct: "silu"}
	}
	return map[string]*Config{"d128-l2": mk(128, 2, 4, 2), "d256-l4": mk(256, 4, 4, 2)}
}

// trainStep builds one AdamW step of next-token cross-entropy over all
// weights: the cost of full fine-tuning a step, as in bench_torch.py.
func trainStep(m *Model) (*graph.Exec, error) {
	nw := len(m.names)
	return graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
		w := in[:nw]
		mom, vel := in[nw:2*nw], in[2*nw:3*nw]
		ids, targets := in[3*nw], in[3*nw+1]
		p := PlainParams{}
		for i, n := range m.names {
			p[n] = w[i]
		}
		b, s := ids.Shape().Dimensions[0], ids.Shape().Dimensions[1]
		pos := graph.BroadcastToDims(graph.Iota(g, shapesFor(ids.DType(), 1, s), 1), b, s)
		logits, _ := Forward(m.Config, p, Inputs{IDs: ids, Positions: pos})
		lp := graph.LogSoftmax(logits, -1)
		oh := graph.OneHot(targets, m.Config.VocabSize, lp.DType())
		loss := graph.Neg(graph.ReduceAllMean(graph.ReduceSum(graph.Mul(lp, oh), -1)))
		grads := graph.Gradient(loss, w...)
		out := []*graph.Node{loss}
		const lr, b1, b2, eps, wd = 1e-3, 0.9, 0.999, 1e-8, 0.01
		var nm, nv, nws []*graph.Node
		for i := range w {
			mi := graph.Add(graph.MulScalar(mom[i], b1), graph.MulScalar(grads[i], 1-b1))
			vi := graph.Add(graph.MulScalar(vel[i], b2), graph.MulScalar(graph.Square(grads[i]), 1-b2))
			upd := graph.Div(mi, graph.AddScalar(graph.Sqrt(vi), eps))
			wi := graph.Sub(w[i], graph.Add(graph.MulScalar(upd, lr), graph.MulScalar(w[i], lr*wd)))
			nm, nv, nws = append(nm, mi), append(nv, vi), append(nws, wi)
		}
		out = append(out, nws...)
		out = append(out, nm...)
		return append(out, nv...)
	})
}

func benchModel(b *testing.B, cfg *Config) *Model {
	m, err := New(cfg, RandomWeights(cfg, 1, 0.02), WeightShapes(cfg), LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func randomIDs(n, vocab int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
	}
	return ids
}

// BenchmarkTrainStep: one AdamW step of a 16x64-token batch (forward,
// backward, update) on the configured backend.
func BenchmarkTrainStep(b *testing.B) {
	for _, name := range []string{"d128-l2", "d256-l4"} {
		cfg := benchConfigs()[name]
		b.Run(name, func(b *testing.B) {
			m := benchModel(b, cfg)
			exec, err := trainStep(m)
			if err != nil {
				b.Fatal(err)
			}
			const bs, seq = 16, 64
			ids := tensors.FromFlatDataAndDimensions(randomIDs(bs*seq, cfg.VocabSize, 1), bs, seq)
			tg := tensors.FromFlatDataAndDimensions(randomIDs(bs*seq, cfg.VocabSize, 2), bs, seq)
			state := append([]*tensors.Tensor{}, m.weights...)
			for range 2 * len(m.weights) {
				state = append(state, nil)
			}
			for i, w := range m.weights {
				state[len(m.weights)+i] = tensors.FromShape(w.Shape())
				state[2*len(m.weights)+i] = tensors.FromShape(w.Shape())
			}
			run := func() {
				args := make([]any, 0, len(state)+2)
				for _, s := range state {
					args = append(args, s)
				}
				out, err := exec.Exec(append(args, ids, tg)...)
				if err != nil {
					b.Fatal(err)
				}
				out[0].FinalizeAll()
				for _, s := range state {
					s.FinalizeAll()
				}
				state = out[1:]
			}
			run() // compile
			b.ResetTimer()
			for b.Loop() {
				run()
			}
			b.ReportMetric(float64(bs*seq)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkGenerate: greedy generation with the KV cache, 32-token
// prompts, 64 new tokens, batch 1 and 8.
func BenchmarkGenerate(b *testing.B) {
	for _, name := range []string{"d128-l2", "d256-l4"} {
		cfg := benchConfigs()[name]
		for _, batch := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/batch%d", name, batch), func(b *testing.B) {
				m := benchModel(b, cfg)
				prompts := make([][]int, batch)
				for i := range prompts {
					for _, id := range randomIDs(32, cfg.VocabSize, uint64(i+3)) {
						prompts[i] = append(prompts[i], int(id))
					}
				}
				opts := GenerateOptions{MaxNewTokens: 64}
				if _, err := m.Generate(context.Background(), prompts, opts, nil); err != nil { // compile
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if _, err := m.Generate(context.Background(), prompts, opts, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(batch*64)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
