package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
)

// pruneCommand is `distillery model prune`: Minitron-style structured
// pruning of a checkpoint by depth (layers) and width (MLP channels, KV-head
// groups), with activation importance measured on calibration text.
func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "prune a checkpoint by depth (--keep-layers) and width (--width, --heads) as Minitron does",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Usage: "checkpoint folder to prune (required)"},
			&cli.StringFlag{Name: "out", Usage: "output folder (required)"},
			&cli.StringFlag{Name: "keep-layers", Usage: "comma-separated layer indices to keep, in order (default: all)"},
			&cli.Float64Flag{Name: "width", Value: 1, Usage: "fraction of each layer's MLP intermediate channels to keep"},
			&cli.Float64Flag{Name: "heads", Value: 1, Usage: "fraction of each layer's KV-head groups to keep"},
			&cli.StringFlag{Name: "calib", Usage: "calibration JSONL (required with --width or --heads below 1)"},
			&cli.StringFlag{Name: "field", Value: "text", Usage: "JSONL field holding the calibration text"},
			&cli.IntFlag{Name: "calib-samples", Value: 64, Usage: "calibration rows used"},
			&cli.IntFlag{Name: "calib-len", Value: 128, Usage: "tokens per calibration sample (truncated)"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "stored dtype: f32, bf16 or f16"},
			backendFlag, jsonFlag,
		},
		Action: modelPrune,
	}
}

func modelPrune(c *cli.Context) error {
	in, out := c.String("in"), c.String("out")
	if in == "" || out == "" {
		return usageError("model prune: --in and --out are required")
	}
	dt := map[string]model.DType{"f32": model.F32, "bf16": model.BF16, "f16": model.F16}[c.String("dtype")]
	if dt == "" {
		return usageError("--dtype %q: want f32, bf16 or f16", c.String("dtype"))
	}
	opts := model.PruneOptions{MLPWidth: c.Float64("width"), Heads: c.Float64("heads")}
	for name, v := range map[string]float64{"--width": opts.MLPWidth, "--heads": opts.Heads} {
		if !(v > 0 && v <= 1) {
			return usageError("%s %v: want a fraction in (0, 1]", name, v)
		}
	}
	if s := c.String("keep-layers"); s != "" {
		for _, f := range strings.Split(s, ",") {
			l, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || l < 0 {
				return usageError("--keep-layers: %q is not a layer index", f)
			}
			opts.KeepLayers = append(opts.KeepLayers, l)
		}
	}
	if opts.MLPWidth < 1 || opts.Heads < 1 {
		if c.String("calib") == "" {
			return usageError("model prune: --width or --heads below 1 needs --calib FILE.jsonl")
		}
		if c.Int("calib-samples") <= 0 || c.Int("calib-len") <= 0 {
			return usageError("--calib-samples and --calib-len must be positive")
		}
		tok, err := model.LoadTokenizer(in)
		if err != nil {
			return usageError("%v", err)
		}
		if opts.Calibration, err = readCalibration(c.String("calib"), c.String("field"), tok, c.Int("calib-samples"), c.Int("calib-len")); err != nil {
			return err
		}
	}
	m, err := loadInputModel(c, in)
	if err != nil {
		return err
	}
	if max := m.Config.MaxPositionEmbeddings; max > 0 {
		for i, s := range opts.Calibration {
			if len(s) > max {
				opts.Calibration[i] = s[:max]
			}
		}
	}
	cfg, w, rep, err := model.Prune(m, opts)
	if err != nil {
		return usageError("%v", err)
	}
	if err := model.SaveCheckpoint(out, cfg, w, dt, 0); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(in, "tokenizer.json")); err == nil {
		if err := copyTokenizer(in, out); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		return writeJSON(c, map[string]any{"in": in, "out": out, "calibration_samples": len(opts.Calibration), "report": rep})
	}
	pct := func(a, b int64) float64 { return 100 * float64(a) / float64(max(b, 1)) }
	fmt.Fprintf(c.App.Writer, "wrote %s: %d layers, intermediate %d, %d heads (%d kv)\n", out, rep.Layers, rep.Intermediate, rep.Heads, rep.KVHeads)
	fmt.Fprintf(c.App.Writer, "parameters %d -> %d (%.1f%%), non-embedding %d -> %d (%.1f%%)\n",
		rep.ParamsBefore, rep.ParamsAfter, pct(rep.ParamsAfter, rep.ParamsBefore),
		rep.NonEmbeddingBefore, rep.NonEmbeddingAfter, pct(rep.NonEmbeddingAfter, rep.NonEmbeddingBefore))
	return nil
}

// readCalibration tokenizes up to n rows' field of a JSONL file, each
// truncated to length tokens; empty texts are skipped.
func readCalibration(path, field string, tok *model.Tokenizer, n, length int) ([][]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError("--calib: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out [][]int
	line := 0
	for sc.Scan() && len(out) < n {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var row map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, usageError("%s:%d: %v", path, line, err)
		}
		raw, ok := row[field]
		if !ok {
			return nil, usageError("%s:%d: no field %q", path, line, field)
		}
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, usageError("%s:%d: field %q is not a string", path, line, field)
		}
		ids := tok.Encode(text)
		if len(ids) == 0 {
			continue
		}
		out = append(out, ids[:min(len(ids), length)])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--calib: %w", err)
	}
	if len(out) == 0 {
		return nil, usageError("--calib %s: no non-empty %q texts", path, field)
	}
	return out, nil
}

// loadInputModel loads the checkpoint a model command transforms, on
// --backend, naming the backend on stderr; a missing folder is a usage error.
func loadInputModel(c *cli.Context, dir string) (*model.Model, error) {
	b, err := model.NewBackend(c.String("backend"))
	if err != nil {
		return nil, usageError("%v", err)
	}
	fmt.Fprintln(c.App.ErrWriter, model.DescribeBackend(b))
	m, err := model.Load(dir, model.LoadOptions{Backend: b})
	if err != nil && os.IsNotExist(err) {
		return nil, usageError("%v", err)
	}
	return m, err
}
