package lora

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/distillery/distillery/model"
)

// tinyConfig is a 2-layer GQA Llama small enough to compile in a blink.
func tinyConfig(tied bool) *model.Config {
	return &model.Config{ModelType: "llama", HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 8, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositionEmbeddings: 64, VocabSize: 64, HiddenAct: "silu", TieWordEmbeddings: tied}
}

// perturb gives every tensor of a random values (B too), so the adapter
// changes the model.
func perturb(t *testing.T, a *Adapter, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	vals := map[string][]float32{}
	for n, v := range a.Values() {
		w := slices.Clone(v)
		for i := range w {
			w[i] += float32(rng.NormFloat64() * 0.1)
		}
		vals[n] = w
	}
	if err := a.SetValues(vals); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidation(t *testing.T) {
	mc := tinyConfig(false)
	base := model.RandomWeights(mc, 1, 0.1)
	short := map[string][]float32{"model.layers.0.self_attn.q_proj.weight": make([]float32, 5)}
	ok := Config{Rank: 4, Alpha: 8, TargetModules: []string{"q_proj"}}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	for _, tc := range []struct {
		name string
		cfg  Config
		base map[string][]float32
		want string // substring of the error; "" for success
	}{
		{"ok", ok, base, ""},
		{"ok without base", ok, nil, ""},
		{"rank", with(func(c *Config) { c.Rank = 0 }), base, "rank must be positive"},
		{"alpha", with(func(c *Config) { c.Alpha = 0 }), base, "alpha must be positive"},
		{"dropout", with(func(c *Config) { c.Dropout = 1 }), base, "dropout must be in [0, 1)"},
		{"no targets", with(func(c *Config) { c.TargetModules = nil }), base, "target_modules is empty"},
		{"unknown target", with(func(c *Config) { c.TargetModules = []string{"q_proj", "qkv_proj"} }), base, `"qkv_proj" matches no linear layer`},
		{"layer out of range", with(func(c *Config) { c.TargetModules = []string{"model.layers.2.self_attn.q_proj"} }), base, "matches no linear layer"},
		{"all-linear mixed", with(func(c *Config) { c.TargetModules = []string{"all-linear", "q_proj"} }), base, "list it alone"},
		{"lm_head target", with(func(c *Config) { c.TargetModules = []string{"lm_head"} }), base, "use modules_to_save"},
		{"bad module to save", with(func(c *Config) { c.ModulesToSave = []string{"norm"} }), base, `modules_to_save "norm" is not supported`},
		{"save without base", with(func(c *Config) { c.ModulesToSave = []string{"lm_head"} }), nil, "needs the base weights"},
		{"short base", ok, short, "q_proj.weight has 5 values"},
		{"missing base", ok, map[string][]float32{}, "q_proj.weight is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, mc, 1, tc.base)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			case err != nil && !strings.HasPrefix(err.Error(), "lora: "):
				t.Fatalf("error %q lacks the lora: prefix", err)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	mc := tinyConfig(false)
	for _, tc := range []struct {
		targets []string
		want    []string
	}{
		{[]string{"q_proj", "v_proj"}, []string{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
			"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}},
		{[]string{"model.layers.1.mlp.down_proj"}, []string{"model.layers.1.mlp.down_proj"}},
		{[]string{"mlp.up_proj", "up_proj"}, []string{"model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj"}},
	} {
		a, err := New(Config{Rank: 2, Alpha: 4, TargetModules: tc.targets}, mc, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Modules(), tc.want) {
			t.Errorf("%v: modules %v, want %v", tc.targets, a.Modules(), tc.want)
		}
	}
	a, err := New(Config{Rank: 2, Alpha: 4, TargetModules: []string{AllLinear}}, mc, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(a.Modules()); got != 14 {
		t.Fatalf("all-linear: %d modules, want 14: %v", got, a.Modules())
	}
	for _, m := range a.Modules() {
		if strings.Contains(m, "lm_head") {
			t.Fatalf("all-linear selected %s", m)
		}
	}
}

func TestInit(t *testing.T) {
	mc := tinyConfig(true)
	base := model.RandomWeights(mc, 1, 0.1)
	cfg := Config{Rank: 4, Alpha: 8, TargetModules: []string{"v_proj", "down_proj"}, ModulesToSave: []string{"lm_head"}}
	a, err := New(cfg, mc, 42, base)
	if err != nil {
		t.Fatal(err)
	}
	shapes := a.Shapes()
	for _, m := range a.Modules() {
		A, B := a.Values()[m+".lora_A.weight"], a.Values()[m+".lora_B.weight"]
		in := shapes[m+".lora_A.weight"][1]
		bound := 1 / math.Sqrt(float64(in)) // kaiming_uniform_(a=sqrt(5))
		var maxAbs float64
		for _, v := range A {
			maxAbs = max(maxAbs, math.Abs(float64(v)))
		}
		if maxAbs > bound || maxAbs < 0.9*bound {
			t.Errorf("%s lora_A: max |v| %v, want just under %v", m, maxAbs, bound)
		}
		for _, v := range B {
			if v != 0 {
				t.Fatalf("%s lora_B not zero", m)
			}
		}
	}
	if got, want := shapes["model.layers.0.mlp.down_proj.lora_A.weight"], []int{4, 48}; !slices.Equal(got, want) {
		t.Errorf("down_proj lora_A shape %v, want %v", got, want)
	}
	if got, want := shapes["model.layers.0.self_attn.v_proj.lora_B.weight"], []int{16, 4}; !slices.Equal(got, want) {
		t.Errorf("v_proj lora_B shape %v, want %v", got, want)
	}
	// Tied model: the lm_head copy starts as the embedding.
	if !slices.Equal(a.Values()["lm_head.weight"], base["model.embed_tokens.weight"]) {
		t.Error("lm_head copy differs from the tied embedding")
	}
	if a.MergedConfig().TieWordEmbeddings || !a.ModelConfig.TieWordEmbeddings {
		t.Error("MergedConfig must untie, without touching the adapter's model config")
	}

	again, _ := New(cfg, mc, 42, base)
	other, _ := New(cfg, mc, 43, base)
	n := "model.layers.1.self_attn.v_proj.lora_A.weight"
	if !slices.Equal(a.Values()[n], again.Values()[n]) {
		t.Error("same seed, different lora_A")
	}
	if slices.Equal(a.Values()[n], other.Values()[n]) {
		t.Error("different seeds, same lora_A")
	}

	if s := a.Scale(); s != 2 {
		t.Errorf("scale %v, want alpha/r = 2", s)
	}
	cfg.RSLoRA = true
	if s := cfg.Scale(); s != 4 {
		t.Errorf("rslora scale %v, want alpha/sqrt(r) = 4", s)
	}
}

func TestNamesCountSetValues(t *testing.T) {
	mc := tinyConfig(false)
	base := model.RandomWeights(mc, 1, 0.1)
	a, err := New(Config{Rank: 2, Alpha: 4, TargetModules: []string{"q_proj"}, ModulesToSave: []string{"embed_tokens"}}, mc, 1, base)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model.embed_tokens.weight",
		"model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.q_proj.lora_B.weight",
		"model.layers.1.self_attn.q_proj.lora_A.weight", "model.layers.1.self_attn.q_proj.lora_B.weight"}
	if !slices.Equal(a.Names(), want) {
		t.Fatalf("names %v, want %v", a.Names(), want)
	}
	trainable, total := a.Count(model.WeightShapes(mc))
	lora := int64(2 * (2*32 + 32*2)) // two layers of A [2,32] and B [32,2]
	wantTrainable := lora + 64*32
	var baseTotal int64
	for _, v := range base {
		baseTotal += int64(len(v))
	}
	if trainable != wantTrainable || total != baseTotal+wantTrainable {
		t.Fatalf("count %d/%d, want %d/%d", trainable, total, wantTrainable, baseTotal+wantTrainable)
	}

	vals := a.Values()
	delete(vals, "model.embed_tokens.weight")
	vals["bogus"] = []float32{1}
	vals["model.layers.0.self_attn.q_proj.lora_A.weight"] = []float32{1}
	err = a.SetValues(vals)
	for _, frag := range []string{"model.embed_tokens.weight is missing", "bogus is not a tensor", "q_proj.lora_A.weight has 1 values"} {
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("SetValues error %v, want %q", err, frag)
		}
	}
	perturb(t, a, 3)
	if a.Values()["model.layers.1.self_attn.q_proj.lora_B.weight"][0] == 0 {
		t.Fatal("SetValues did not take")
	}
}
