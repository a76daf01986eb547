package quantize

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"

	"github.com/distillery/distillery/model"
)

// computeDType maps LoadOptions.DType to the model's compute dtype.
func computeDType(s string) (dtypes.DType, error) {
	switch s {
	case "", "f32":
		return dtypes.Float32, nil
	case "bf16":
		return dtypes.BFloat16, nil
	}
	return 0, fmt.Errorf("dtype %q: want f32 or bf16", s)
}

// qparams is the forward pass's view of a quantized checkpoint: 16-bit
// tensors are cast to the compute dtype, and Linear dequantizes packed
// layers inside the graph.
type qparams struct {
	model.PlainParams
	dt dtypes.DType
}

func (p qparams) Get(name string) *graph.Node {
	n := p.PlainParams.Get(name)
	if n.DType().IsFloat() && n.DType() != p.dt {
		n = graph.ConvertDType(n, p.dt)
	}
	return n
}

// Has reports a linear layer's weight as present when it is packed, so
// a quantized lm_head is not mistaken for a tied one.
func (p qparams) Has(name string) bool {
	if p.PlainParams.Has(name) {
		return true
	}
	module, ok := strings.CutSuffix(name, ".weight")
	return ok && p.PlainParams.Has(module+".qweight")
}

func (p qparams) Linear(module string, x *graph.Node) *graph.Node {
	var y *graph.Node
	switch {
	case p.PlainParams.Has(module + ".qweight"):
		y = awqLinear(x, p.PlainParams[module+".qweight"], p.PlainParams[module+".qzeros"], p.PlainParams[module+".scales"])
	case p.PlainParams.Has(module+".weight_scale") && p.PlainParams[module+".weight"].DType() == dtypes.Int8:
		// [out, in] int8 times per-row scales: fold the scale after the matmul.
		q := graph.ConvertDType(p.PlainParams[module+".weight"], dtypes.Float32)
		xf := graph.ConvertDType(x, dtypes.Float32)
		y = graph.Dot(xf, q).General([]int{x.Rank() - 1}, nil, []int{1}, nil)
		s := graph.Reshape(graph.ConvertDType(p.PlainParams[module+".weight_scale"], dtypes.Float32), -1)
		y = graph.ConvertDType(graph.Mul(y, graph.ExpandLeftToRank(s, y.Rank())), x.DType())
	default:
		return p.PlainParams.Linear(module, x) // Dense casts the weight and bias to x's dtype
	}
	if b, ok := p.PlainParams[module+".bias"]; ok {
		y = graph.Add(y, graph.ExpandLeftToRank(graph.ConvertDType(b, y.DType()), y.Rank()))
	}
	return y
}

// unpackAWQ splits AutoAWQ-packed int32 words [r, out/8] into their 4-bit
// codes, transposed and in output order: [out, r] float32. The packed words
// are transposed first (an eighth of the data), then for every output
// column k of a word, (word >> shift_k) & 15 with shift_k = 4·[0 4 1 5 2 6
// 3 7][k] undoes AutoAWQ's [0 2 4 6 1 3 5 7] interleave.
func unpackAWQ(packed *graph.Node) *graph.Node {
	g := packed.Graph()
	r, cols := packed.Shape().Dimensions[0], packed.Shape().Dimensions[1]
	pt := graph.Transpose(packed, 0, 1) // [cols, r]
	parts := make([]*graph.Node, 8)
	for k, shift := range awqShift {
		v := pt
		if shift > 0 {
			v = graph.BitwiseShiftRightLogical(pt, graph.Scalar(g, dtypes.Int32, shift))
		}
		parts[k] = graph.BitwiseAnd(v, graph.Scalar(g, dtypes.Int32, 15))
	}
	return graph.Reshape(graph.ConvertDType(graph.Stack(parts, 1), dtypes.Float32), cols*8, r)
}

// DequantAWQ rebuilds the float32 weights of an AutoAWQ GEMM layer inside
// the graph, in HF orientation [out, in]: w = (q - z)·s, qweight [in, out/8],
// qzeros [in/G, out/8], scales [in/G, out].
func DequantAWQ(qweight, qzeros, scales *graph.Node) *graph.Node {
	in := qweight.Shape().Dimensions[0]
	ng, out := scales.Shape().Dimensions[0], scales.Shape().Dimensions[1]
	st := graph.Transpose(graph.ConvertDType(scales, dtypes.Float32), 0, 1) // [out, ng]
	q := graph.Reshape(unpackAWQ(qweight), out, ng, in/ng)
	z := unpackAWQ(qzeros) // [out, ng]
	return graph.Reshape(graph.Mul(graph.Sub(q, graph.ExpandAxes(z, -1)), graph.ExpandAxes(st, -1)), out, in)
}

// awqLinear computes x @ Wᵀ for an AutoAWQ GEMM layer, dequantizing per
// group inside the graph: the codes are unpacked to [out, in], multiplied by
// their group's scale, and meet x in a matmul; the zero points are applied
// on the small side, y = x·(q·s)ᵀ - (Σ_{i∈g} x_i)·(z·s)ᵀ, which equals
// x·((q - z)·s)ᵀ and saves a full-size pass.
func awqLinear(x, qweight, qzeros, scales *graph.Node) *graph.Node {
	in := qweight.Shape().Dimensions[0]
	ng, out := scales.Shape().Dimensions[0], scales.Shape().Dimensions[1]
	st := graph.Transpose(graph.ConvertDType(scales, dtypes.Float32), 0, 1) // [out, ng]
	w := graph.Mul(graph.Reshape(unpackAWQ(qweight), out, ng, in/ng), graph.ExpandAxes(st, -1))
	zs := graph.Mul(unpackAWQ(qzeros), st) // [out, ng]
	dims := x.Shape().Dimensions
	xf := graph.ConvertDType(x, dtypes.Float32)
	y := graph.Dot(xf, graph.Reshape(w, out, in)).General([]int{x.Rank() - 1}, nil, []int{1}, nil)
	xsum := graph.ReduceSum(graph.Reshape(xf, append(slices.Clone(dims[:len(dims)-1]), ng, in/ng)...), -1) // [..., ng]
	y = graph.Sub(y, graph.Dot(xsum, zs).General([]int{x.Rank() - 1}, nil, []int{1}, nil))
	return graph.ConvertDType(y, x.DType())
}
