// Package model runs Llama-family HuggingFace checkpoints (Llama 3.x,
// Qwen2/2.5/3, SmolLM2, Mistral) in GoMLX: config.json, safetensors weights,
// tokenizer.json, batched forward passes with a KV cache, and generation.
package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distillery/distillery/store"
)

// Config is the subset of a HuggingFace config.json that defines a
// Llama-family decoder. Fields that change the math and that this runtime
// does not implement are rejected by Validate, by name.
type Config struct {
	Architectures         []string     `json:"architectures,omitempty"`
	ModelType             string       `json:"model_type"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumHiddenLayers       int          `json:"num_hidden_layers"`
	NumAttentionHeads     int          `json:"num_attention_heads"`
	NumKeyValueHeads      int          `json:"num_key_value_heads,omitempty"`
	HeadDim               int          `json:"head_dim,omitempty"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	RopeTheta             float64      `json:"rope_theta,omitempty"`
	RopeScaling           *RopeScaling `json:"rope_scaling,omitempty"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"`
	VocabSize             int          `json:"vocab_size"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	AttentionBias         bool         `json:"attention_bias"`
	MLPBias               bool         `json:"mlp_bias,omitempty"`
	HiddenAct             string       `json:"hidden_act"`
	TorchDType            string       `json:"torch_dtype,omitempty"`
	BOSTokenID            *int         `json:"bos_token_id,omitempty"`
	EOSTokenID            TokenIDs     `json:"eos_token_id,omitempty"`
	PadTokenID            *int         `json:"pad_token_id,omitempty"`
	SlidingWindow         *int         `json:"sliding_window,omitempty"`
	UseSlidingWindow      bool         `json:"use_sliding_window,omitempty"`

	// Extra holds fields this runtime reads but that do not change the math
	// (kept so Save writes them back).
	Extra map[string]json.RawMessage `json:"-"`
}

// RopeScaling is config.json's rope_scaling.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type,omitempty"`
	Type                          string  `json:"type,omitempty"` // older spelling of rope_type
	Factor                        float64 `json:"factor,omitempty"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
}

// Kind is rope_type, or the older type.
func (r *RopeScaling) Kind() string {
	if r.RopeType != "" {
		return r.RopeType
	}
	return r.Type
}

// TokenIDs is an id or a list of ids (eos_token_id may be either).
type TokenIDs []int

func (t *TokenIDs) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*t = nil
		return nil
	}
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*t = TokenIDs{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want an id or a list of ids: %w", err)
	}
	*t = many
	return nil
}

func (t TokenIDs) MarshalJSON() ([]byte, error) {
	if len(t) == 1 {
		return json.Marshal(t[0])
	}
	return json.Marshal([]int(t))
}

// supportedTypes are the model_type values of the Llama family.
var supportedTypes = map[string]bool{"llama": true, "qwen2": true, "qwen3": true, "mistral": true}

// harmless are config.json fields that do not change inference.
var harmless = map[string]bool{
	"transformers_version": true, "initializer_range": true, "use_cache": true, "pretraining_tp": true,
	"attention_dropout": true, "max_window_layers": true, "layer_types": true, "tie_embeddings": true,
	"_name_or_path": true, "torchscript": true, "output_attentions": true, "output_hidden_states": true,
	"return_dict": true, "is_decoder": true, "bad_words_ids": true, "decoder_start_token_id": true,
	"task_specific_params": true, "id2label": true, "label2id": true, "problem_type": true,
	"tokenizer_class": true, "prefix": true, "sep_token_id": true, "unk_token_id": true,
	"quantization_config": true, "dtype": true, "model_name": true,
}

// ParseConfig decodes config.json and validates it.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	known := jsonFieldNames(c)
	var unknown []string
	for k, v := range raw {
		switch {
		case known[k]:
		case harmless[k]:
			if c.Extra == nil {
				c.Extra = map[string]json.RawMessage{}
			}
			c.Extra[k] = v
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("config.json: unsupported field(s) %s: this runtime implements the Llama family (llama, qwen2, qwen3, mistral)", strings.Join(unknown, ", "))
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.ModelType == "qwen2" {
		c.AttentionBias = true // Qwen2 always has q/k/v bias
	}
	return &c, c.Validate()
}

func jsonFieldNames(v any) map[string]bool {
	data, _ := json.Marshal(v)
	var m map[string]json.RawMessage
	json.Unmarshal(data, &m)
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	for _, k := range []string{"num_key_value_heads", "head_dim", "rope_theta", "rope_scaling", "mlp_bias", "architectures",
		"torch_dtype", "bos_token_id", "eos_token_id", "pad_token_id", "sliding_window", "use_sliding_window"} {
		out[k] = true
	}
	return out
}

// Validate checks that the config describes a model this runtime can run.
func (c *Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if !supportedTypes[c.ModelType] {
		bad("model_type %q is not supported (llama, qwen2, qwen3, mistral)", c.ModelType)
	}
	for name, v := range map[string]int{"hidden_size": c.HiddenSize, "intermediate_size": c.IntermediateSize,
		"num_hidden_layers": c.NumHiddenLayers, "num_attention_heads": c.NumAttentionHeads,
		"vocab_size": c.VocabSize, "max_position_embeddings": c.MaxPositionEmbeddings, "head_dim": c.HeadDim} {
		if v <= 0 {
			bad("%s must be positive, got %d", name, v)
		}
	}
	if c.NumAttentionHeads > 0 && c.NumKeyValueHeads > 0 && c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		bad("num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDim%2 != 0 {
		bad("head_dim must be even for RoPE, got %d", c.HeadDim)
	}
	if c.HiddenAct != "silu" {
		bad("hidden_act %q is not supported (silu)", c.HiddenAct)
	}
	if c.RMSNormEps <= 0 || math.IsNaN(c.RMSNormEps) {
		bad("rms_norm_eps must be positive")
	}
	if c.MLPBias {
		bad("mlp_bias true is not supported")
	}
	if c.UseSlidingWindow || (c.ModelType == "mistral" && c.SlidingWindow != nil && *c.SlidingWindow < c.MaxPositionEmbeddings) {
		bad("sliding-window attention is not supported (sliding_window/use_sliding_window)")
	}
	if r := c.RopeScaling; r != nil {
		switch r.Kind() {
		case "llama3":
			if r.Factor <= 0 || r.LowFreqFactor <= 0 || r.HighFreqFactor <= r.LowFreqFactor || r.OriginalMaxPositionEmbeddings <= 0 {
				bad("rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings")
			}
		case "linear":
			if r.Factor <= 0 {
				bad("rope_scaling linear needs factor > 0")
			}
		case "default", "":
		default:
			bad("rope_scaling type %q is not supported (llama3, linear)", r.Kind())
		}
	}
	switch c.TorchDType {
	case "", "float32", "bfloat16", "float16":
	default:
		bad("torch_dtype %q is not supported (float32, bfloat16, float16)", c.TorchDType)
	}
	if len(errs) > 0 {
		return fmt.Errorf("config.json: %s", strings.Join(errs, "; "))
	}
	return nil
}

// LoadConfig reads DIR/config.json (or a config.json path).
func LoadConfig(path string) (*Config, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Save writes config.json into dir, atomically.
func (c *Config) Save(dir string) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	var m map[string]json.RawMessage
	json.Unmarshal(data, &m)
	for k, v := range c.Extra {
		m[k] = v
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(filepath.Join(dir, "config.json"), append(out, '\n'))
}

// InvFreq returns RoPE's inverse frequencies (head_dim/2 of them), with
// rope_scaling applied as HuggingFace does.
func (c *Config) InvFreq() []float64 {
	half := c.HeadDim / 2
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
	}
	r := c.RopeScaling
	if r == nil {
		return inv
	}
	switch r.Kind() {
	case "linear":
		for i := range inv {
			inv[i] /= r.Factor
		}
	case "llama3":
		old := float64(r.OriginalMaxPositionEmbeddings)
		lowWavelen := old / r.LowFreqFactor
		highWavelen := old / r.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen > lowWavelen:
				inv[i] = f / r.Factor
			case wavelen < highWavelen:
				inv[i] = f
			default:
				smooth := (old/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				inv[i] = (1-smooth)*f/r.Factor + smooth*f
			}
		}
	}
	return inv
}

// QKNorm reports whether attention applies RMSNorm to q and k per head (Qwen3).
func (c *Config) QKNorm() bool { return c.ModelType == "qwen3" }
