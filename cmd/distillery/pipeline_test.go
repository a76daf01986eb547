package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillery/distillery/lora"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/pipeline"
	"github.com/distillery/distillery/routes"
	"github.com/distillery/distillery/store"
)

// tinyStudent writes a small random student with a 320-token tokenizer
// trained on the Fine Foods reviews.
func tinyStudent(t *testing.T, root string) string {
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	if r := runCLI(t, dir, "tokenizer", "train", "--vocab", "320", "--out", tok, filepath.Join(root, "data/fine-foods/train.jsonl")); r.code != 0 {
		t.Fatalf("tokenizer train: %s", r.stderr)
	}
	cfg := `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":32,"intermediate_size":64,
"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":16,"rms_norm_eps":1e-5,"rope_theta":10000,
"max_position_embeddings":256,"vocab_size":320,"tie_word_embeddings":true,"hidden_act":"silu","torch_dtype":"float32"}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644)
	out := filepath.Join(dir, "student")
	if r := runCLI(t, dir, "model", "init", "--config", "config.json", "--out", out, "--seed", "3", "--tokenizer", tok); r.code != 0 {
		t.Fatalf("model init: %s", r.stderr)
	}
	return out
}

// TestQuickstartPipeline runs the quickstart through every stage with a
// tiny student and `distillery serve` as the teacher: the release lands in
// the store with its INT4 model, PEFT adapter and routes.json; the adapter
// loads back with the trained model's logits; and an unreachable gate
// exits 3 without publishing.
func TestQuickstartPipeline(t *testing.T) {
	root := repoRoot(t)
	base, id := localTeacher(t)
	student := tinyStudent(t, root)
	runs, pub := t.TempDir(), t.TempDir()
	env := []string{"DISTILLERY_TEACHER_URL=" + base}
	args := []string{"--runs-dir", runs, "run", "--json", "--set", "teacher.model=" + id, "--set", "student.base=" + student,
		"--set", "data.max_examples=40", "--set", "train.max_steps=3", "--set", "train.eval_every=0", "--set", "student.max_seq_len=128",
		"--set", "quantize.group_size=32", "--set", "quantize.calib_samples=8", "--set", "publish.store=file://" + pub}
	quick := filepath.Join(root, "recipes/examples/quickstart.yaml")
	r := runWithEnv(t, env, root, append(args, "--set", "eval.min_parity=0", "--set", "eval.max_int4_drop=1", quick)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var m pipeline.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Stages {
		if s.Status != pipeline.StatusDone {
			t.Errorf("stage %s: %s %s", s.Name, s.Status, s.Error)
		}
	}
	runDir := filepath.Join(runs, m.RecipeName, m.RunID)

	// The release: INT4 model, adapter, routes.json, report; latest points at it.
	ctx := context.Background()
	s, err := store.Open(ctx, "file://"+pub, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := store.Latest(ctx, s, "fine-foods-sentiment")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range rel.Files {
		names[f.Key] = true
	}
	for _, want := range []string{"model/config.json", "model/model.safetensors", "model/tokenizer.json", "adapter/adapter_config.json",
		"adapter/adapter_model.safetensors", "routes.json", "report.html", "report.json", "manifest.json"} {
		if !names[want] {
			t.Errorf("release lacks %s (has %v)", want, names)
		}
	}
	dl := t.TempDir()
	if err := store.Download(ctx, s, rel, dl); err != nil {
		t.Fatal(err)
	}
	rt, err := routes.Read(filepath.Join(dl, "routes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Task != "classification" || len(rt.Labels) != 2 || rt.Artifacts.Model != "model" {
		t.Errorf("routes.json: %+v", rt)
	}
	if cfg := readFile(t, filepath.Join(dl, "model/config.json")); !strings.Contains(cfg, `"quant_method": "awq"`) && !strings.Contains(cfg, `"quant_method":"awq"`) {
		t.Errorf("published model is not AWQ: %.300s", cfg)
	}

	// The PEFT adapter on the base gives the trained (merged) model's logits.
	trained, err := model.Load(filepath.Join(runDir, "train", "model"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	baseModel, err := model.Load(student, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := lora.Load(filepath.Join(runDir, "train", "adapter"), baseModel.Config)
	if err != nil {
		t.Fatal(err)
	}
	withAdapter, err := ad.Model(baseModel.Config, baseModel.HostWeights(), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := [][]int{{5, 17, 42, 99, 3, 250, 7}}
	a, err := trained.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	b, err := withAdapter.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	for p := range a[0] {
		if e := model.RelativeError(b[0][p], a[0][p]); e > 1e-4 {
			t.Errorf("position %d: adapter vs merged logits differ by %g", p, e)
		}
	}

	// An unreachable gate: exit 3, the failed threshold named, nothing published.
	r = runWithEnv(t, env, root, append(args, "--set", "eval.min_parity=10", quick)...)
	if r.code != 3 || !strings.Contains(r.stderr, "student/teacher") {
		t.Fatalf("gate: exit %d\n%s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	if st := m.Stage("publish").Status; st == pipeline.StatusDone {
		t.Errorf("publish ran after a failed gate")
	}
	if again, _ := store.Latest(ctx, s, "fine-foods-sentiment"); again.Version != rel.Version {
		t.Errorf("latest moved to %s after a failed gate", again.Version)
	}
	// The failed run's report compares with the published version and shows
	// the student before distillation.
	var rep struct {
		Before   *float64 `json:"student_before_distillation"`
		Previous *struct {
			Version string `json:"version"`
		} `json:"previous"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(runs, m.RecipeName, m.RunID, "eval", "report.json"))), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Before == nil || rep.Previous == nil || rep.Previous.Version != rel.Version {
		t.Errorf("report: before %v, previous %+v (want %s)", rep.Before, rep.Previous, rel.Version)
	}
}
