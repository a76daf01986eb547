package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestPruneCommand prunes a Qwen3-shaped checkpoint in depth and width with
// calibration text, and serves the result's logits.
func TestPruneCommand(t *testing.T) {
	root := repoRoot(t)
	src := qwenCheckpoint(t, 128)
	dst := filepath.Join(t.TempDir(), "pruned")
	r := runCLI(t, root, "model", "prune", "--in", src, "--out", dst, "--keep-layers", "1", "--width", "0.5", "--heads", "0.5",
		"--calib", "data/fine-foods/test.jsonl", "--field", "text", "--calib-samples", "8", "--calib-len", "32", "--json")
	if r.code != 0 {
		t.Fatalf("prune: exit %d\n%s", r.code, r.stderr)
	}
	var out struct {
		Report struct {
			Layers             int   `json:"layers"`
			Intermediate       int   `json:"intermediate_size"`
			NonEmbeddingBefore int64 `json:"non_embedding_before"`
			NonEmbeddingAfter  int64 `json:"non_embedding_after"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	rep := out.Report
	if rep.Layers != 1 || rep.Intermediate != 32 || rep.NonEmbeddingAfter*3 > rep.NonEmbeddingBefore {
		t.Errorf("report %+v", rep)
	}
	if g := runCLI(t, root, "generate", "--model", dst, "--prompt", "tea", "--max-tokens", "3"); g.code != 0 {
		t.Errorf("the pruned checkpoint does not run: %s", g.stderr)
	}
}
