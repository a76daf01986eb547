package quantize

import (
	"context"
	"fmt"
	"slices"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
)

// inputStat summarises the inputs of a linear layer over the calibration
// tokens: the per-channel sum of |x| (AWQ's activation magnitude s_x) and
// the Gram matrix Σ x xᵀ, from which the mean squared output error of any
// weight perturbation ΔW is trace(ΔW G ΔWᵀ) / tokens.
type inputStat struct {
	dim    int
	absSum []float64
	gram   []float32 // [dim, dim]
	tokens int
}

// absMean is the mean |x| per input channel.
func (s *inputStat) absMean() []float64 {
	out := make([]float64, s.dim)
	for i, v := range s.absSum {
		out[i] = v / float64(max(s.tokens, 1))
	}
	return out
}

// The inputs recorded per decoder layer: q/k/v share one input, gate/up another.
const (
	inAttn = iota // input_layernorm output: q_proj, k_proj, v_proj
	inO           // attention output: o_proj
	inMLP         // post_attention_layernorm output: gate_proj, up_proj
	inDown        // silu(gate)·up: down_proj
	numInputs
)

// inputModule is the module whose input each kind is.
var inputModule = [numInputs]string{"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"}

// recorder is Params that remembers the input of every linear layer, so
// model.Forward itself yields the calibration activations. The logits are
// not needed: lm_head (also when tied) is replaced by the identity, which
// saves the largest matmul of a small model.
type recorder struct {
	model.PlainParams
	seen map[string]*graph.Node
}

func (r recorder) Has(name string) bool {
	return name == "lm_head.weight" || r.PlainParams.Has(name)
}

func (r recorder) Linear(module string, x *graph.Node) *graph.Node {
	if module == "lm_head" {
		return x
	}
	r.seen[module] = x
	return r.PlainParams.Linear(module, x)
}

// calibBatch is the number of calibration sequences per forward pass.
const calibBatch = 8

// gramBudget bounds the host memory of the Gram matrices gathered in one
// calibration pass; bigger models take several passes over the layers.
const gramBudget = 1 << 30

// calibrate runs the calibration sequences through the float model and
// returns, per decoder layer, the statistics of its four linear inputs.
// Sequences are sorted by length and right-padded to a power-of-two length
// with a mask, so few graph shapes are compiled.
func calibrate(ctx context.Context, m *model.Model, calib [][]int, progress func()) ([][numInputs]*inputStat, error) {
	c := m.Config
	if len(calib) == 0 {
		return nil, fmt.Errorf("quantize: AWQ needs calibration sequences")
	}
	seqs := make([][]int, 0, len(calib))
	for i, s := range calib {
		if len(s) == 0 {
			return nil, fmt.Errorf("quantize: calibration sequence %d is empty", i)
		}
		if len(s) > c.MaxPositionEmbeddings {
			s = s[:c.MaxPositionEmbeddings]
		}
		for _, id := range s {
			if id < 0 || id >= c.VocabSize {
				return nil, fmt.Errorf("quantize: calibration token id %d out of range [0, %d)", id, c.VocabSize)
			}
		}
		seqs = append(seqs, s)
	}
	slices.SortStableFunc(seqs, func(a, b []int) int { return len(a) - len(b) })

	dims := [numInputs]int{c.HiddenSize, c.NumAttentionHeads * c.HeadDim, c.HiddenSize, c.IntermediateSize}
	perLayer := 0
	for _, d := range dims {
		perLayer += 4 * d * d
	}
	chunk := max(1, gramBudget/perLayer)
	stats := make([][numInputs]*inputStat, c.NumHiddenLayers)
	for from := 0; from < c.NumHiddenLayers; from += chunk {
		to := min(from+chunk, c.NumHiddenLayers)
		if err := calibrateLayers(ctx, m, seqs, from, to, dims, stats, progress); err != nil {
			return nil, err
		}
	}
	return stats, nil
}

func calibrateLayers(ctx context.Context, m *model.Model, seqs [][]int, from, to int, dims [numInputs]int, stats [][numInputs]*inputStat, progress func()) error {
	c := m.Config
	names := m.WeightNames()
	ts := m.Tensors()
	nw := len(names)
	for _, n := range names {
		if !ts[n].DType().IsFloat() {
			return fmt.Errorf("quantize: %s is %s: the model is already quantized", n, ts[n].DType())
		}
	}
	exec, err := graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
		p := model.PlainParams{}
		for i, n := range names {
			p[n] = graph.ConvertDType(in[i], dtypes.Float32)
		}
		rec := recorder{PlainParams: p, seen: map[string]*graph.Node{}}
		ids, pos, mask := in[nw], in[nw+1], in[nw+2] // mask [b, s] f32
		model.Forward(c, rec, model.Inputs{IDs: ids, Positions: pos})
		var outs []*graph.Node
		for l := from; l < to; l++ {
			for k := range numInputs {
				x := graph.ConvertDType(rec.seen[fmt.Sprintf("model.layers.%d.%s", l, inputModule[k])], dtypes.Float32)
				xm := graph.Mul(x, graph.ExpandAxes(mask, -1))
				outs = append(outs, graph.ReduceSum(graph.Abs(xm), 0, 1))
				outs = append(outs, graph.Dot(xm, x).General([]int{0, 1}, nil, []int{0, 1}, nil))
			}
		}
		return outs
	})
	if err != nil {
		return fmt.Errorf("quantize: calibration graph: %w", err)
	}
	defer exec.Finalize()
	for l := from; l < to; l++ {
		for k := range numInputs {
			stats[l][k] = &inputStat{dim: dims[k], absSum: make([]float64, dims[k]), gram: make([]float32, dims[k]*dims[k])}
		}
	}
	args := make([]any, 0, nw+3)
	for _, n := range names {
		args = append(args, ts[n])
	}
	tokens := 0
	for start := 0; start < len(seqs); start += calibBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := seqs[start:min(start+calibBatch, len(seqs))]
		length := bucket(len(batch[len(batch)-1]), m.Config.MaxPositionEmbeddings)
		ids := make([]int32, calibBatch*length)
		pos := make([]int32, calibBatch*length)
		mask := make([]float32, calibBatch*length)
		for b := range calibBatch {
			for t := range length {
				pos[b*length+t] = int32(t)
			}
			if b < len(batch) {
				for t, id := range batch[b] {
					ids[b*length+t] = int32(id)
					mask[b*length+t] = 1
				}
				tokens += len(batch[b])
			}
		}
		out, err := exec.Call(append(args[:nw:nw],
			tensors.FromFlatDataAndDimensions(ids, calibBatch, length),
			tensors.FromFlatDataAndDimensions(pos, calibBatch, length),
			tensors.FromFlatDataAndDimensions(mask, calibBatch, length))...)
		if err != nil {
			return fmt.Errorf("quantize: calibration: %w", err)
		}
		i := 0
		for l := from; l < to; l++ {
			for k := range numInputs {
				st := stats[l][k]
				for j, v := range tensors.MustCopyFlatData[float32](out[i]) {
					st.absSum[j] += float64(v)
				}
				tensors.MustConstFlatData(out[i+1], func(g []float32) {
					for j, v := range g {
						st.gram[j] += v
					}
				})
				i += 2
			}
		}
		for _, t := range out {
			t.FinalizeAll()
		}
		if progress != nil && from == 0 {
			progress()
		}
	}
	for l := from; l < to; l++ {
		for k := range numInputs {
			stats[l][k].tokens = tokens
		}
	}
	return nil
}

// bucket rounds a length up to a power of two (at least 16), capped at limit.
func bucket(n, limit int) int {
	b := 16
	for b < n {
		b *= 2
	}
	return max(min(b, limit), n)
}
