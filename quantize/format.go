package quantize

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/store"
)

// QuantConfig is config.json's quantization_config. For AWQ it is what
// AutoAWQ writes and HF transformers and vLLM read (quant_method "awq",
// version "gemm"); INT8 uses quant_method "distillery_int8", this
// package's own layout (see the package documentation).
type QuantConfig struct {
	QuantMethod         string   `json:"quant_method"`
	Bits                int      `json:"bits"`
	GroupSize           int      `json:"group_size"`
	ZeroPoint           bool     `json:"zero_point"`
	Version             string   `json:"version,omitempty"`
	ModulesToNotConvert []string `json:"modules_to_not_convert"`
}

// The quant_method values this package reads and writes.
const (
	methodAWQ  = "awq"
	methodInt8 = "distillery_int8"
)

// ReadQuantConfig returns the checkpoint config's quantization_config, or
// nil when it has none.
func ReadQuantConfig(cfg *model.Config) (*QuantConfig, error) {
	raw, ok := cfg.Extra["quantization_config"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var qc QuantConfig
	if err := json.Unmarshal(raw, &qc); err != nil {
		return nil, fmt.Errorf("quantization_config: %w", err)
	}
	switch {
	case qc.QuantMethod == methodAWQ:
		if qc.Bits != 4 {
			return nil, fmt.Errorf("quantization_config: awq with %d bits is not supported (4)", qc.Bits)
		}
		if v := strings.ToLower(qc.Version); v != "gemm" {
			return nil, fmt.Errorf("quantization_config: awq version %q is not supported (gemm)", qc.Version)
		}
		if !qc.ZeroPoint {
			return nil, fmt.Errorf("quantization_config: awq without zero_point is not supported")
		}
	case qc.QuantMethod == methodInt8:
		if qc.Bits != 8 {
			return nil, fmt.Errorf("quantization_config: %s with %d bits", methodInt8, qc.Bits)
		}
	default:
		return nil, fmt.Errorf("quantization_config: quant_method %q is not supported (awq, %s)", qc.QuantMethod, methodInt8)
	}
	return &qc, nil
}

// setQuantConfig stores qc as cfg's quantization_config.
func setQuantConfig(cfg *model.Config, qc *QuantConfig) {
	raw, _ := json.Marshal(qc)
	cfg.Extra = maps.Clone(cfg.Extra)
	if cfg.Extra == nil {
		cfg.Extra = map[string]json.RawMessage{}
	}
	cfg.Extra["quantization_config"] = raw
}

// tokenizerFiles are copied next to a quantized checkpoint when present.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"}

// Save writes the quantized checkpoint into dir: model.safetensors (the
// AutoAWQ GEMM layout for INT4), config.json with quantization_config, and
// the tokenizer files of the source checkpoint when it has them.
func (r *Result) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err := model.WriteWeights(dir, r.tensors, map[string]string{"format": "pt", "quantized_by": "distillery"}, 0); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err := r.Config.Save(dir); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if r.Source == "" {
		return nil
	}
	for _, name := range tokenizerFiles {
		data, err := os.ReadFile(filepath.Join(r.Source, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("save %s: %w", dir, err)
		}
		if err := store.WriteFileAtomic(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// Model builds the quantized model in memory, exactly as Load builds it
// from the saved checkpoint.
func (r *Result) Model(opts model.LoadOptions) (*model.Model, error) {
	byName := map[string]model.Tensor{}
	for _, t := range r.tensors {
		byName[t.Name] = t
	}
	m, err := build(r.Config, &r.Quant, byName, opts)
	if err != nil {
		return nil, err
	}
	m.Dir = r.Source
	return m, nil
}

// Tensors returns the checkpoint's tensors as they are written.
func (r *Result) Tensors() []model.Tensor { return slices.Clone(r.tensors) }

// Load reads a checkpoint folder: a plain one through model.Load, an AWQ
// (AutoAWQ GEMM, e.g. written by Save) or INT8 one with its weights kept
// packed in memory and dequantized inside every forward pass. 16-bit
// tensors stay 16-bit in memory and are cast to the compute dtype in the
// graph. opts.Params must be nil for a quantized checkpoint.
func Load(dir string, opts model.LoadOptions) (*model.Model, error) {
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	qc, err := ReadQuantConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	if qc == nil {
		return model.Load(dir, opts)
	}
	w, err := model.OpenWeights(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	defer w.Close()
	byName := map[string]model.Tensor{}
	for _, name := range w.Names() {
		t, err := w.Get(name)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
		byName[name] = t
	}
	m, err := build(cfg, qc, byName, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	m.Dir = dir
	return m, nil
}

// linearModule returns the module of a linear layer's weight name
// (model.layers.0.mlp.up_proj.weight -> model.layers.0.mlp.up_proj).
func linearModule(name string, shape []int) (string, bool) {
	if len(shape) != 2 || name == "model.embed_tokens.weight" {
		return "", false
	}
	return strings.CutSuffix(name, ".weight")
}

// build turns checkpoint tensors into a model whose Params dequantize the
// packed linear layers; names and shapes are checked against the config.
func build(cfg *model.Config, qc *QuantConfig, byName map[string]model.Tensor, opts model.LoadOptions) (*model.Model, error) {
	if opts.Params != nil {
		return nil, fmt.Errorf("a quantized checkpoint cannot take LoadOptions.Params (merge adapters before quantizing)")
	}
	dt, err := computeDType(opts.DType)
	if err != nil {
		return nil, err
	}
	ts := map[string]*tensors.Tensor{}
	used := map[string]bool{}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	take := func(name string) (model.Tensor, bool) {
		t, ok := byName[name]
		if ok {
			used[name] = true
		}
		return t, ok
	}
	for name, shape := range model.WeightShapes(cfg) {
		if module, ok := linearModule(name, shape); ok {
			out, in := shape[0], shape[1]
			if _, packed := byName[module+".qweight"]; packed {
				if err := loadAWQ(module, out, in, qc, take, ts); err != nil {
					bad("%v", err)
				}
				continue
			}
			if t, ok := byName[name]; ok && t.DType == model.I8 {
				if err := loadInt8(module, out, in, take, ts); err != nil {
					bad("%v", err)
				}
				continue
			}
		}
		t, ok := take(name)
		if !ok {
			bad("%s: missing", name)
			continue
		}
		if !slices.Equal(t.Shape, shape) {
			bad("%s: shape %v, config.json implies %v", name, t.Shape, shape)
			continue
		}
		tt, err := floatTensor(t)
		if err != nil {
			bad("%s: %v", name, err)
			continue
		}
		ts[name] = tt
	}
	for name := range byName {
		if used[name] || strings.HasSuffix(name, "rotary_emb.inv_freq") || (name == "lm_head.weight" && cfg.TieWordEmbeddings) {
			continue
		}
		bad("%s: not part of a %s model with this config", name, cfg.ModelType)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return model.NewFromTensors(cfg, ts, model.LoadOptions{Backend: opts.Backend, DType: opts.DType,
		Params: func(p model.PlainParams) model.Params { return qparams{PlainParams: p, dt: dt} }})
}

// loadAWQ checks and converts one AutoAWQ GEMM layer.
func loadAWQ(module string, out, in int, qc *QuantConfig, take func(string) (model.Tensor, bool), ts map[string]*tensors.Tensor) error {
	if qc.QuantMethod != methodAWQ {
		return fmt.Errorf("%s: packed INT4 weights in a %s checkpoint", module, qc.QuantMethod)
	}
	if out%8 != 0 {
		return fmt.Errorf("%s: %d outputs are not a multiple of 8", module, out)
	}
	g := qc.GroupSize
	if g <= 0 {
		g = in
	}
	if in%g != 0 {
		return fmt.Errorf("%s: group size %d does not divide %d inputs", module, g, in)
	}
	want := map[string][]int{".qweight": {in, out / 8}, ".qzeros": {in / g, out / 8}, ".scales": {in / g, out}}
	for _, suffix := range []string{".qweight", ".qzeros", ".scales"} {
		t, ok := take(module + suffix)
		if !ok {
			return fmt.Errorf("%s%s: missing", module, suffix)
		}
		if !slices.Equal(t.Shape, want[suffix]) {
			return fmt.Errorf("%s%s: shape %v, want %v (group size %d)", module, suffix, t.Shape, want[suffix], g)
		}
		var tt *tensors.Tensor
		var err error
		if suffix == ".scales" {
			tt, err = floatTensor(t)
		} else if t.DType != model.I32 {
			err = fmt.Errorf("dtype %s, want I32", t.DType)
		} else {
			var v []int32
			v, err = t.Int32()
			tt = tensors.FromFlatDataAndDimensions(v, t.Shape...)
		}
		if err != nil {
			return fmt.Errorf("%s%s: %w", module, suffix, err)
		}
		ts[module+suffix] = tt
	}
	if _, ok := take(module + ".weight"); ok {
		return fmt.Errorf("%s: both packed and float weights", module)
	}
	return nil
}

// loadInt8 checks and converts one INT8 layer.
func loadInt8(module string, out, in int, take func(string) (model.Tensor, bool), ts map[string]*tensors.Tensor) error {
	w, _ := take(module + ".weight")
	if !slices.Equal(w.Shape, []int{out, in}) {
		return fmt.Errorf("%s.weight: shape %v, want %v", module, w.Shape, []int{out, in})
	}
	s, ok := take(module + ".weight_scale")
	if !ok {
		return fmt.Errorf("%s.weight_scale: missing", module)
	}
	if !slices.Equal(s.Shape, []int{out, 1}) {
		return fmt.Errorf("%s.weight_scale: shape %v, want %v", module, s.Shape, []int{out, 1})
	}
	q := make([]int8, len(w.Data))
	for i, b := range w.Data {
		q[i] = int8(b)
	}
	st, err := floatTensor(s)
	if err != nil {
		return fmt.Errorf("%s.weight_scale: %w", module, err)
	}
	ts[module+".weight"] = tensors.FromFlatDataAndDimensions(q, out, in)
	ts[module+".weight_scale"] = st
	return nil
}

// floatTensor converts a safetensors float tensor keeping its width: F16
// and BF16 stay 16-bit in memory, F32 stays F32 (F64 becomes F32).
func floatTensor(t model.Tensor) (*tensors.Tensor, error) {
	n := t.NumElements()
	if len(t.Data) != n*t.DType.Size() {
		return nil, fmt.Errorf("%s%v needs %d bytes, data has %d", t.DType, t.Shape, n*t.DType.Size(), len(t.Data))
	}
	switch t.DType {
	case model.F16:
		v := make([]float16.Float16, n)
		for i := range v {
			v[i] = float16.Float16(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
		return tensors.FromFlatDataAndDimensions(v, t.Shape...), nil
	case model.BF16:
		v := make([]bfloat16.BFloat16, n)
		for i := range v {
			v[i] = bfloat16.BFloat16(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
		return tensors.FromFlatDataAndDimensions(v, t.Shape...), nil
	case model.F32, model.F64:
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		return tensors.FromFlatDataAndDimensions(v, t.Shape...), nil
	}
	return nil, fmt.Errorf("dtype %s is not a float type", t.DType)
}
