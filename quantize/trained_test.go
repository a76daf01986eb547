package quantize

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/distillery/distillery/model"
)

// TestTrainedStudent is the acceptance comparison on a real checkpoint:
//
//	DISTILLERY_QUANT_MODEL=DIR DISTILLERY_QUANT_TEXT=FILE go test ./quantize/ -run TestTrainedStudent -v -timeout 60m
//
// FILE is JSONL (the "text" field, or DISTILLERY_QUANT_FIELD) or plain text
// (one sample a line). Its first half (at most DISTILLERY_QUANT_CALIB_SAMPLES,
// default 128) calibrates; the evaluation samples are taken from the other
// half (at most DISTILLERY_QUANT_EVAL_SAMPLES, default 128), so the two are
// disjoint; DISTILLERY_QUANT_CALIB=FILE2 calibrates on another file
// instead. Samples are cut at DISTILLERY_QUANT_LEN tokens (default 128):
// set it to the sequence length the checkpoint was trained with (128 for
// base-lm and the teacher of models/build), not to max_position_embeddings
// (256 there): positions beyond the trained length are out of distribution,
// so their activations would skew the calibration statistics and their
// perplexities would measure extrapolation rather than quantization error.
// For group sizes 32, 64 and 128 the perplexity increase of AWQ (with clip
// search) over fp must be below RTN's. DISTILLERY_QUANT_REPORT=PATH writes
// the report as JSON.
func TestTrainedStudent(t *testing.T) {
	dir, text := os.Getenv("DISTILLERY_QUANT_MODEL"), os.Getenv("DISTILLERY_QUANT_TEXT")
	if dir == "" || text == "" {
		t.Skip("set DISTILLERY_QUANT_MODEL (checkpoint folder) and DISTILLERY_QUANT_TEXT (held-out text) to run")
	}
	envInt := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	nCalib, nEval, length := envInt("DISTILLERY_QUANT_CALIB_SAMPLES", 128), envInt("DISTILLERY_QUANT_EVAL_SAMPLES", 128), envInt("DISTILLERY_QUANT_LEN", 128)
	tok, err := model.LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(texts []string) [][]int {
		var out [][]int
		for _, s := range texts {
			ids := tok.Encode(s)
			if len(ids) >= 2 {
				out = append(out, ids[:min(len(ids), length)])
			}
		}
		return out
	}
	texts := readTexts(t, text)
	var calibTexts, evalTexts []string
	if other := os.Getenv("DISTILLERY_QUANT_CALIB"); other != "" {
		calibTexts, evalTexts = readTexts(t, other), texts
	} else {
		half := len(texts) / 2
		calibTexts, evalTexts = texts[:half], texts[half:]
	}
	calib, eval := encode(calibTexts), encode(evalTexts)
	calib, eval = calib[:min(len(calib), nCalib)], eval[:min(len(eval), nEval)]
	if len(calib) == 0 || len(eval) == 0 {
		t.Fatalf("%d calibration and %d evaluation samples", len(calib), len(eval))
	}
	fp, err := Load(dir, model.LoadOptions{Backend: testBackend(t)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Compare(context.Background(), fp, calib, eval, CompareOptions{GroupSizes: []int{32, 64, 128}, ClipSearch: true,
		Dir: t.TempDir(), Progress: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d calibration samples (%d tokens), %d evaluation samples (%d tokens)\n%s", len(calib), rep.CalibrationTokens, len(eval), rep.EvaluationTokens, rep.Table())
	if path := os.Getenv("DISTILLERY_QUANT_REPORT"); path != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Error(err)
		}
	}
	inc := map[string]float64{}
	for _, v := range rep.Variants {
		inc[v.Name] = v.PerplexityIncrease
		if v.Method != "fp" && v.Disk != nil && v.Disk.LinearRatio > 0.3 {
			t.Errorf("%s: INT4 linear bytes %.3fx of 16-bit", v.Name, v.Disk.LinearRatio)
		}
	}
	for _, g := range []string{"32", "64", "128"} {
		if a, r := inc["awq-g"+g], inc["rtn-g"+g]; !(a < r) {
			t.Errorf("group %s: AWQ perplexity increase %.4f is not below RTN's %.4f", g, a, r)
		}
	}
}

// readTexts reads JSONL rows' text field, or plain lines.
func readTexts(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	field := os.Getenv("DISTILLERY_QUANT_FIELD")
	if field == "" {
		field = "text"
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "{") {
			var row map[string]any
			if json.Unmarshal([]byte(line), &row) == nil {
				if s, ok := row[field].(string); ok && s != "" {
					out = append(out, s)
				}
				continue
			}
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
