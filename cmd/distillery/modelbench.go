package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
)

// llama32_1B is Llama-3.2-1B's shape, for speed checks without its weights.
var llama32_1B = model.Config{
	Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama", HiddenSize: 2048, IntermediateSize: 8192,
	NumHiddenLayers: 16, NumAttentionHeads: 32, NumKeyValueHeads: 8, HeadDim: 64, RMSNormEps: 1e-5,
	RopeTheta: 500000, MaxPositionEmbeddings: 131072, VocabSize: 128256, TieWordEmbeddings: true, HiddenAct: "silu",
	RopeScaling: &model.RopeScaling{RopeType: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192},
}

func modelBenchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure forward and generation tokens/s of a model (a checkpoint, a config.json, or a random Llama-3.2-1B-shaped model)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "checkpoint folder"},
			&cli.StringFlag{Name: "config", Usage: "config.json: random weights of this shape"},
			&cli.BoolFlag{Name: "llama-3.2-1b", Usage: "random weights of Llama-3.2-1B's shape"},
			&cli.IntFlag{Name: "batch", Value: 8, Usage: "sequences per forward pass"},
			&cli.IntFlag{Name: "seq", Value: 128, Usage: "tokens per sequence"},
			&cli.IntFlag{Name: "iters", Value: 3, Usage: "timed iterations (after one warm-up that compiles)"},
			&cli.IntFlag{Name: "new-tokens", Value: 32, Usage: "tokens generated per sequence in the generation check (0: skip)"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "compute dtype: f32 or bf16"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of the timed passes to this file"},
			backendFlag, jsonFlag,
		},
		Action: modelBench,
	}
}

func modelBench(c *cli.Context) error {
	var m *model.Model
	var err error
	b, err := model.NewBackend(c.String("backend"))
	if err != nil {
		return usageError("%v", err)
	}
	fmt.Fprintln(c.App.ErrWriter, model.DescribeBackend(b))
	opts := model.LoadOptions{Backend: b, DType: c.String("dtype")}
	switch {
	case c.String("model") != "":
		m, err = model.Load(c.String("model"), opts)
	case c.String("config") != "" || c.Bool("llama-3.2-1b"):
		cfg := &llama32_1B
		if c.String("config") != "" {
			if cfg, err = model.LoadConfig(c.String("config")); err != nil {
				return usageError("%v", err)
			}
		}
		m, err = model.New(cfg, model.RandomWeights(cfg, 1, 0.02), model.WeightShapes(cfg), opts)
	default:
		return usageError("model bench: give --model, --config or --llama-3.2-1b")
	}
	if err != nil {
		return err
	}
	batch, seq := c.Int("batch"), c.Int("seq")
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([][]int, batch)
	for i := range ids {
		for range seq {
			ids[i] = append(ids[i], rng.IntN(m.Config.VocabSize))
		}
	}
	res := map[string]any{"backend": m.Backend.Name(), "batch": batch, "seq": seq, "layers": m.Config.NumHiddenLayers, "hidden": m.Config.HiddenSize}
	// The forward pass is timed as a prefill: all positions computed, the
	// last one's logits returned, as a server uses it. Returning every
	// position's logits would time a [batch, seq, vocab] copy to the host.
	prefill := model.GenerateOptions{MaxNewTokens: 1}
	if _, err := m.Generate(context.Background(), ids, prefill, nil); err != nil { // compile
		return err
	}
	if f := c.String("cpuprofile"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	start := time.Now()
	for range c.Int("iters") {
		if _, err := m.Generate(context.Background(), ids, prefill, nil); err != nil {
			return err
		}
	}
	secs := time.Since(start).Seconds() / float64(c.Int("iters"))
	res["forward_seconds"] = secs
	res["forward_tokens_per_s"] = float64(batch*seq) / secs
	if n := c.Int("new-tokens"); n > 0 {
		prompts := make([][]int, batch)
		for i := range prompts {
			prompts[i] = ids[i][:min(seq, 32)]
		}
		gopts := model.GenerateOptions{MaxNewTokens: n}
		if _, err := m.Generate(context.Background(), prompts, gopts, nil); err != nil {
			return err
		}
		start = time.Now()
		if _, err := m.Generate(context.Background(), prompts, gopts, nil); err != nil {
			return err
		}
		secs := time.Since(start).Seconds()
		res["generate_tokens_per_s"] = float64(batch*n) / secs
	}
	if c.Bool("json") {
		return writeJSON(c, res)
	}
	fmt.Fprintf(c.App.Writer, "forward: %.1f tokens/s (%d x %d tokens in %.3fs)\n", res["forward_tokens_per_s"], batch, seq, secs)
	if v, ok := res["generate_tokens_per_s"]; ok {
		fmt.Fprintf(c.App.Writer, "generate: %.1f tokens/s (batch %d, %d new tokens)\n", v, batch, c.Int("new-tokens"))
	}
	return nil
}
