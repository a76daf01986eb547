package quantize

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// torchPython returns Debian's python3 when it has torch (the oracle of the
// model tests), or skips; DISTILLERY_REQUIRE_TORCH=1 makes its absence fail.
func torchPython(t *testing.T) string {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		if os.Getenv("DISTILLERY_REQUIRE_TORCH") == "1" {
			t.Fatalf("python3-torch is required: %v", err)
		}
		t.Skip("no python3-torch")
	}
	return py
}

// TestINT4MatchesPyTorch dequantizes the saved AWQ checkpoint with an
// independent PyTorch script written from AutoAWQ's dequantize_gemm, runs
// the rebuilt model with the PyTorch reference decoder, and compares the
// logits with the runtime's packed INT4 inference.
func TestINT4MatchesPyTorch(t *testing.T) {
	py := torchPython(t)
	cfg := testConfig("qwen2", 64, 128)
	fp := newModel(t, cfg, randomWeights(cfg, 31))
	res, err := Quantize(context.Background(), fp, randomSeqs(8, 32, cfg.VocabSize, 31), Options{GroupSize: 32, ClipSearch: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := res.Save(dir); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, fpOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	seqs := randomSeqs(2, 12, cfg.VocabSize, 32)
	var parts []string
	for _, s := range seqs {
		parts = append(parts, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(s)), ","), "[]"))
	}
	out, err := exec.Command(py, "testdata/awq_oracle.py", "--model", dir, "--batch", strings.Join(parts, ";")).Output()
	if err != nil {
		t.Fatalf("awq_oracle.py: %v\n%s", err, out)
	}
	var ref struct{ Logits [][][]float32 }
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	abs, rel := gap(logits(t, m, seqs), ref.Logits)
	t.Logf("INT4 runtime vs PyTorch AutoAWQ dequantization: max |Δlogit| %.2g (relative %.2g)", abs, rel)
	if abs > 1e-3 {
		t.Errorf("max |Δlogit| %.3g > 1e-3", abs)
	}
}
