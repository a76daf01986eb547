package lora

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/distillery/distillery/model"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	mc := tinyConfig(true)
	base := model.RandomWeights(mc, 1, 0.1)
	cfg := Config{Rank: 4, Alpha: 12, Dropout: 0.05, RSLoRA: true, TargetModules: []string{AllLinear}, ModulesToSave: []string{"lm_head", "embed_tokens"}}
	a, err := New(cfg, mc, 2, base)
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, a, 3)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := a.Save(dir, "base/model"); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir, mc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Values(), b.Values()) {
		t.Fatal("tensors differ after Save and Load")
	}
	if !slices.Equal(a.Modules(), b.Modules()) || !slices.Equal(a.Saved(), b.Saved()) || a.Scale() != b.Scale() ||
		b.Config.Rank != 4 || b.Config.Alpha != 12 || b.Config.Dropout != 0.05 || !b.Config.RSLoRA {
		t.Fatalf("config differs after Save and Load: %+v vs %+v", a.Config, b.Config)
	}
	want := logits(t, adapterModel(t, a, mc, base, model.LoadOptions{}))
	if d := maxDiff(logits(t, adapterModel(t, b, mc, base, model.LoadOptions{})), want); d != 0 {
		t.Fatalf("logits differ by %g after Save and Load", d)
	}
	// No temp files are left next to the adapter.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{ConfigFile, WeightsFile}) {
		t.Fatalf("folder holds %v", names)
	}

	// BF16 storage rounds the values and keeps the layout.
	bdir := filepath.Join(t.TempDir(), "bf16")
	if err := a.SaveAs(bdir, "", model.BF16); err != nil {
		t.Fatal(err)
	}
	c, err := Load(bdir, mc)
	if err != nil {
		t.Fatal(err)
	}
	for n, v := range a.Values() {
		for i := range v {
			if model.BF16ToFloat32(model.Float32ToBF16(v[i])) != c.Values()[n][i] {
				t.Fatalf("%s[%d]: bf16 round trip %v -> %v", n, i, v[i], c.Values()[n][i])
			}
		}
	}
}

// peftFolder writes an adapter as PEFT's own code may leave it: keys with
// the adapter name, bf16 tensors, and the config of testdata's golden file
// (the layout test's tiny Llama), changed by edit.
func peftFolder(t *testing.T, edit func(cfg map[string]any, ts map[string]model.Tensor)) (string, *model.Config) {
	t.Helper()
	raw, err := os.ReadFile("testdata/adapter_config_all_linear.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["target_modules"] = []any{"q_proj", "v_proj"}
	cfg["peft_version"] = "0.19.1"
	mc := &model.Config{ModelType: "llama", HiddenSize: 64, IntermediateSize: 128, NumHiddenLayers: 2, NumAttentionHeads: 4,
		NumKeyValueHeads: 2, HeadDim: 16, RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 64, VocabSize: 256, HiddenAct: "silu"}
	ts := map[string]model.Tensor{}
	put := func(key string, shape ...int) {
		v := make([]float32, numel(shape))
		for i := range v {
			v[i] = float32(i%7) / 8
		}
		ts[key] = model.NewTensor(key, model.BF16, shape, v)
	}
	for _, l := range []string{"0", "1"} {
		p := "base_model.model.model.layers." + l + ".self_attn."
		put(p+"q_proj.lora_A.default.weight", 8, 64)
		put(p+"q_proj.lora_B.default.weight", 64, 8)
		put(p+"v_proj.lora_A.default.weight", 8, 64)
		put(p+"v_proj.lora_B.default.weight", 32, 8)
	}
	put("base_model.model.lm_head.modules_to_save.default.weight", 256, 64)
	if edit != nil {
		edit(cfg, ts)
	}
	dir := t.TempDir()
	out, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), out, 0o644); err != nil {
		t.Fatal(err)
	}
	var list []model.Tensor
	for k, v := range ts {
		v.Name = k
		list = append(list, v)
	}
	if err := model.WriteSafetensors(filepath.Join(dir, WeightsFile), list, nil); err != nil {
		t.Fatal(err)
	}
	return dir, mc
}

func TestLoadPEFT(t *testing.T) {
	dir, mc := peftFolder(t, nil)
	a, err := Load(dir, mc)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Names(); len(got) != 9 || got[0] != "lm_head.weight" {
		t.Fatalf("names %v", got)
	}
	if v := a.Values()["model.layers.1.self_attn.v_proj.lora_B.weight"]; v[1] != 1.0/8 {
		t.Fatalf("value %v, want 0.125", v[1])
	}

	const q0A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
	for _, tc := range []struct {
		name string
		edit func(cfg map[string]any, ts map[string]model.Tensor)
		want []string // fragments of the error
	}{
		{"unknown key", func(_ map[string]any, ts map[string]model.Tensor) {
			ts["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"] = ts[q0A]
		}, []string{"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight: not a tensor of this adapter"}},
		{"no prefix", func(_ map[string]any, ts map[string]model.Tensor) {
			ts["model.layers.0.self_attn.q_proj.lora_A.weight"] = ts[q0A]
			delete(ts, q0A)
		}, []string{"model.layers.0.self_attn.q_proj.lora_A.weight: not a tensor", q0A[:len(q0A)-len(".default.weight")] + ".weight: missing"}},
		{"shape", func(_ map[string]any, ts map[string]model.Tensor) {
			ts[q0A] = model.NewTensor(q0A, model.F32, []int{4, 64}, make([]float32, 256))
		}, []string{q0A + ": shape [4 64], want [8 64]"}},
		{"missing", func(_ map[string]any, ts map[string]model.Tensor) {
			delete(ts, "base_model.model.lm_head.modules_to_save.default.weight")
		}, []string{"base_model.model.lm_head.weight: missing"}},
		{"duplicate", func(_ map[string]any, ts map[string]model.Tensor) {
			ts["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = ts[q0A]
		}, []string{"duplicates"}},
		{"regex", func(cfg map[string]any, _ map[string]model.Tensor) {
			cfg["target_modules"] = `.*\.(q|v)_proj`
		}, []string{"is a regular expression"}},
		{"dora", func(cfg map[string]any, _ map[string]model.Tensor) { cfg["use_dora"] = true }, []string{"use_dora = true is not supported"}},
		{"bias", func(cfg map[string]any, _ map[string]model.Tensor) { cfg["bias"] = "lora_only" }, []string{`bias "lora_only"`}},
		{"rank pattern", func(cfg map[string]any, _ map[string]model.Tensor) {
			cfg["rank_pattern"] = map[string]any{"q_proj": 4}
		}, []string{`rank_pattern = {"q_proj":4} is not supported`}},
		{"layers", func(cfg map[string]any, _ map[string]model.Tensor) { cfg["layers_to_transform"] = []any{0} }, []string{"layers_to_transform = [0]"}},
		{"pissa", func(cfg map[string]any, _ map[string]model.Tensor) { cfg["init_lora_weights"] = "pissa" }, []string{"init_lora_weights pissa"}},
		{"peft type", func(cfg map[string]any, _ map[string]model.Tensor) { cfg["peft_type"] = "IA3" }, []string{`peft_type "IA3"`}},
		{"task", func(cfg map[string]any, _ map[string]model.Tensor) { cfg["task_type"] = "SEQ_CLS" }, []string{`task_type "SEQ_CLS"`}},
		{"no targets", func(cfg map[string]any, _ map[string]model.Tensor) { delete(cfg, "target_modules") }, []string{"target_modules is missing"}},
		{"bad target", func(cfg map[string]any, _ map[string]model.Tensor) {
			cfg["target_modules"] = []any{"q_proj", "c_attn"}
		}, []string{`"c_attn" matches no linear layer`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, mc := peftFolder(t, tc.edit)
			_, err := Load(dir, mc)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "lora: lora:") {
				t.Errorf("error %q repeats its prefix", err)
			}
			if !strings.HasPrefix(err.Error(), "lora: load ") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}

	// A folder with only PEFT's legacy pickle file.
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, ConfigFile), []byte(`{"peft_type":"LORA","r":8,"target_modules":["q_proj"]}`), 0o644)
	os.WriteFile(filepath.Join(bin, "adapter_model.bin"), []byte("pickle"), 0o644)
	if _, err := Load(bin, mc); err == nil || !strings.Contains(err.Error(), "adapter_model.bin") {
		t.Fatalf("error %v, want one about adapter_model.bin", err)
	}
	// target_modules "all-linear" as a string, as a hand-written config has it.
	all := t.TempDir()
	os.WriteFile(filepath.Join(all, ConfigFile), []byte(`{"peft_type":"LORA","r":8,"target_modules":"all-linear"}`), 0o644)
	if _, err := Load(all, mc); err == nil || !strings.Contains(err.Error(), "adapter_model.safetensors") {
		t.Fatalf("error %v, want the config accepted and the weights missing", err)
	}
}
