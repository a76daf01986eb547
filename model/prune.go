package model

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// PruneOptions choose what structured pruning (as NVIDIA's Minitron does)
// removes: whole layers (depth), MLP intermediate channels and attention
// KV-head groups (width).
type PruneOptions struct {
	KeepLayers  []int   // depth: the layer indices to keep, in order (nil: all)
	MLPWidth    float64 // width: keep this fraction of each layer's MLP intermediate channels (1 or 0: all)
	Heads       float64 // keep this fraction of KV head groups per layer (1 or 0: all); a KV head is kept with all of its query heads
	Calibration [][]int // token id sequences for activation importance (required when MLPWidth or Heads < 1)
}

// PruneReport describes the pruned model.
type PruneReport struct {
	Layers             int   `json:"layers"`
	Intermediate       int   `json:"intermediate_size"`
	KVHeads            int   `json:"num_key_value_heads"`
	Heads              int   `json:"num_attention_heads"`
	ParamsBefore       int64 `json:"params_before"`
	ParamsAfter        int64 `json:"params_after"`
	NonEmbeddingBefore int64 `json:"non_embedding_before"`
	NonEmbeddingAfter  int64 `json:"non_embedding_after"`
}

// prunePlan is what to keep: per kept layer (new order), its original index,
// the kept MLP channels and the kept KV-head groups, ascending.
type prunePlan struct {
	layers []int
	mlp    [][]int
	groups [][]int
}

// Prune returns the config and host weights (HF names, float32) of the
// pruned model. Channel and head-group importance is activation-based
// (Minitron): the mean over calibration tokens of |silu(gate)·up| per MLP
// channel, and the mean L2 norm of each KV group's attention output (the
// o_proj input of its query heads). The top-k by importance are kept in
// their original order.
func Prune(m *Model, opts PruneOptions) (*Config, map[string][]float32, PruneReport, error) {
	cfg, w, rep, _, err := prune(m, opts, topK)
	return cfg, w, rep, err
}

// topK returns the indices of the k largest values, ascending. Ties keep
// the lower index.
func topK(imp []float64, k int) []int {
	idx := make([]int, len(imp))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return imp[idx[a]] > imp[idx[b]] })
	out := slices.Clone(idx[:k])
	slices.Sort(out)
	return out
}

// keepCount is round(frac·n), at least 1; frac 0 or 1 keeps all.
func keepCount(frac float64, n int) (int, error) {
	if frac == 0 || frac == 1 {
		return n, nil
	}
	if !(frac > 0 && frac < 1) {
		return 0, fmt.Errorf("prune: fraction %v must be in (0, 1]", frac)
	}
	return max(1, int(math.Round(frac*float64(n)))), nil
}

func prune(m *Model, opts PruneOptions, pick func([]float64, int) []int) (*Config, map[string][]float32, PruneReport, prunePlan, error) {
	var rep PruneReport
	var plan prunePlan
	c := m.Config
	nl := c.NumHiddenLayers
	layers := opts.KeepLayers
	if layers == nil {
		for l := range nl {
			layers = append(layers, l)
		}
	}
	if len(layers) == 0 {
		return nil, nil, rep, plan, fmt.Errorf("prune: no layers kept")
	}
	seen := map[int]bool{}
	for _, l := range layers {
		if l < 0 || l >= nl {
			return nil, nil, rep, plan, fmt.Errorf("prune: layer %d out of range [0, %d)", l, nl)
		}
		if seen[l] {
			return nil, nil, rep, plan, fmt.Errorf("prune: layer %d listed twice", l)
		}
		seen[l] = true
	}
	kI, err := keepCount(opts.MLPWidth, c.IntermediateSize)
	if err != nil {
		return nil, nil, rep, plan, err
	}
	kG, err := keepCount(opts.Heads, c.NumKeyValueHeads)
	if err != nil {
		return nil, nil, rep, plan, err
	}
	var mlpImp, headImp [][]float64
	if kI < c.IntermediateSize || kG < c.NumKeyValueHeads {
		if len(opts.Calibration) == 0 {
			return nil, nil, rep, plan, fmt.Errorf("prune: width or head pruning needs calibration sequences")
		}
		if mlpImp, headImp, err = pruneImportance(m, opts.Calibration); err != nil {
			return nil, nil, rep, plan, err
		}
	}
	all := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	plan.layers = slices.Clone(layers)
	for _, l := range layers {
		if kI < c.IntermediateSize {
			plan.mlp = append(plan.mlp, pick(mlpImp[l], kI))
		} else {
			plan.mlp = append(plan.mlp, all(c.IntermediateSize))
		}
		if kG < c.NumKeyValueHeads {
			plan.groups = append(plan.groups, pick(headImp[l], kG))
		} else {
			plan.groups = append(plan.groups, all(c.NumKeyValueHeads))
		}
	}
	cfg, w, rep, err := applyPrunePlan(m, plan, kI, kG)
	return cfg, w, rep, plan, err
}

func applyPrunePlan(m *Model, plan prunePlan, kI, kG int) (*Config, map[string][]float32, PruneReport, error) {
	c := m.Config
	src := m.HostWeights()
	cfg := *c
	cfg.Extra = maps.Clone(c.Extra)
	cfg.NumHiddenLayers = len(plan.layers)
	cfg.IntermediateSize = kI
	group := c.NumAttentionHeads / c.NumKeyValueHeads
	cfg.NumKeyValueHeads = kG
	cfg.NumAttentionHeads = kG * group
	cfg.HeadDim = c.HeadDim
	hd, d, I := c.HeadDim, c.HiddenSize, c.IntermediateSize

	out := map[string][]float32{}
	for name, v := range src {
		if !strings.HasPrefix(name, "model.layers.") {
			out[name] = slices.Clone(v)
		}
	}
	// rowsOf lists the rows (or columns) of the kept groups, blk per group.
	rowsOf := func(groups []int, blk int) []int {
		var r []int
		for _, g := range groups {
			for i := range blk {
				r = append(r, g*blk+i)
			}
		}
		return r
	}
	for j, l := range plan.layers {
		op, np := fmt.Sprintf("model.layers.%d.", l), fmt.Sprintf("model.layers.%d.", j)
		get := func(n string) []float32 {
			v, ok := src[op+n]
			if !ok {
				panic("missing weight " + op + n)
			}
			return v
		}
		for _, n := range []string{"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_norm.weight", "self_attn.k_norm.weight"} {
			if v, ok := src[op+n]; ok {
				out[np+n] = slices.Clone(v)
			}
		}
		qRows := rowsOf(plan.groups[j], group*hd)
		kvRows := rowsOf(plan.groups[j], hd)
		out[np+"self_attn.q_proj.weight"] = takeRows(get("self_attn.q_proj.weight"), d, qRows)
		out[np+"self_attn.k_proj.weight"] = takeRows(get("self_attn.k_proj.weight"), d, kvRows)
		out[np+"self_attn.v_proj.weight"] = takeRows(get("self_attn.v_proj.weight"), d, kvRows)
		out[np+"self_attn.o_proj.weight"] = takeCols(get("self_attn.o_proj.weight"), c.NumAttentionHeads*hd, qRows)
		for n, rows := range map[string][]int{"q_proj": qRows, "k_proj": kvRows, "v_proj": kvRows} {
			if b, ok := src[op+"self_attn."+n+".bias"]; ok {
				out[np+"self_attn."+n+".bias"] = takeRows(b, 1, rows)
			}
		}
		ch := plan.mlp[j]
		out[np+"mlp.gate_proj.weight"] = takeRows(get("mlp.gate_proj.weight"), d, ch)
		out[np+"mlp.up_proj.weight"] = takeRows(get("mlp.up_proj.weight"), d, ch)
		out[np+"mlp.down_proj.weight"] = takeCols(get("mlp.down_proj.weight"), I, ch)
	}
	want := WeightShapes(&cfg)
	for name, v := range out {
		s, ok := want[name]
		if !ok {
			if name == "lm_head.weight" && cfg.TieWordEmbeddings {
				delete(out, name)
				continue
			}
			return nil, nil, PruneReport{}, fmt.Errorf("prune: unexpected weight %s", name)
		}
		n := 1
		for _, x := range s {
			n *= x
		}
		if n != len(v) {
			return nil, nil, PruneReport{}, fmt.Errorf("prune: %s has %d values, want shape %v", name, len(v), s)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, PruneReport{}, fmt.Errorf("prune: %w", err)
	}
	rep := PruneReport{Layers: cfg.NumHiddenLayers, Intermediate: cfg.IntermediateSize, KVHeads: cfg.NumKeyValueHeads, Heads: cfg.NumAttentionHeads}
	rep.ParamsBefore, rep.NonEmbeddingBefore = countParams(src)
	rep.ParamsAfter, rep.NonEmbeddingAfter = countParams(out)
	return &cfg, out, rep, nil
}

// countParams returns all parameters and those outside the embedding and
// lm_head.
func countParams(w map[string][]float32) (all, nonEmb int64) {
	for name, v := range w {
		all += int64(len(v))
		if name != "model.embed_tokens.weight" && name != "lm_head.weight" {
			nonEmb += int64(len(v))
		}
	}
	return
}

// takeRows keeps the listed rows of a row-major matrix with cols columns.
func takeRows(v []float32, cols int, rows []int) []float32 {
	out := make([]float32, 0, len(rows)*cols)
	for _, r := range rows {
		out = append(out, v[r*cols:(r+1)*cols]...)
	}
	return out
}

// takeCols keeps the listed columns of a row-major matrix with cols columns.
func takeCols(v []float32, cols int, keep []int) []float32 {
	rows := len(v) / cols
	out := make([]float32, 0, rows*len(keep))
	for r := range rows {
		for _, k := range keep {
			out = append(out, v[r*cols+k])
		}
	}
	return out
}

// recordParams is Params that also records the inputs of each layer's
// o_proj and down_proj, so Forward itself yields the activations that
// pruning importance is measured on.
type recordParams struct {
	PlainParams
	seen map[string]*graph.Node
}

func (p recordParams) Linear(module string, x *graph.Node) *graph.Node {
	if strings.HasSuffix(module, ".o_proj") || strings.HasSuffix(module, ".down_proj") {
		p.seen[module] = x
	}
	return p.PlainParams.Linear(module, x)
}

// pruneBatch is the number of calibration sequences per forward pass.
const pruneBatch = 8

// pruneImportance runs the calibration sequences through the model and
// returns, per layer, the mean |silu(gate)·up| of each MLP channel and the
// mean L2 norm of each KV group's attention output, over all tokens.
func pruneImportance(m *Model, calib [][]int) (mlpImp, headImp [][]float64, err error) {
	c := m.Config
	nl, nkv := c.NumHiddenLayers, c.NumKeyValueHeads
	nw := len(m.names)
	exec, err := graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
		p := recordParams{PlainParams: m.plain(in), seen: map[string]*graph.Node{}}
		ids, pos, mask := in[nw], in[nw+1], in[nw+2] // mask [b, s] f32: 1 for real tokens
		Forward(c, p, Inputs{IDs: ids, Positions: pos})
		dims := ids.Shape().Dimensions
		b, s := dims[0], dims[1]
		var outs []*graph.Node
		for l := range nl {
			pre := fmt.Sprintf("model.layers.%d.", l)
			act := graph.ConvertDType(p.seen[pre+"mlp.down_proj"], dtypes.Float32) // [b, s, I]
			act = graph.Mul(graph.Abs(act), graph.ExpandAxes(mask, -1))
			outs = append(outs, graph.ReduceSum(act, 0, 1))
			o := graph.ConvertDType(p.seen[pre+"self_attn.o_proj"], dtypes.Float32) // [b, s, nh*hd]
			o = graph.Reshape(o, b, s, nkv, -1)
			norm := graph.Sqrt(graph.ReduceSum(graph.Square(o), -1)) // [b, s, nkv]
			norm = graph.Mul(norm, graph.ExpandAxes(mask, -1))
			outs = append(outs, graph.ReduceSum(norm, 0, 1))
		}
		return outs
	})
	if err != nil {
		return nil, nil, fmt.Errorf("prune importance: %w", err)
	}
	defer exec.Finalize()
	mlpImp = make([][]float64, nl)
	headImp = make([][]float64, nl)
	for l := range nl {
		mlpImp[l] = make([]float64, c.IntermediateSize)
		headImp[l] = make([]float64, nkv)
	}
	tokens := 0
	for start := 0; start < len(calib); start += pruneBatch {
		seqs := calib[start:min(start+pruneBatch, len(calib))]
		maxLen := 0
		for _, s := range seqs {
			if len(s) == 0 {
				return nil, nil, fmt.Errorf("prune importance: empty calibration sequence")
			}
			maxLen = max(maxLen, len(s))
			tokens += len(s)
		}
		if maxLen > c.MaxPositionEmbeddings {
			return nil, nil, fmt.Errorf("prune importance: %d tokens exceed max_position_embeddings %d", maxLen, c.MaxPositionEmbeddings)
		}
		idT, posT, err := m.batch(seqs, maxLen, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("prune importance: %w", err)
		}
		mask := make([]float32, len(seqs)*maxLen)
		for i, s := range seqs {
			for j := range s {
				mask[i*maxLen+j] = 1
			}
		}
		out, err := exec.Exec(m.args(idT, posT, tensors.FromFlatDataAndDimensions(mask, len(seqs), maxLen))...)
		if err != nil {
			return nil, nil, fmt.Errorf("prune importance: %w", err)
		}
		for l := range nl {
			for i, v := range tensors.MustCopyFlatData[float32](out[2*l]) {
				mlpImp[l][i] += float64(v)
			}
			for i, v := range tensors.MustCopyFlatData[float32](out[2*l+1]) {
				headImp[l][i] += float64(v)
			}
		}
		for _, t := range out {
			t.FinalizeAll()
		}
	}
	for l := range nl {
		for i := range mlpImp[l] {
			mlpImp[l][i] /= float64(tokens)
		}
		for i := range headImp[l] {
			headImp[l][i] /= float64(tokens)
		}
	}
	return mlpImp, headImp, nil
}
