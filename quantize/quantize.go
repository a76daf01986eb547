package quantize

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
)

// The quantization methods.
const (
	MethodAWQ  = "awq"  // INT4, activation-aware scales (and optional clipping) searched on calibration text
	MethodRTN  = "rtn"  // INT4, plain round-to-nearest: the baseline
	MethodINT8 = "int8" // INT8 weights, symmetric per output channel
)

// Options configure Quantize.
type Options struct {
	// Method is MethodAWQ (default), MethodRTN or MethodINT8.
	Method string
	// GroupSize is the number of input channels sharing a scale and zero
	// point for INT4: 32, 64 or 128 (default 128).
	GroupSize int
	// ClipSearch adds AWQ's weight-clipping search (AWQ only).
	ClipSearch bool
	// Grid is the number of α values tried in [0, 1) (default 20).
	Grid int
	// ModulesToNotConvert lists modules kept in 16-bit: a module whose path
	// contains one of these strings is not quantized (as in HF transformers
	// and vLLM). Layers whose shapes do not fit the group size are added by
	// path.
	ModulesToNotConvert []string
	// Progress, when set, is called after each calibration batch and each
	// quantized decoder layer.
	Progress func(done, total int)
}

func (o *Options) defaults() error {
	if o.Method == "" {
		o.Method = MethodAWQ
	}
	switch o.Method {
	case MethodAWQ, MethodRTN, MethodINT8:
	default:
		return fmt.Errorf("quantize: method %q: want awq, rtn or int8", o.Method)
	}
	if o.GroupSize == 0 {
		o.GroupSize = 128
	}
	if o.Method != MethodINT8 && o.GroupSize != 32 && o.GroupSize != 64 && o.GroupSize != 128 {
		return fmt.Errorf("quantize: group size %d: want 32, 64 or 128", o.GroupSize)
	}
	if o.Grid == 0 {
		o.Grid = 20
	}
	if o.Grid < 1 {
		return fmt.Errorf("quantize: grid %d must be positive", o.Grid)
	}
	return nil
}

// Result is a quantized checkpoint held in memory: Save writes it, Model
// runs it.
type Result struct {
	Config *model.Config `json:"-"` // config.json, with quantization_config
	Quant  QuantConfig   `json:"quantization_config"`
	Method string        `json:"method"`
	// Groups reports the AWQ search per group of layers sharing an input.
	Groups []GroupReport `json:"groups,omitempty"`
	// Skipped maps modules kept in 16-bit to the reason.
	Skipped           map[string]string `json:"skipped,omitempty"`
	CalibrationTokens int               `json:"calibration_tokens"`
	Source            string            `json:"source,omitempty"` // the source checkpoint folder (tokenizer files are copied from it)

	tensors []model.Tensor
}

// quantizer holds the state of one Quantize call.
type quantizer struct {
	opts    Options
	cfg     *model.Config
	w       map[string][]float32 // host weights, HF names, modified by scaling and clipping
	convert map[string]bool      // module -> quantized
	loss    *losses
}

// Quantize quantizes the linear layers of the decoder blocks of a float
// model (LoRA adapters merged). AWQ first runs calib (token sequences,
// typically 128 prompts of the train split) through the model to measure
// each linear layer's input channels; RTN and INT8 need no calibration.
// Embeddings, norms and lm_head stay 16-bit.
func Quantize(ctx context.Context, m *model.Model, calib [][]int, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	c := m.Config
	if qc, err := ReadQuantConfig(c); err != nil || qc != nil {
		return nil, fmt.Errorf("quantize: the model is already quantized")
	}
	q := &quantizer{opts: opts, cfg: c, convert: map[string]bool{}}
	res := &Result{Method: opts.Method, Skipped: map[string]string{}, Source: m.Dir}
	var err error
	if q.w, err = hostFloats(m); err != nil {
		return nil, err
	}
	notConvert := slices.Clone(opts.ModulesToNotConvert)
	for l := range c.NumHiddenLayers {
		for _, name := range layerLinears(l) {
			shape := model.WeightShapes(c)[name+".weight"]
			out, in := shape[0], shape[1]
			switch {
			case excluded(name, opts.ModulesToNotConvert):
				res.Skipped[name] = "listed in modules_to_not_convert"
			case opts.Method != MethodINT8 && in%opts.GroupSize != 0:
				res.Skipped[name] = fmt.Sprintf("group size %d does not divide its %d inputs", opts.GroupSize, in)
				notConvert = append(notConvert, name)
			case opts.Method != MethodINT8 && out%8 != 0:
				res.Skipped[name] = fmt.Sprintf("its %d outputs are not a multiple of 8", out)
				notConvert = append(notConvert, name)
			default:
				q.convert[name] = true
			}
		}
		// vLLM fuses q/k/v and gate/up into one linear layer each, which is
		// quantized or not as a whole: keep the partners of a 16-bit member
		// in 16-bit too.
		pre := fmt.Sprintf("model.layers.%d.", l)
		for _, fused := range [][]string{{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, {"mlp.gate_proj", "mlp.up_proj"}} {
			var kept string
			for _, n := range fused {
				if !q.convert[pre+n] {
					kept = pre + n
				}
			}
			for _, n := range fused {
				if kept != "" && q.convert[pre+n] {
					delete(q.convert, pre+n)
					res.Skipped[pre+n] = fmt.Sprintf("fused with %s, which stays 16-bit (vLLM quantizes fused layers as a whole)", kept)
					notConvert = append(notConvert, pre+n)
				}
			}
		}
	}

	steps, total := 0, c.NumHiddenLayers
	progress := func() {
		steps++
		if opts.Progress != nil {
			opts.Progress(steps, total)
		}
	}
	if opts.Method == MethodAWQ {
		total += (len(calib) + calibBatch - 1) / calibBatch
		stats, err := calibrate(ctx, m, calib, progress)
		if err != nil {
			return nil, err
		}
		res.CalibrationTokens = stats[0][0].tokens
		if q.loss, err = newLosses(m.Backend); err != nil {
			return nil, fmt.Errorf("quantize: %w", err)
		}
		defer q.loss.finalize()
		for l := range c.NumHiddenLayers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			reps, err := q.awqLayer(l, stats[l])
			if err != nil {
				return nil, err
			}
			res.Groups = append(res.Groups, reps...)
			stats[l] = [numInputs]*inputStat{} // free the Gram matrices
			progress()
		}
	} else {
		for range c.NumHiddenLayers {
			progress()
		}
	}

	res.tensors = q.tensors()
	cfg := *c
	cfg.TorchDType = "float16"
	if opts.Method == MethodINT8 {
		res.Quant = QuantConfig{QuantMethod: methodInt8, Bits: 8, GroupSize: -1}
	} else {
		res.Quant = QuantConfig{QuantMethod: methodAWQ, Bits: 4, GroupSize: opts.GroupSize, ZeroPoint: true, Version: "gemm"}
	}
	if len(notConvert) > 0 {
		res.Quant.ModulesToNotConvert = notConvert
	}
	setQuantConfig(&cfg, &res.Quant)
	res.Config = &cfg
	return res, nil
}

// layerLinears lists the linear modules of decoder layer l.
func layerLinears(l int) []string {
	pre := fmt.Sprintf("model.layers.%d.", l)
	return []string{pre + "self_attn.q_proj", pre + "self_attn.k_proj", pre + "self_attn.v_proj", pre + "self_attn.o_proj",
		pre + "mlp.gate_proj", pre + "mlp.up_proj", pre + "mlp.down_proj"}
}

// excluded reports whether a module path contains one of the patterns.
func excluded(module string, patterns []string) bool {
	for _, p := range patterns {
		if p != "" && strings.Contains(module, p) {
			return true
		}
	}
	return false
}

// hostFloats copies every weight of a float model to the host as float32.
func hostFloats(m *model.Model) (map[string][]float32, error) {
	out := map[string][]float32{}
	for name, t := range m.Tensors() {
		v, err := tensorFloats(t)
		if err != nil {
			return nil, fmt.Errorf("quantize: %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// tensorFloats converts a float tensor to []float32.
func tensorFloats(t *tensors.Tensor) ([]float32, error) {
	var out []float32
	var err error
	t.MustConstFlatData(func(flat any) {
		switch v := flat.(type) {
		case []float32:
			out = slices.Clone(v)
		case []float64:
			out = make([]float32, len(v))
			for i, x := range v {
				out[i] = float32(x)
			}
		case []float16.Float16:
			out = make([]float32, len(v))
			for i, x := range v {
				out[i] = x.Float32()
			}
		case []bfloat16.BFloat16:
			out = make([]float32, len(v))
			for i, x := range v {
				out[i] = x.Float32()
			}
		default:
			err = fmt.Errorf("dtype %s is not a float type: the model is already quantized", t.DType())
		}
	})
	return out, err
}

// member returns a module as a search member.
func (q *quantizer) member(module string) member {
	shape := model.WeightShapes(q.cfg)[module+".weight"]
	return member{name: module, w: q.w[module+".weight"], out: shape[0], in: shape[1], quantize: q.convert[module]}
}

// awqLayer searches the four scale groups of a decoder layer on the
// original weights, folds the scales in, then clips and reports.
func (q *quantizer) awqLayer(l int, st [numInputs]*inputStat) ([]GroupReport, error) {
	c := q.cfg
	pre := fmt.Sprintf("model.layers.%d.", l)
	groups := []struct {
		prev    string
		members []string
		in      int
		tie     []int
	}{
		{pre + "input_layernorm", []string{pre + "self_attn.q_proj", pre + "self_attn.k_proj", pre + "self_attn.v_proj"}, inAttn, nil},
		{pre + "self_attn.v_proj", []string{pre + "self_attn.o_proj"}, inO, headTie(c)},
		{pre + "post_attention_layernorm", []string{pre + "mlp.gate_proj", pre + "mlp.up_proj"}, inMLP, nil},
		{pre + "mlp.up_proj", []string{pre + "mlp.down_proj"}, inDown, nil},
	}
	var reps []GroupReport
	scales := make([][]float32, len(groups))
	members := make([][]member, len(groups))
	for i, g := range groups {
		for _, name := range g.members {
			members[i] = append(members[i], q.member(name))
		}
		s, rep, err := q.scaleSearch(members[i], st[g.in], g.tie)
		if err != nil {
			return nil, err
		}
		if s == nil {
			continue // nothing quantized in this group
		}
		rep.Prev = g.prev
		scales[i] = s
		reps = append(reps, rep)
	}
	foldScales(c, q.w, l, scales[0], scales[1], scales[2], scales[3])
	k := 0
	for i, g := range groups {
		if scales[i] == nil {
			continue
		}
		if q.opts.ClipSearch {
			blocks := gramBlocks(st[g.in], scales[i], q.opts.GroupSize)
			for _, mb := range members[i] {
				// AutoAWQ does not clip q and k: the q·k product makes it imprecise.
				if !mb.quantize || strings.HasSuffix(mb.name, ".q_proj") || strings.HasSuffix(mb.name, ".k_proj") {
					continue
				}
				if err := q.clipSearch(mb.w, mb.out, mb.in, blocks); err != nil {
					blocks.FinalizeAll()
					return nil, err
				}
				reps[k].Clipped = true
			}
			blocks.FinalizeAll()
		}
		mse, err := q.groupMSE(members[i], st[g.in], scales[i])
		if err != nil {
			return nil, err
		}
		reps[k].MSEAfter = mse
		k++
	}
	return reps, nil
}

// headTie maps each o_proj input channel (query head h, dim d) to the
// v_proj output channel it reads (KV head h/group, dim d): with GQA the
// query heads of one KV head must share the scale folded into v_proj.
func headTie(c *model.Config) []int {
	hd, group := c.HeadDim, c.NumAttentionHeads/c.NumKeyValueHeads
	tie := make([]int, c.NumAttentionHeads*hd)
	for h := range c.NumAttentionHeads {
		for d := range hd {
			tie[h*hd+d] = (h/group)*hd + d
		}
	}
	return tie
}

// foldScales applies AWQ scales to layer l without changing the function:
// each scaled layer's input channels are multiplied by s and the op
// producing that input divided by s. sAttn: input_layernorm -> q,k,v;
// sO (per o_proj input): v_proj rows -> o_proj; sMLP:
// post_attention_layernorm -> gate, up; sDown: up_proj rows -> down_proj.
// A nil scale is skipped.
func foldScales(c *model.Config, w map[string][]float32, l int, sAttn, sO, sMLP, sDown []float32) {
	pre := fmt.Sprintf("model.layers.%d.", l)
	divVec := func(v, s []float32) {
		for i := range v {
			v[i] /= s[i]
		}
	}
	mulCols := func(m, s []float32) {
		n := len(s)
		for i := range m {
			m[i] *= s[i%n]
		}
	}
	divRows := func(m, s []float32) {
		n := len(m) / len(s)
		for i := range m {
			m[i] /= s[i/n]
		}
	}
	if sAttn != nil {
		divVec(w[pre+"input_layernorm.weight"], sAttn)
		for _, n := range []string{"q_proj", "k_proj", "v_proj"} {
			mulCols(w[pre+"self_attn."+n+".weight"], sAttn)
		}
	}
	if sO != nil {
		tie := headTie(c)
		sv := make([]float32, c.NumKeyValueHeads*c.HeadDim)
		for ch, t := range tie {
			sv[t] = sO[ch]
		}
		divRows(w[pre+"self_attn.v_proj.weight"], sv)
		if b, ok := w[pre+"self_attn.v_proj.bias"]; ok {
			divVec(b, sv)
		}
		mulCols(w[pre+"self_attn.o_proj.weight"], sO)
	}
	if sMLP != nil {
		divVec(w[pre+"post_attention_layernorm.weight"], sMLP)
		mulCols(w[pre+"mlp.gate_proj.weight"], sMLP)
		mulCols(w[pre+"mlp.up_proj.weight"], sMLP)
	}
	if sDown != nil {
		divRows(w[pre+"mlp.up_proj.weight"], sDown)
		mulCols(w[pre+"mlp.down_proj.weight"], sDown)
	}
}

// tensors quantizes the converted layers and encodes the checkpoint:
// packed INT4 (AutoAWQ GEMM) or INT8 layers, everything else float16.
func (q *quantizer) tensors() []model.Tensor {
	shapes := model.WeightShapes(q.cfg)
	var out []model.Tensor
	for _, name := range slices.Sorted(maps.Keys(q.w)) {
		shape, ok := shapes[name]
		if !ok {
			continue // a tied checkpoint's stored lm_head copy
		}
		if module, ok := linearModule(name, shape); ok && q.convert[module] {
			o, in := shape[0], shape[1]
			if q.opts.Method == MethodINT8 {
				qv, s := quantizeInt8(q.w[name], o, in)
				out = append(out, int8Tensors(module, qv, s, o, in)...)
			} else {
				out = append(out, quantizeInt4(q.w[name], o, in, q.opts.GroupSize).awqTensors(module)...)
			}
			continue
		}
		out = append(out, model.NewTensor(name, model.F16, shape, q.w[name]))
	}
	return out
}
