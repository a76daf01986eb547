package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// torchPython returns Debian's python3 when it has torch, for the
// independent PyTorch oracle (model/testdata/oracle/llama_ref.py).
func torchPython(t *testing.T) string {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		if os.Getenv("DISTILLERY_REQUIRE_TORCH") == "1" {
			t.Fatalf("python3-torch is required (apt-get install python3-torch libopenblas0-pthread): %v", err)
		}
		t.Skip("no python3-torch: install it with apt-get install python3-torch libopenblas0-pthread")
	}
	return py
}

// TestLogitsMatchPyTorch draws NEW random checkpoints of every supported
// variant (with the oracle, and with `distillery model init`), and checks
// that `distillery model logits --json` matches the PyTorch reference.
func TestLogitsMatchPyTorch(t *testing.T) {
	py := torchPython(t)
	root := repoRoot(t)
	oracle := filepath.Join(root, "model/testdata/oracle/llama_ref.py")
	configs, _ := filepath.Glob(filepath.Join(root, "model/testdata/golden/*/config.json"))
	if len(configs) == 0 {
		t.Fatal("no variant configs")
	}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 7))
	for _, cfg := range configs {
		variant := filepath.Base(filepath.Dir(cfg))
		for _, writer := range []string{"oracle", "distillery"} {
			t.Run(variant+"/"+writer, func(t *testing.T) {
				dir := t.TempDir()
				seed := rng.IntN(1 << 30)
				var cmd *exec.Cmd
				if writer == "oracle" {
					args := []string{oracle, "init", "--config", cfg, "--out", dir, "--seed", fmt.Sprint(seed), "--std", "0.1"}
					if strings.Contains(variant, "bf16") {
						args = append(args, "--dtype", "bf16")
					}
					cmd = exec.Command(py, args...)
				} else {
					cmd = exec.Command(bin, "model", "init", "--config", cfg, "--out", dir, "--seed", fmt.Sprint(seed), "--std", "0.1")
				}
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s init: %v\n%s", writer, err, out)
				}
				var vocab struct {
					VocabSize int `json:"vocab_size"`
				}
				data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
				json.Unmarshal(data, &vocab)
				ids := make([]string, 9+rng.IntN(20))
				for i := range ids {
					ids[i] = fmt.Sprint(rng.IntN(vocab.VocabSize))
				}
				idArg := strings.Join(ids, ",")

				r := runCLI(t, root, "model", "logits", "--model", dir, "--ids", idArg, "--json")
				if r.code != 0 {
					t.Fatalf("distillery model logits: exit %d\n%s", r.code, r.stderr)
				}
				var got struct{ Logits [][]float64 }
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(py, oracle, "logits", "--model", dir, "--ids", idArg).Output()
				if err != nil {
					t.Fatalf("oracle logits: %v", err)
				}
				var want struct{ Logits [][]float64 }
				if err := json.Unmarshal(out, &want); err != nil {
					t.Fatal(err)
				}
				if len(got.Logits) != len(ids) || len(want.Logits) != len(ids) {
					t.Fatalf("positions: got %d, oracle %d, want %d", len(got.Logits), len(want.Logits), len(ids))
				}
				worst := 0.0
				for p := range ids {
					var diff, scale float64
					for i := range want.Logits[p] {
						diff = math.Max(diff, math.Abs(got.Logits[p][i]-want.Logits[p][i]))
						scale = math.Max(scale, math.Abs(want.Logits[p][i]))
					}
					worst = math.Max(worst, diff/scale)
				}
				if worst > 1e-4 {
					t.Errorf("max relative error %.2e > 1e-4", worst)
				}
			})
		}
	}
}
