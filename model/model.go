package model

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Model is a loaded checkpoint ready to run on a backend. It is safe for
// concurrent use; calls are serialised per compiled graph by GoMLX.
type Model struct {
	Config  *Config
	Dir     string
	Backend compute.Backend
	DType   dtypes.DType // compute dtype: Float32 or BFloat16

	names   []string          // weight names, sorted: the order of graph inputs
	weights []*tensors.Tensor // same order
	wrap    func(PlainParams) Params

	once     sync.Once
	fwdExec  *graph.Exec
	stepExec *graph.Exec
	initErr  error

	// Generate's prefills, one per cache length (generate.go).
	preMu sync.Mutex
	pre   map[int]*graph.Exec

	// MeanHidden's pooled forward pass (hidden.go).
	hidOnce sync.Once
	hidExec *graph.Exec
	hidErr  error
}

// LoadOptions configure Load.
type LoadOptions struct {
	// Backend runs the model; nil starts NewBackend("").
	Backend compute.Backend
	// DType is "f32" (default) or "bf16".
	DType string
	// Params, when set, wraps the weight nodes of every forward pass. LoRA
	// adapters and packed INT4 weights plug in here through Params.Linear.
	Params func(PlainParams) Params
}

// WeightShapes lists every weight a config needs, with its HF shape.
func WeightShapes(c *Config) map[string][]int {
	d, hd, nh, nkv := c.HiddenSize, c.HeadDim, c.NumAttentionHeads, c.NumKeyValueHeads
	m := map[string][]int{
		"model.embed_tokens.weight": {c.VocabSize, d},
		"model.norm.weight":         {d},
	}
	if !c.TieWordEmbeddings {
		m["lm_head.weight"] = []int{c.VocabSize, d}
	}
	for l := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", l)
		m[p+"input_layernorm.weight"] = []int{d}
		m[p+"post_attention_layernorm.weight"] = []int{d}
		m[p+"self_attn.q_proj.weight"] = []int{nh * hd, d}
		m[p+"self_attn.k_proj.weight"] = []int{nkv * hd, d}
		m[p+"self_attn.v_proj.weight"] = []int{nkv * hd, d}
		m[p+"self_attn.o_proj.weight"] = []int{d, nh * hd}
		if c.AttentionBias {
			m[p+"self_attn.q_proj.bias"] = []int{nh * hd}
			m[p+"self_attn.k_proj.bias"] = []int{nkv * hd}
			m[p+"self_attn.v_proj.bias"] = []int{nkv * hd}
		}
		if c.QKNorm() {
			m[p+"self_attn.q_norm.weight"] = []int{hd}
			m[p+"self_attn.k_norm.weight"] = []int{hd}
		}
		m[p+"mlp.gate_proj.weight"] = []int{c.IntermediateSize, d}
		m[p+"mlp.up_proj.weight"] = []int{c.IntermediateSize, d}
		m[p+"mlp.down_proj.weight"] = []int{d, c.IntermediateSize}
	}
	return m
}

// Load reads DIR/config.json and the safetensors weights (single or
// sharded) and checks every weight's presence and shape.
func Load(dir string, opts LoadOptions) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	w, err := OpenWeights(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	defer w.Close()
	want := WeightShapes(cfg)
	host := map[string][]float32{}
	var problems []string
	for name, shape := range want {
		t, err := w.Get(name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: missing", name))
			continue
		}
		if !slices.Equal(t.Shape, shape) {
			problems = append(problems, fmt.Sprintf("%s: shape %v, config.json implies %v", name, t.Shape, shape))
			continue
		}
		v, err := t.Float32()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		host[name] = v
	}
	for _, name := range w.Names() {
		if _, ok := want[name]; !ok && !strings.HasSuffix(name, "rotary_emb.inv_freq") {
			if name == "lm_head.weight" && cfg.TieWordEmbeddings {
				continue // some tied checkpoints store the copy anyway
			}
			problems = append(problems, fmt.Sprintf("%s: not part of a %s model with this config", name, cfg.ModelType))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("load %s: %s", dir, strings.Join(problems, "; "))
	}
	m, err := New(cfg, host, want, opts)
	if err != nil {
		return nil, err
	}
	m.Dir = dir
	return m, nil
}

// New builds a model from host weights (HF names, row-major float32).
func New(cfg *Config, host map[string][]float32, shapes map[string][]int, opts LoadOptions) (*Model, error) {
	ts := make(map[string]*tensors.Tensor, len(host))
	for name, v := range host {
		ts[name] = tensors.FromFlatDataAndDimensions(v, shapes[name]...)
	}
	return NewFromTensors(cfg, ts, opts)
}

// NewFromTensors builds a model from named tensors of any dtype: float
// weights are cast to the compute dtype, others (packed INT4 words) reach
// opts.Params as they are.
func NewFromTensors(cfg *Config, ts map[string]*tensors.Tensor, opts LoadOptions) (*Model, error) {
	b := opts.Backend
	if b == nil {
		var err error
		if b, err = NewBackend(""); err != nil {
			return nil, err
		}
	}
	m := &Model{Config: cfg, Backend: b, DType: dtypes.Float32, wrap: opts.Params}
	switch opts.DType {
	case "", "f32":
	case "bf16":
		m.DType = dtypes.BFloat16
	default:
		return nil, fmt.Errorf("dtype %q: want f32 or bf16", opts.DType)
	}
	for name := range ts {
		m.names = append(m.names, name)
	}
	sort.Strings(m.names)
	for _, name := range m.names {
		m.weights = append(m.weights, ts[name])
	}
	// Move the weights to the device now, from this goroutine. GoMLX would
	// move each on its first use, and the validity check before that move
	// reads the tensor without its lock: concurrent first calls race.
	for i, w := range m.weights {
		if _, err := w.Buffer(b, 0); err != nil {
			return nil, fmt.Errorf("weight %s to the device: %w", m.names[i], err)
		}
	}
	return m, nil
}

// WeightNames returns the model's weight names in graph-input order.
func (m *Model) WeightNames() []string { return m.names }

// plain turns the leading graph inputs into PlainParams; float weights are
// cast to the compute dtype.
func (m *Model) plain(in []*graph.Node) PlainParams {
	p := PlainParams{}
	for i, name := range m.names {
		n := in[i]
		if m.DType != dtypes.Float32 && n.DType().IsFloat() {
			n = graph.ConvertDType(n, m.DType)
		}
		p[name] = n
	}
	return p
}

// params is plain, wrapped by LoadOptions.Params when set.
func (m *Model) params(in []*graph.Node) Params {
	p := m.plain(in)
	if m.wrap != nil {
		return m.wrap(p)
	}
	return p
}

// HostWeights copies the model's float weights to the host by name.
func (m *Model) HostWeights() map[string][]float32 {
	out := map[string][]float32{}
	for i, name := range m.names {
		if m.weights[i].DType() == dtypes.Float32 {
			out[name] = tensors.MustCopyFlatData[float32](m.weights[i])
		}
	}
	return out
}

// Tensors returns the model's input tensors by name; callers must not
// modify or finalize them.
func (m *Model) Tensors() map[string]*tensors.Tensor {
	out := make(map[string]*tensors.Tensor, len(m.names))
	for i, name := range m.names {
		out[name] = m.weights[i]
	}
	return out
}

func (m *Model) init() error {
	m.once.Do(func() {
		nw := len(m.names)
		m.fwdExec, m.initErr = graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
			logits, _ := Forward(m.Config, m.params(in), Inputs{IDs: in[nw], Positions: in[nw+1]})
			return []*graph.Node{logits}
		})
		if m.initErr != nil {
			return
		}
		m.stepExec, m.initErr = graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
			nl := m.Config.NumHiddenLayers
			cache := make([]KV, nl)
			for l := range nl {
				cache[l] = KV{K: in[nw+2+2*l], V: in[nw+3+2*l]}
			}
			logits, kv := Forward(m.Config, m.params(in), Inputs{IDs: in[nw], Positions: in[nw+1], Cache: cache, At: in[len(in)-1]})
			out := []*graph.Node{graph.LogSoftmax(logits, -1)}
			for _, c := range kv {
				out = append(out, c.K, c.V)
			}
			return out
		})
	})
	return m.initErr
}

// NewExec compiles fn over the model's weights: fn gets the forward pass's
// Params (with any LoRA or INT4 wrapper) and the extra inputs. Call the
// result with m.Args(extra...).
func (m *Model) NewExec(fn func(p Params, extra []*graph.Node) []*graph.Node) (*graph.Exec, error) {
	nw := len(m.names)
	return graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
		return fn(m.params(in), in[nw:])
	})
}

// Args lists the model's weights followed by extra, for an Exec from NewExec.
func (m *Model) Args(extra ...any) []any { return m.args(extra...) }

func (m *Model) args(extra ...any) []any {
	args := make([]any, 0, len(m.weights)+len(extra))
	for _, w := range m.weights {
		args = append(args, w)
	}
	return append(args, extra...)
}

// Logits runs a full forward pass (no cache) over each sequence and returns
// logits[seq][position][vocab]. Sequences may differ in length; they are
// right-padded, which causal attention makes harmless.
func (m *Model) Logits(ids [][]int) ([][][]float32, error) {
	if err := m.init(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	maxLen := 0
	for _, s := range ids {
		if len(s) == 0 {
			return nil, fmt.Errorf("logits: empty sequence")
		}
		maxLen = max(maxLen, len(s))
	}
	if maxLen > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("logits: %d tokens exceed max_position_embeddings %d", maxLen, m.Config.MaxPositionEmbeddings)
	}
	idT, posT, err := m.batch(ids, maxLen, 0)
	if err != nil {
		return nil, err
	}
	out, err := m.fwdExec.Exec(m.args(idT, posT)...)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	flat := tensors.MustCopyFlatData[float32](out[0])
	out[0].FinalizeAll()
	v := m.Config.VocabSize
	res := make([][][]float32, len(ids))
	for b, s := range ids {
		res[b] = make([][]float32, len(s))
		for t := range s {
			off := (b*maxLen + t) * v
			res[b][t] = flat[off : off+v : off+v]
		}
	}
	return res, nil
}

// batch packs sequences into right-padded ids and positions [B, T] that
// start at offset.
func (m *Model) batch(ids [][]int, t, offset int) (*tensors.Tensor, *tensors.Tensor, error) {
	b := len(ids)
	idv := make([]int32, b*t)
	pos := make([]int32, b*t)
	for i, s := range ids {
		for j := range t {
			pos[i*t+j] = int32(offset + j)
			if j < len(s) {
				if s[j] < 0 || s[j] >= m.Config.VocabSize {
					return nil, nil, fmt.Errorf("token id %d out of range [0, %d)", s[j], m.Config.VocabSize)
				}
				idv[i*t+j] = int32(s[j])
			}
		}
	}
	return tensors.FromFlatDataAndDimensions(idv, b, t), tensors.FromFlatDataAndDimensions(pos, b, t), nil
}
