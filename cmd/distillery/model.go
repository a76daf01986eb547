package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/store"
)

var backendFlag = &cli.StringFlag{Name: "backend", Usage: "GoMLX backend, e.g. go:ops_sequential or xla:/abs/path/xla_cuda_plugin.so (default: $GOMLX_BACKEND, else " + model.DefaultBackend + ")"}

func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "create and inspect Llama-family checkpoints",
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "write a randomly initialised checkpoint in HF format (config.json + model.safetensors)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "config", Usage: "HF config.json to instantiate (required)"},
					&cli.StringFlag{Name: "out", Usage: "output folder (required)"},
					&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "random seed"},
					&cli.Float64Flag{Name: "std", Value: 0.02, Usage: "standard deviation of the weights"},
					&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "stored dtype: f32, bf16 or f16"},
					&cli.Int64Flag{Name: "max-shard-bytes", Usage: "shard model.safetensors above this size (0: one file)"},
					&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer.json (or its folder) to copy into the checkpoint"},
				},
				Action: modelInit,
			},
			{
				Name:  "logits",
				Usage: "run a forward pass and print the logits of each position",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "model", Usage: "checkpoint folder (required)"},
					&cli.StringFlag{Name: "ids", Usage: "comma-separated token ids (required)"},
					&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "compute dtype: f32 or bf16"},
					&cli.IntFlag{Name: "top", Value: 5, Usage: "without --json: top logits shown per position"},
					&cli.StringFlag{Name: "compare-backend", Usage: "also run on this backend and fail when the logits differ by more than --tolerance (relative)"},
					&cli.Float64Flag{Name: "tolerance", Value: 1e-4, Usage: "with --compare-backend: allowed max |a-b| / max|b| per position"},
					backendFlag, jsonFlag,
				},
				Action: modelLogits,
			},
			modelBenchCommand(),
			pruneCommand(),
			modelEvalCommand(),
			quantizeCommand(),
		},
	}
}

func modelInit(c *cli.Context) error {
	if c.String("config") == "" || c.String("out") == "" {
		return usageError("model init: --config and --out are required")
	}
	cfg, err := model.LoadConfig(c.String("config"))
	if err != nil {
		return usageError("%v", err)
	}
	dt := map[string]model.DType{"f32": model.F32, "bf16": model.BF16, "f16": model.F16}[c.String("dtype")]
	if dt == "" {
		return usageError("--dtype %q: want f32, bf16 or f16", c.String("dtype"))
	}
	if p := c.String("tokenizer"); p != "" {
		tok, err := model.LoadTokenizer(p)
		if err != nil {
			return usageError("%v", err)
		}
		if tok.VocabSize() > cfg.VocabSize {
			return usageError("tokenizer has %d tokens but config vocab_size is %d", tok.VocabSize(), cfg.VocabSize)
		}
		if err := copyTokenizer(p, c.String("out")); err != nil {
			return err
		}
	}
	w := model.RandomWeights(cfg, c.Uint64("seed"), c.Float64("std"))
	if err := model.SaveCheckpoint(c.String("out"), cfg, w, dt, c.Int64("max-shard-bytes")); err != nil {
		return err
	}
	n := 0
	for _, v := range w {
		n += len(v)
	}
	fmt.Fprintf(c.App.Writer, "wrote %s: %s, %d layers, %d parameters (%s)\n", c.String("out"), cfg.ModelType, cfg.NumHiddenLayers, n, dt)
	return nil
}

func parseIDs(s string) ([]int, error) {
	var ids []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		id, err := strconv.Atoi(f)
		if err != nil || id < 0 {
			return nil, usageError("--ids: %q is not a token id", f)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, usageError("--ids: no token ids")
	}
	return ids, nil
}

// loadModel loads a checkpoint on the chosen backend and says which backend
// and device run it (on stderr, so stdout stays machine-readable).
func loadModel(c *cli.Context) (*model.Model, error) {
	if c.String("model") == "" {
		return nil, usageError("--model DIR is required")
	}
	b, err := model.NewBackend(c.String("backend"))
	if err != nil {
		return nil, usageError("%v", err)
	}
	fmt.Fprintln(c.App.ErrWriter, model.DescribeBackend(b))
	m, err := model.Load(c.String("model"), model.LoadOptions{Backend: b, DType: c.String("dtype")})
	if err != nil {
		if os.IsNotExist(err) {
			return nil, usageError("%v", err)
		}
		return nil, err
	}
	return m, nil
}

func modelLogits(c *cli.Context) error {
	ids, err := parseIDs(c.String("ids"))
	if err != nil {
		return err
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	out, err := m.Logits([][]int{ids})
	if err != nil {
		return err
	}
	if other := c.String("compare-backend"); other != "" {
		return compareBackends(c, out[0], ids, other)
	}
	if c.Bool("json") {
		return writeJSON(c, map[string]any{"model": c.String("model"), "ids": ids, "backend": m.Backend.Name(), "logits": out[0]})
	}
	for pos, row := range out[0] {
		top := model.TopTokens(model.LogProbs(row), c.Int("top"))
		var parts []string
		for _, t := range top {
			parts = append(parts, fmt.Sprintf("%d:%.4f", t.ID, row[t.ID]))
		}
		fmt.Fprintf(c.App.Writer, "pos %d (id %d): %s\n", pos, ids[pos], strings.Join(parts, " "))
	}
	return nil
}

// copyTokenizer copies tokenizer.json and tokenizer_config.json (when
// present) from a file or folder into dir.
func copyTokenizer(src, dir string) error {
	if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
		src = filepath.Dir(src)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if os.IsNotExist(err) && name != "tokenizer.json" {
			continue
		}
		if err != nil {
			return fmt.Errorf("copy tokenizer: %w", err)
		}
		if err := store.WriteFileAtomic(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// compareBackends runs the same logits on a second backend and reports the
// largest relative difference; above --tolerance it fails.
func compareBackends(c *cli.Context, ref [][]float32, ids []int, other string) error {
	b, err := model.NewBackend(other)
	if err != nil {
		return usageError("%v", err)
	}
	m, err := model.Load(c.String("model"), model.LoadOptions{Backend: b, DType: c.String("dtype")})
	if err != nil {
		return err
	}
	out, err := m.Logits([][]int{ids})
	if err != nil {
		return err
	}
	worst := 0.0
	for p := range ref {
		worst = math.Max(worst, model.RelativeError(out[0][p], ref[p]))
	}
	fmt.Fprintf(c.App.Writer, "%s: max relative difference %s vs %s: %.3g\n", c.String("model"), other, model.BackendConfig(c.String("backend")), worst)
	if worst > c.Float64("tolerance") {
		return fmt.Errorf("logits differ by %.3g > tolerance %g", worst, c.Float64("tolerance"))
	}
	return nil
}
