package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
)

// Params gives the forward pass its weights as graph nodes, by HF name
// (model.layers.0.self_attn.q_proj.weight). Linear applies a linear layer
// by its module path (model.layers.0.self_attn.q_proj); implementations can
// add LoRA adapters or dequantize packed INT4 weights there.
type Params interface {
	Get(name string) *graph.Node
	Has(name string) bool
	Linear(module string, x *graph.Node) *graph.Node
}

// PlainParams is Params over a map of weight nodes.
type PlainParams map[string]*graph.Node

func (p PlainParams) Get(name string) *graph.Node {
	n, ok := p[name]
	if !ok {
		panic(fmt.Sprintf("missing weight %s", name))
	}
	return n
}

func (p PlainParams) Has(name string) bool { _, ok := p[name]; return ok }

func (p PlainParams) Linear(module string, x *graph.Node) *graph.Node {
	y := Dense(x, p.Get(module+".weight"))
	if b, ok := p[module+".bias"]; ok {
		y = graph.Add(y, graph.ExpandLeftToRank(graph.ConvertDType(b, y.DType()), y.Rank()))
	}
	return y
}

// Dense computes x @ wᵀ for an HF Linear weight w of shape [out, in]; x has
// any number of leading axes.
func Dense(x, w *graph.Node) *graph.Node {
	w = graph.ConvertDType(w, x.DType())
	return graph.ConvertDType(dot(x, w).General([]int{x.Rank() - 1}, nil, []int{1}, nil), x.DType())
}

// dot starts a product that accumulates in f32 for bf16 operands, as GPUs
// do. The Go backend ignores the accumulator setting and loses all precision
// summing 32 or more bf16 terms, so there the operands go up to f32.
func dot(a, b *graph.Node) *graph.DotBuilder {
	if a.DType() != dtypes.BFloat16 {
		return graph.Dot(a, b)
	}
	if strings.HasPrefix(a.Graph().Backend().Name(), goBackendName) {
		return graph.Dot(graph.ConvertDType(a, dtypes.Float32), graph.ConvertDType(b, dtypes.Float32))
	}
	return graph.Dot(a, b).WithAccumulatorDType(dtypes.Float32).WithOutputDType(dtypes.BFloat16)
}

// goBackendName starts the name of compute's pure-Go backend.
const goBackendName = "Go"

// KV is a layer's key/value cache: [batch, kv_heads, max_len, head_dim].
type KV struct{ K, V *graph.Node }

// Inputs of one forward pass.
type Inputs struct {
	IDs       *graph.Node // [batch, seq] int32
	Positions *graph.Node // [batch, seq] int32: the position of each token
	// Cache, when set, holds one KV per layer; the new keys and values are
	// written at Positions and attention covers the whole cache (causally).
	Cache []KV
	// CacheLen, when > 0 and Cache is nil, makes the pass a prefill: it
	// returns fresh caches of CacheLen positions that hold this pass's keys
	// and values, built on the device. Positions must be 0..seq-1 in every row.
	CacheLen int
	// At, when set ([batch, n] int32), keeps only those positions of each
	// sequence before the head: logits are [batch, n, vocab]. A prefill needs
	// only the last position and a fine-tuning loss only the answer's; the
	// head over every position can cost more than the layers (a large vocabulary).
	At *graph.Node
}

// Forward runs the decoder and returns logits [batch, seq, vocab] in f32,
// plus the updated caches when in.Cache or in.CacheLen is set. Without a
// cache, attention is causal within the sequence.
func Forward(c *Config, p Params, in Inputs) (*graph.Node, []KV) {
	x := embed(p.Get("model.embed_tokens.weight"), in.IDs)
	cos, sin := rope(c, in.Positions)
	var out []KV
	for l := range c.NumHiddenLayers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		h := RMSNorm(x, p.Get(pre+"input_layernorm.weight"), c.RMSNormEps)
		var cache *KV
		if in.Cache != nil {
			cache = &in.Cache[l]
		}
		a, kv := attention(c, p, pre+"self_attn", h, cos, sin, in.Positions, cache, in.CacheLen)
		if cache != nil || in.CacheLen > 0 {
			out = append(out, kv)
		}
		x = graph.Add(x, a)
		h = RMSNorm(x, p.Get(pre+"post_attention_layernorm.weight"), c.RMSNormEps)
		x = graph.Add(x, mlp(p, pre+"mlp", h))
	}
	if in.At != nil {
		x = gatherPositions(x, in.At)
	}
	x = RMSNorm(x, p.Get("model.norm.weight"), c.RMSNormEps)
	var logits *graph.Node
	if p.Has("lm_head.weight") {
		logits = p.Linear("lm_head", x)
	} else {
		logits = Dense(x, p.Get("model.embed_tokens.weight")) // tied embeddings
	}
	return graph.ConvertDType(logits, dtypes.Float32), out
}

// gatherPositions picks x[i, at[i, j], :] from x [b, s, d]: [b, n, d].
func gatherPositions(x, at *graph.Node) *graph.Node {
	b, n := at.Shape().Dimensions[0], at.Shape().Dimensions[1]
	rows := graph.Iota(x.Graph(), shapes.Make(dtypes.Int32, b, n, 1), 0)
	idx := graph.Concatenate([]*graph.Node{rows, graph.Reshape(graph.ConvertDType(at, dtypes.Int32), b, n, 1)}, 2)
	return graph.Gather(x, idx)
}

func embed(table, ids *graph.Node) *graph.Node {
	return graph.Gather(table, graph.ExpandAxes(ids, -1))
}

// RMSNorm is x / rms(x) * w, computed in f32 as HF does, then cast back.
func RMSNorm(x, w *graph.Node, eps float64) *graph.Node {
	dt := x.DType()
	xf := graph.ConvertDType(x, dtypes.Float32)
	ms := graph.ReduceAndKeep(graph.Square(xf), graph.ReduceMean, -1)
	y := graph.Div(xf, graph.Sqrt(graph.AddScalar(ms, eps))) // Rsqrt has no gradient in GoMLX
	return graph.Mul(graph.ConvertDType(y, dt), graph.ExpandLeftToRank(graph.ConvertDType(w, dt), y.Rank()))
}

// rope returns cos and sin [batch, seq, head_dim] for the positions.
func rope(c *Config, positions *graph.Node) (cos, sin *graph.Node) {
	g := positions.Graph()
	inv := c.InvFreq()
	f := make([]float32, len(inv))
	for i, v := range inv {
		f[i] = float32(v)
	}
	invNode := graph.Const(g, f)
	pos := graph.ConvertDType(positions, dtypes.Float32)
	ang := graph.Mul(graph.ExpandAxes(pos, -1), graph.ExpandLeftToRank(invNode, 3)) // [b, s, hd/2]
	ang = graph.Concatenate([]*graph.Node{ang, ang}, -1)
	return graph.Cos(ang), graph.Sin(ang)
}

// applyRope rotates x [b, s, heads, hd] by cos/sin [b, s, hd].
func applyRope(x, cos, sin *graph.Node) *graph.Node {
	hd := x.Shape().Dimensions[3]
	x1 := graph.SliceAxis(x, 3, graph.AxisRange(0, hd/2))
	x2 := graph.SliceAxis(x, 3, graph.AxisRange(hd/2, hd))
	rot := graph.Concatenate([]*graph.Node{graph.Neg(x2), x1}, 3)
	cos = graph.ConvertDType(graph.ExpandAxes(cos, 2), x.DType())
	sin = graph.ConvertDType(graph.ExpandAxes(sin, 2), x.DType())
	return graph.Add(graph.Mul(x, cos), graph.Mul(rot, sin))
}

func attention(c *Config, p Params, pre string, h, cos, sin, positions *graph.Node, cache *KV, cacheLen int) (*graph.Node, KV) {
	dims := h.Shape().Dimensions
	b, s := dims[0], dims[1]
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	q := graph.Reshape(p.Linear(pre+".q_proj", h), b, s, nh, hd)
	k := graph.Reshape(p.Linear(pre+".k_proj", h), b, s, nkv, hd)
	v := graph.Reshape(p.Linear(pre+".v_proj", h), b, s, nkv, hd)
	if c.QKNorm() {
		q = RMSNorm(q, p.Get(pre+".q_norm.weight"), c.RMSNormEps)
		k = RMSNorm(k, p.Get(pre+".k_norm.weight"), c.RMSNormEps)
	}
	q = applyRope(q, cos, sin)
	k = applyRope(k, cos, sin)
	k = graph.TransposeAllAxes(k, 0, 2, 1, 3) // [b, kv, s, hd]
	v = graph.TransposeAllAxes(v, 0, 2, 1, 3)

	var kv KV
	keyPos := positions // positions of the keys: [b, s_k]
	if cache != nil {
		k, v = writeCache(cache.K, k, positions), writeCache(cache.V, v, positions)
		kv = KV{K: k, V: v}
		maxLen := cache.K.Shape().Dimensions[2]
		keyPos = graph.BroadcastToDims(graph.Iota(h.Graph(), shapes.Make(positions.DType(), 1, maxLen), 1), b, maxLen)
	} else if cacheLen > 0 {
		kv = KV{K: padCache(k, cacheLen), V: padCache(v, cacheLen)}
	}
	// Causal mask: a query at position p sees keys at positions <= p.
	mask := graph.LessOrEqual(graph.ExpandAxes(keyPos, 1), graph.ExpandAxes(positions, -1)) // [b, s_q, s_k]

	group := nh / nkv
	qg := graph.Reshape(q, b, s, nkv, group, hd)
	scores := dot(qg, k).Einsum("bqkgd,bksd->bkgqs") // [b, kv, g, s_q, s_k]
	scores = graph.ConvertDType(scores, dtypes.Float32)
	scores = graph.MulScalar(scores, 1/math.Sqrt(float64(hd)))
	m := graph.ExpandAxes(mask, 1, 2) // [b, 1, 1, s_q, s_k]
	scores = graph.Where(graph.BroadcastToShape(m, scores.Shape()), scores, graph.BroadcastToShape(graph.Infinity(h.Graph(), dtypes.Float32, -1), scores.Shape()))
	probs := graph.ConvertDType(graph.Softmax(scores, -1), v.DType())
	o := graph.ConvertDType(dot(probs, v).Einsum("bkgqs,bksd->bqkgd"), v.DType()) // [b, s_q, kv, g, hd]
	o = graph.Reshape(o, b, s, nh*hd)
	return p.Linear(pre+".o_proj", o), kv
}

// writeCache stores new [b, kv, s, hd] at positions [b, s] of the cache
// [b, kv, max, hd] with one-hot weights, so every sequence of a batch may
// be at a different position.
func writeCache(cache, nw, positions *graph.Node) *graph.Node {
	maxLen := cache.Shape().Dimensions[2]
	oh := graph.ConvertDType(graph.OneHot(positions, maxLen, cache.DType()), cache.DType()) // [b, s, max]
	keep := graph.OneMinus(graph.ReduceSum(oh, 1))                                          // [b, max]
	upd := graph.ConvertDType(dot(oh, nw).Einsum("bsm,bksd->bkmd"), cache.DType())
	return graph.Add(graph.Mul(cache, graph.ExpandAxes(keep, 1, -1)), upd)
}

// padCache extends a prefill's [b, kv, s, hd] keys or values with zeros to
// [b, kv, cacheLen, hd]: the cache as if each had been written at 0..s-1.
func padCache(x *graph.Node, cacheLen int) *graph.Node {
	d := x.Shape().Dimensions
	if d[2] >= cacheLen {
		return x
	}
	zeros := graph.Zeros(x.Graph(), shapes.Make(x.DType(), d[0], d[1], cacheLen-d[2], d[3]))
	return graph.Concatenate([]*graph.Node{x, zeros}, 2)
}

func mlp(p Params, pre string, h *graph.Node) *graph.Node {
	gate := p.Linear(pre+".gate_proj", h)
	up := p.Linear(pre+".up_proj", h)
	return p.Linear(pre+".down_proj", graph.Mul(SiLU(gate), up))
}

// SiLU is x * sigmoid(x), written as x / (1 + exp(-x)): the Go backend's
// Logistic op is far slower than its Exp.
func SiLU(x *graph.Node) *graph.Node {
	return graph.Div(x, graph.OnePlus(graph.Exp(graph.Neg(x))))
}
