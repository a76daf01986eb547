package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/quantize"
)

// quantizeCommand is `distillery model quantize`: INT4 weight quantization
// (AWQ or round-to-nearest) written in AutoAWQ's GEMM layout, or INT8.
func quantizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "quantize",
		Usage: "quantize a checkpoint's linear layers to INT4 (AWQ or RTN, AutoAWQ GEMM format for vLLM and transformers) or INT8",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Usage: "float checkpoint folder to quantize (required)"},
			&cli.StringFlag{Name: "out", Usage: "output folder (required)"},
			&cli.StringFlag{Name: "method", Value: quantize.MethodAWQ, Usage: "awq, rtn (round-to-nearest INT4) or int8 (per-channel)"},
			&cli.IntFlag{Name: "group-size", Value: 128, Usage: "INT4 group size: 32, 64 or 128"},
			&cli.BoolFlag{Name: "clip", Value: true, Usage: "with awq: also search per-group weight clipping (--clip=false to skip)"},
			&cli.IntFlag{Name: "grid", Value: 20, Usage: "with awq: number of α values tried in [0, 1)"},
			&cli.StringSliceFlag{Name: "not-convert", Usage: "module path substring kept in 16-bit (modules_to_not_convert); repeatable"},
			&cli.StringFlag{Name: "calib", Usage: "calibration JSONL, e.g. the harvest's train split (required for awq)"},
			&cli.StringFlag{Name: "field", Value: "text", Usage: "JSONL field holding the text (--calib and --eval)"},
			&cli.IntFlag{Name: "calib-samples", Value: 128, Usage: "calibration rows used"},
			&cli.IntFlag{Name: "calib-len", Value: 512, Usage: "tokens per calibration sample (truncated)"},
			&cli.StringFlag{Name: "eval", Usage: "held-out JSONL (disjoint from --calib): report perplexity before and after"},
			&cli.IntFlag{Name: "eval-samples", Value: 64, Usage: "evaluation rows used"},
			&cli.IntFlag{Name: "eval-len", Value: 256, Usage: "tokens per evaluation sample (truncated)"},
			backendFlag, jsonFlag,
		},
		Action: modelQuantize,
	}
}

func modelQuantize(c *cli.Context) error {
	in, out := c.String("in"), c.String("out")
	if in == "" || out == "" {
		return usageError("model quantize: --in and --out are required")
	}
	opts := quantize.Options{Method: c.String("method"), GroupSize: c.Int("group-size"), ClipSearch: c.Bool("clip"),
		Grid: c.Int("grid"), ModulesToNotConvert: c.StringSlice("not-convert")}
	switch opts.Method {
	case quantize.MethodAWQ, quantize.MethodRTN, quantize.MethodINT8:
	default:
		return usageError("--method %q: want awq, rtn or int8", opts.Method)
	}
	if opts.Method == quantize.MethodINT8 {
		opts.GroupSize = 0
	} else if g := opts.GroupSize; g != 32 && g != 64 && g != 128 {
		return usageError("--group-size %d: want 32, 64 or 128", g)
	}
	if opts.Method != quantize.MethodAWQ {
		opts.ClipSearch = false
	}
	if opts.Grid < 1 {
		return usageError("--grid %d: must be positive", opts.Grid)
	}
	if opts.Method == quantize.MethodAWQ && c.String("calib") == "" {
		return usageError("model quantize: --method awq needs --calib FILE.jsonl")
	}
	for _, f := range []string{"calib-samples", "calib-len", "eval-samples", "eval-len"} {
		if c.Int(f) <= 0 {
			return usageError("--%s must be positive", f)
		}
	}
	var calib, eval [][]int
	if c.String("calib") != "" || c.String("eval") != "" {
		tok, err := model.LoadTokenizer(in)
		if err != nil {
			return usageError("%v", err)
		}
		if c.String("calib") != "" && opts.Method == quantize.MethodAWQ {
			if calib, err = readCalibration(c.String("calib"), c.String("field"), tok, c.Int("calib-samples"), c.Int("calib-len")); err != nil {
				return err
			}
		}
		if c.String("eval") != "" {
			if eval, err = readCalibration(c.String("eval"), c.String("field"), tok, c.Int("eval-samples"), c.Int("eval-len")); err != nil {
				return err
			}
		}
	}
	m, err := loadInputModel(c, in)
	if err != nil {
		return err
	}
	last := time.Now()
	opts.Progress = func(done, total int) {
		if done == total || time.Since(last) > 5*time.Second {
			fmt.Fprintf(c.App.ErrWriter, "quantize: %d/%d steps\n", done, total)
			last = time.Now()
		}
	}
	start := time.Now()
	res, err := quantize.Quantize(c.Context, m, calib, opts)
	if err != nil {
		return err
	}
	seconds := time.Since(start).Seconds()
	if err := res.Save(out); err != nil {
		return err
	}
	disk, err := quantize.CheckpointSizes(out)
	if err != nil {
		return err
	}
	report := map[string]any{"in": in, "out": out, "method": opts.Method, "quantization_config": res.Quant,
		"calibration_samples": len(calib), "calibration_tokens": res.CalibrationTokens, "seconds": seconds,
		"sizes": disk, "disk_bytes": quantize.DiskBytes(out), "skipped": res.Skipped, "groups": res.Groups}
	var fpPPL, qPPL quantize.PPL
	if len(eval) > 0 {
		ctx := c.Context
		if ctx == nil {
			ctx = context.Background()
		}
		if fpPPL, err = quantize.Perplexity(ctx, m, eval); err != nil {
			return err
		}
		qm, err := quantize.Load(out, model.LoadOptions{Backend: m.Backend})
		if err != nil {
			return err
		}
		if qPPL, err = quantize.Perplexity(ctx, qm, eval); err != nil {
			return err
		}
		report["perplexity"] = map[string]quantize.PPL{"fp": fpPPL, "quantized": qPPL}
		report["memory"] = quantize.MemorySizes(qm)
	}
	report["resident_bytes"] = quantize.ResidentBytes()
	if c.Bool("json") {
		return writeJSON(c, report)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s: %s in %.1fs", out, opts.Method, seconds)
	if opts.Method != quantize.MethodINT8 {
		fmt.Fprintf(w, ", group size %d", opts.GroupSize)
	}
	if len(calib) > 0 {
		fmt.Fprintf(w, ", %d calibration samples (%d tokens)", len(calib), res.CalibrationTokens)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "linear layers %.2f MB vs %.2f MB in 16-bit (%.3fx); embeddings %.2f MB (16-bit); total %.2f MB vs %.2f MB\n",
		mb(disk.LinearBytes), mb(disk.Linear16Bytes), disk.LinearRatio, mb(disk.EmbeddingBytes), mb(disk.TotalBytes), mb(disk.Total16Bytes))
	if n := len(res.Groups); n > 0 {
		var rtn, awq float64
		for _, g := range res.Groups {
			rtn += g.MSERTN / float64(n)
			awq += g.MSEAfter / float64(n)
		}
		fmt.Fprintf(w, "layer output MSE (mean over %d groups): round-to-nearest %.4g, AWQ %.4g\n", n, rtn, awq)
	}
	if len(res.Skipped) > 0 {
		names := make([]string, 0, len(res.Skipped))
		for n := range res.Skipped {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "kept 16-bit: %s (%s)\n", n, res.Skipped[n])
		}
	}
	if len(eval) > 0 {
		fmt.Fprintf(w, "perplexity on %d held-out tokens: fp %.4f, quantized %.4f (%+.4f)\n", fpPPL.Tokens, fpPPL.Perplexity, qPPL.Perplexity, qPPL.Perplexity-fpPPL.Perplexity)
	}
	return nil
}

func mb(n int64) float64 { return float64(n) / 1e6 }
