package model

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// hiddenParams makes Forward return the final hidden state instead of the
// logits: it claims an lm_head whose linear layer is the identity, so the
// decoder, the final RMSNorm and every Params wrapper (LoRA, packed INT4)
// are Forward's own.
type hiddenParams struct{ Params }

func (h hiddenParams) Has(name string) bool {
	return name == "lm_head.weight" || h.Params.Has(name)
}

func (h hiddenParams) Linear(module string, x *graph.Node) *graph.Node {
	if module == "lm_head" {
		return x
	}
	return h.Params.Linear(module, x)
}

// ForwardHidden runs the decoder without a cache and returns the hidden
// state after the final RMSNorm, [batch, seq, hidden] in f32: what the
// language-model head reads.
func ForwardHidden(c *Config, p Params, in Inputs) *graph.Node {
	in.Cache = nil
	h, _ := Forward(c, hiddenParams{p}, in)
	return h
}

// MeanHidden returns, for each sequence, the mean of the final hidden
// states (after the final norm) over its own tokens: a sentence embedding
// of hidden_size floats, not normalised. Sequences may differ in length;
// the batch is right-padded (causal attention keeps the padding out of the
// real tokens' states) and masked out of the mean. The batch size and the
// length are rounded up to powers of two (the length to at least 8, at most
// max_position_embeddings), so one compiled graph serves every call of a
// bucket.
func (m *Model) MeanHidden(ids [][]int) ([][]float32, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	maxLen := 0
	for _, s := range ids {
		if len(s) == 0 {
			return nil, fmt.Errorf("mean hidden: empty sequence")
		}
		maxLen = max(maxLen, len(s))
	}
	if maxLen > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("mean hidden: %d tokens exceed max_position_embeddings %d", maxLen, m.Config.MaxPositionEmbeddings)
	}
	if err := m.initHidden(); err != nil {
		return nil, err
	}
	t := min(pow2(max(maxLen, 8)), m.Config.MaxPositionEmbeddings)
	b := pow2(len(ids))
	padded := make([][]int, b)
	copy(padded, ids)
	idT, posT, err := m.batch(padded, t, 0)
	if err != nil {
		return nil, err
	}
	mask := make([]float32, b*t)
	for i, s := range ids {
		for j := range s {
			mask[i*t+j] = 1
		}
	}
	out, err := m.hidExec.Exec(m.args(idT, posT, tensors.FromFlatDataAndDimensions(mask, b, t))...)
	if err != nil {
		return nil, fmt.Errorf("mean hidden: %w", err)
	}
	flat := tensors.MustCopyFlatData[float32](out[0])
	out[0].FinalizeAll()
	d := m.Config.HiddenSize
	res := make([][]float32, len(ids))
	for i := range ids {
		res[i] = flat[i*d : (i+1)*d : (i+1)*d]
	}
	return res, nil
}

// initHidden compiles the pooled forward pass once (GoMLX keeps one
// executable per input shape: one per bucket).
func (m *Model) initHidden() error {
	m.hidOnce.Do(func() {
		nw := len(m.names)
		m.hidExec, m.hidErr = graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
			h := ForwardHidden(m.Config, m.params(in), Inputs{IDs: in[nw], Positions: in[nw+1]}) // [b, t, d]
			mask := in[nw+2]                                                                     // [b, t]
			sum := graph.ReduceSum(graph.Mul(h, graph.ExpandAxes(mask, -1)), 1)                  // [b, d]
			n := graph.ReduceAndKeep(mask, graph.ReduceSum, 1)                                   // [b, 1]
			n = graph.Max(n, graph.OnesLike(n))                                                  // padding rows: 0/1
			return []*graph.Node{graph.ConvertDType(graph.Div(sum, n), dtypes.Float32)}
		})
		if m.hidErr == nil {
			m.hidExec.SetMaxCache(64)
		}
	})
	return m.hidErr
}

// pow2 is the smallest power of two ≥ n (n ≥ 1).
func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
