package quantize

import (
	"context"
	"fmt"
	"testing"

	"github.com/distillery/distillery/model"
)

// benchConfig mirrors model's benchConfigs (d256-l4: 4 heads over 2 KV
// heads, intermediate 704, vocab 4096).
func benchConfig(d, layers int) *model.Config {
	return &model.Config{ModelType: "llama", HiddenSize: d, IntermediateSize: (d*11/4 + 31) / 32 * 32, NumHiddenLayers: layers,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: d / 4, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositionEmbeddings: 512, VocabSize: 4096, HiddenAct: "silu"}
}

// BenchmarkQuantize: quantizing the d256-l4 model; AWQ calibrates on 128
// random sequences of 64 tokens. Group size 64, since 128 does not divide
// the 704 inputs of down_proj.
func BenchmarkQuantize(b *testing.B) {
	cfg := benchConfig(256, 4)
	fp := newModel(b, cfg, model.RandomWeights(cfg, 1, 0.02))
	calib := randomSeqs(128, 64, cfg.VocabSize, 1)
	for _, o := range []Options{{Method: MethodRTN, GroupSize: 64}, {Method: MethodAWQ, GroupSize: 64}, {Method: MethodAWQ, GroupSize: 64, ClipSearch: true}} {
		name := fmt.Sprintf("d256-l4/%s-g%d", o.Method, o.GroupSize)
		if o.ClipSearch {
			name += "-clip"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Quantize(context.Background(), fp, calib, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerateINT4: greedy KV-cache generation (32-token prompts, 64
// new tokens) of the packed INT4 model (AWQ, group 64) against the f32 model
// on the same backend, as model's BenchmarkGenerate measures it.
func BenchmarkGenerateINT4(b *testing.B) {
	cfg := benchConfig(256, 4)
	fp := newModel(b, cfg, model.RandomWeights(cfg, 1, 0.02))
	res, err := Quantize(context.Background(), fp, randomSeqs(16, 64, cfg.VocabSize, 1), Options{GroupSize: 64})
	if err != nil {
		b.Fatal(err)
	}
	q, err := res.Model(fpOpts(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{1, 8} {
		prompts := randomSeqs(batch, 32, cfg.VocabSize, 3)
		for _, v := range []struct {
			name string
			m    *model.Model
		}{{"fp", fp}, {"int4", q}} {
			b.Run(fmt.Sprintf("d256-l4/batch%d/%s", batch, v.name), func(b *testing.B) {
				opts := model.GenerateOptions{MaxNewTokens: 64}
				if _, err := v.m.Generate(context.Background(), prompts, opts, nil); err != nil { // compile
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if _, err := v.m.Generate(context.Background(), prompts, opts, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(batch*64)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
				b.ReportMetric(float64(MemorySizes(v.m).TotalBytes)/(1<<20), "weight-MB")
			})
		}
	}
}
