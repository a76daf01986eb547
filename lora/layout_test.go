package lora

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/distillery/distillery/model"
)

var update = flag.Bool("update", false, "rewrite testdata/peft_llama_layout.json and adapter_config_all_linear.json from what Save writes")

// The golden files describe what HF PEFT writes for a tiny Llama, derived
// from PEFT's source (huggingface/peft, main as of PEFT 0.19), not from
// this package:
//
//   - tensor keys: PeftModel.base_model is the LoraModel, whose .model is
//     the transformers LlamaForCausalLM, so state-dict keys start with
//     base_model.model. and continue with the HF module path.
//   - shapes: tuners/lora/layer.py LoraLayer.update_layer makes
//     lora_A = nn.Linear(in_features, r, bias=False) and
//     lora_B = nn.Linear(r, out_features, bias=False): weights [r, in] and
//     [out, r].
//   - utils/save_and_load.py get_peft_model_state_dict keeps the keys with
//     "lora_" (bias "none"), adds the modules to save through
//     AuxiliaryTrainingWrapper.adapter_state_dict (utils/other.py
//     ModulesToSaveWrapper: state_dict[f"modules_to_save.{adapter}.{k}"]
//     stored under f"{name}.{k}", i.e. base_model.model.lm_head.weight), and
//     remove_adapter_name drops ".default" (lora_A.default.weight ->
//     lora_A.weight).
//   - peft_model.py PeftModel.save_pretrained writes the state dict with
//     safetensors' save_file(..., metadata={"format": "pt"}) in the
//     parameters' dtype (float32 adapters by default, autocast_adapter_dtype).
//   - all-linear: tuners/tuners_utils.py _maybe_include_all_linear_layers
//     selects every nn.Linear but the output embedding (lm_head) and, since
//     PEFT 0.14 (PR #2267), stores their full names as target_modules.
//   - config.py PeftConfigMixin.save_pretrained writes adapter_config.json
//     as json.dumps(asdict(config), indent=2, sort_keys=True), no final
//     newline; the field set is LoraConfig's of PEFT 0.19.1.
type layoutCase struct {
	Name  string `json:"name"`
	Model struct {
		HiddenSize        int  `json:"hidden_size"`
		IntermediateSize  int  `json:"intermediate_size"`
		NumAttentionHeads int  `json:"num_attention_heads"`
		NumKeyValueHeads  int  `json:"num_key_value_heads"`
		NumHiddenLayers   int  `json:"num_hidden_layers"`
		VocabSize         int  `json:"vocab_size"`
		TieWordEmbeddings bool `json:"tie_word_embeddings"`
	} `json:"model"`
	LoRA struct {
		R             int             `json:"r"`
		Alpha         float64         `json:"lora_alpha"`
		Dropout       float64         `json:"lora_dropout"`
		RSLoRA        bool            `json:"use_rslora"`
		TargetModules json.RawMessage `json:"target_modules"`
		ModulesToSave []string        `json:"modules_to_save"`
	} `json:"lora"`
	Tensors map[string]tensorLayout `json:"tensors"`
}

type tensorLayout struct {
	DType model.DType `json:"dtype"`
	Shape []int       `json:"shape"`
}

func (c layoutCase) configs(t *testing.T) (*model.Config, Config) {
	m := c.Model
	mc := &model.Config{ModelType: "llama", HiddenSize: m.HiddenSize, IntermediateSize: m.IntermediateSize,
		NumHiddenLayers: m.NumHiddenLayers, NumAttentionHeads: m.NumAttentionHeads, NumKeyValueHeads: m.NumKeyValueHeads,
		HeadDim: m.HiddenSize / m.NumAttentionHeads, RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 64,
		VocabSize: m.VocabSize, HiddenAct: "silu", TieWordEmbeddings: m.TieWordEmbeddings}
	if err := mc.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rank: c.LoRA.R, Alpha: c.LoRA.Alpha, Dropout: c.LoRA.Dropout, RSLoRA: c.LoRA.RSLoRA, ModulesToSave: c.LoRA.ModulesToSave}
	var one string
	if json.Unmarshal(c.LoRA.TargetModules, &one) == nil {
		cfg.TargetModules = []string{one}
	} else if err := json.Unmarshal(c.LoRA.TargetModules, &cfg.TargetModules); err != nil {
		t.Fatal(err)
	}
	return mc, cfg
}

func TestGoldenLayout(t *testing.T) {
	const layoutPath, configPath = "testdata/peft_llama_layout.json", "testdata/adapter_config_all_linear.json"
	raw, err := os.ReadFile(layoutPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var cases []layoutCase
	if err := json.Unmarshal(doc["cases"], &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 {
		t.Fatalf("%d golden cases, want 2", len(cases))
	}
	for i, c := range cases {
		mc, cfg := c.configs(t)
		base := model.RandomWeights(mc, 1, 0.02)
		a, err := New(cfg, mc, 1, base)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := a.Save(dir, "distillery/tiny-llama"); err != nil {
			t.Fatal(err)
		}
		f, err := model.OpenSafetensors(filepath.Join(dir, WeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]tensorLayout{}
		for name, info := range f.Header.Tensors {
			got[name] = tensorLayout{info.DType, info.Shape}
		}
		if md := f.Header.Metadata; !reflect.DeepEqual(md, map[string]string{"format": "pt"}) {
			t.Errorf("%s: metadata %v, want format pt", c.Name, md)
		}
		f.Close()
		written, err := os.ReadFile(filepath.Join(dir, ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			cases[i].Tensors = got
			if c.Name == "all_linear_lm_head" {
				if err := os.WriteFile(configPath, written, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		for name, want := range c.Tensors {
			if g, ok := got[name]; !ok {
				t.Errorf("%s: %s missing", c.Name, name)
			} else if !reflect.DeepEqual(g, want) {
				t.Errorf("%s: %s is %v, PEFT writes %v", c.Name, name, g, want)
			}
		}
		for name := range got {
			if _, ok := c.Tensors[name]; !ok {
				t.Errorf("%s: %s is not in PEFT's layout", c.Name, name)
			}
		}
		if c.Name == "all_linear_lm_head" {
			want, err := os.ReadFile(configPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(written, want) {
				t.Errorf("adapter_config.json differs from %s:\n%s", configPath, written)
			}
		}
	}
	if *update {
		cs, _ := json.Marshal(cases)
		doc["cases"] = cs
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(layoutPath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
