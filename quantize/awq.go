package quantize

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// GroupReport is the AWQ scale search of one group of linear layers that
// share an input: the chosen α and candidate family (Duo: AutoAWQ's duo
// scaling) and the mean squared error of the group's outputs against full
// precision (over all calibration tokens) with plain round-to-nearest
// (α = 0) and with the chosen scales.
type GroupReport struct {
	Prev     string   `json:"prev"`    // where the inverse scales are folded: an RMSNorm or a linear layer
	Modules  []string `json:"modules"` // the layers whose input channels are scaled
	Alpha    float64  `json:"alpha"`
	Duo      bool     `json:"duo,omitempty"` // the scales are x^α / w^(1-α), not x^α
	MSERTN   float64  `json:"mse_rtn"`
	MSEAWQ   float64  `json:"mse_awq"`
	Clipped  bool     `json:"clipped,omitempty"`
	MSEAfter float64  `json:"mse_final"` // after scaling and clipping: the error of the weights written
}

// losses evaluates quantization errors on the backend, where the products
// with Gram matrices use its matmul kernels.
type losses struct {
	quad  *graph.Exec // E [r, n], G [n, n] -> Σ (E G) ⊙ E
	block *graph.Exec // E [r, ng, g], B [ng, g, g] -> [ng, r]: per-group Eᵀ B E
}

func newLosses(b compute.Backend) (*losses, error) {
	quad, err := graph.NewExec(b, func(e, g *graph.Node) *graph.Node {
		eg := graph.Dot(e, g).General([]int{1}, nil, []int{0}, nil)
		return graph.ReduceAllSum(graph.Mul(eg, e))
	})
	if err != nil {
		return nil, err
	}
	block, err := graph.NewExec(b, func(e, blk *graph.Node) *graph.Node {
		eb := graph.Dot(e, blk).General([]int{2}, []int{1}, []int{1}, []int{0}) // [ng, r, g]
		et := graph.TransposeAllAxes(e, 1, 0, 2)                                // [ng, r, g]
		return graph.ReduceSum(graph.Mul(eb, et), -1)
	})
	if err != nil {
		return nil, err
	}
	return &losses{quad: quad, block: block}, nil
}

func (l *losses) finalize() {
	l.quad.Finalize()
	l.block.Finalize()
}

// quadSum returns Σ_rows e G eᵀ for e [rows, n].
func (l *losses) quadSum(e []float32, rows, n int, g *tensors.Tensor) (float64, error) {
	out, err := l.quad.Call(tensors.FromFlatDataAndDimensions(e, rows, n), g)
	if err != nil {
		return 0, err
	}
	v := tensors.MustCopyFlatData[float32](out[0])[0]
	out[0].FinalizeAll()
	return float64(v), nil
}

// blockErrs returns, per (group, row), eᵀ B e over the group's channels, [ng, rows].
func (l *losses) blockErrs(e []float32, rows, ng, g int, blk *tensors.Tensor) ([]float32, error) {
	out, err := l.block.Call(tensors.FromFlatDataAndDimensions(e, rows, ng, g), blk)
	if err != nil {
		return nil, err
	}
	v := tensors.MustCopyFlatData[float32](out[0])
	out[0].FinalizeAll()
	return v, nil
}

// member is a linear layer taking part in a scale search.
type member struct {
	name     string
	w        []float32 // [out, in], the current weights
	out, in  int
	quantize bool // converted to INT4 (false: stays 16-bit, scaled exactly)
}

// scaleSearch finds the per-input-channel scales s minimising the output
// MSE of the quantized members, Q(W·diag(s))·diag(s)⁻¹ against W on the
// calibration inputs, as AutoAWQ's _search_best_scale does: for each α of
// the grid both of awqScales' candidates (plain and duo) are scored and the
// best kept; plain α = 0 is RTN. tie maps each input channel to the
// channel whose scale it shares (GQA: the query heads of one KV head share
// the scale folded into v_proj), or is nil.
func (q *quantizer) scaleSearch(members []member, st *inputStat, tie []int) (scales []float32, rep GroupReport, err error) {
	in := st.dim
	var rows int
	for _, m := range members {
		if m.quantize {
			rows += m.out
		}
	}
	if rows == 0 {
		return nil, rep, nil
	}
	xMean, wMean := reduceTied(st.absMean(), tie), reduceTied(weightMean(members, q.opts.GroupSize), tie)
	gram := tensors.FromFlatDataAndDimensions(st.gram, in, in)
	defer gram.FinalizeAll()
	e := make([]float32, rows*in)
	tmp := make([]float32, in)
	deq := make([]float32, in)
	norm := float64(max(st.tokens, 1)) * float64(rows)
	best := math.Inf(1)
	for i := range q.opts.Grid {
		alpha := float64(i) / float64(q.opts.Grid)
		for _, duo := range []bool{false, true} {
			sr := awqScales(xMean, wMean, alpha, duo)
			s := make([]float32, in)
			for c := range in {
				if tie != nil {
					s[c] = float32(sr[tie[c]])
				} else {
					s[c] = float32(sr[c])
				}
			}
			r := 0
			for _, m := range members {
				if !m.quantize {
					continue
				}
				for o := range m.out {
					row := m.w[o*in : (o+1)*in]
					for c, v := range row {
						tmp[c] = v * s[c]
					}
					fakeQuant4(deq, tmp, q.opts.GroupSize)
					er := e[r*in : (r+1)*in]
					for c, v := range row {
						er[c] = deq[c]/s[c] - v
					}
					r++
				}
			}
			sum, err := q.loss.quadSum(e, rows, in, gram)
			if err != nil {
				return nil, rep, fmt.Errorf("quantize: scale search: %w", err)
			}
			mse := sum / norm
			if i == 0 && !duo {
				rep.MSERTN = mse
			}
			if mse < best {
				best, rep.Alpha, rep.Duo, scales = mse, alpha, duo, s
			}
		}
	}
	rep.MSEAWQ = best
	for _, m := range members {
		rep.Modules = append(rep.Modules, m.name)
	}
	return scales, rep, nil
}

// awqScales is one AWQ candidate at α over the channels with mean input
// magnitude x and mean normalised weight magnitude w (weightMean):
// s = x^α (the paper's search), or with duo scaling (AutoAWQ's default)
// s = x^α / (w^(1-α) + 1e-4), which also shrinks the columns that set their
// groups' ranges. As in AutoAWQ, s is clamped at 1e-4 and normalised by
// sqrt(max(s)·min(s)), and non-finite entries become 1.
func awqScales(x, w []float64, alpha float64, duo bool) []float64 {
	s := make([]float64, len(x))
	lo, hi := math.Inf(1), 0.0
	for c := range x {
		v := math.Pow(x[c], alpha)
		if duo {
			v /= math.Pow(w[c], 1-alpha) + 1e-4
		}
		v = max(v, 1e-4)
		s[c] = v
		lo, hi = min(lo, v), max(hi, v)
	}
	for c, v := range s {
		v /= math.Sqrt(lo * hi)
		if math.IsInf(v, 0) || math.IsNaN(v) {
			v = 1
		}
		s[c] = v
	}
	return s
}

// weightMean is AutoAWQ's w_mean: per input channel, the mean over the
// rows of the quantized members of |w| divided by the max |w| of its
// (row, group of g channels).
func weightMean(members []member, g int) []float64 {
	in := members[0].in
	mean := make([]float64, in)
	rows := 0
	for _, m := range members {
		if !m.quantize {
			continue
		}
		for o := range m.out {
			row := m.w[o*in : (o+1)*in]
			for start := 0; start < in; start += g {
				var top float64
				for _, v := range row[start : start+g] {
					top = max(top, math.Abs(float64(v)))
				}
				for c, v := range row[start : start+g] {
					mean[start+c] += math.Abs(float64(v)) / (top + 1e-6)
				}
			}
			rows++
		}
	}
	for c := range mean {
		mean[c] /= float64(max(rows, 1))
	}
	return mean
}

// reduceTied averages v over the channels tie maps to the same index (v
// itself when tie is nil).
func reduceTied(v []float64, tie []int) []float64 {
	if tie == nil {
		return v
	}
	n := 0
	for _, t := range tie {
		n = max(n, t+1)
	}
	red := make([]float64, n)
	cnt := make([]int, n)
	for c, t := range tie {
		red[t] += v[c]
		cnt[t]++
	}
	for t := range red {
		red[t] /= float64(max(cnt[t], 1))
	}
	return red
}

// clipSearch shrinks each (output row, group) range of w [out, in] to the
// clamp [-t, t], t = max|w_g|·(1 - k/20), k < 10, that minimises that
// group's output error on the inputs summarised by the scaled Gram blocks
// (AutoAWQ's auto-clip). w is modified in place.
func (q *quantizer) clipSearch(w []float32, out, in int, blocks *tensors.Tensor) error {
	g := q.opts.GroupSize
	ng := in / g
	orig := make([]float32, ng*out) // max |w| per (row, group)
	for o := range out {
		for gi := range ng {
			var m float32
			for _, v := range w[o*in+gi*g : o*in+(gi+1)*g] {
				m = max(m, float32(math.Abs(float64(v))))
			}
			orig[o*ng+gi] = m
		}
	}
	bestErr := make([]float32, ng*out)
	bestMax := make([]float32, ng*out)
	e := make([]float32, out*in)
	clipped := make([]float32, g)
	deq := make([]float32, g)
	const grid, shrink = 20, 10
	for k := range shrink {
		f := 1 - float32(k)/grid
		for o := range out {
			for gi := range ng {
				t := orig[o*ng+gi] * f
				src := w[o*in+gi*g : o*in+(gi+1)*g]
				for i, v := range src {
					clipped[i] = min(max(v, -t), t)
				}
				fakeQuant4(deq, clipped, g)
				dst := e[o*in+gi*g : o*in+(gi+1)*g]
				for i, v := range src {
					dst[i] = deq[i] - v
				}
			}
		}
		errs, err := q.loss.blockErrs(e, out, ng, g, blocks) // [ng, out]
		if err != nil {
			return fmt.Errorf("quantize: clip search: %w", err)
		}
		for o := range out {
			for gi := range ng {
				v := errs[gi*out+o]
				if k == 0 || v < bestErr[o*ng+gi] {
					bestErr[o*ng+gi], bestMax[o*ng+gi] = v, orig[o*ng+gi]*f
				}
			}
		}
	}
	for o := range out {
		for gi := range ng {
			t := bestMax[o*ng+gi]
			row := w[o*in+gi*g : o*in+(gi+1)*g]
			for i, v := range row {
				row[i] = min(max(v, -t), t)
			}
		}
	}
	return nil
}

// gramBlocks returns the diagonal g×g blocks of diag(1/s)·G·diag(1/s)
// (the Gram of the scaled inputs x/s), [ng, g, g]; s may be nil.
func gramBlocks(st *inputStat, s []float32, g int) *tensors.Tensor {
	n := st.dim
	ng := n / g
	out := make([]float32, ng*g*g)
	for gi := range ng {
		for a := range g {
			ra := gi*g + a
			for b := range g {
				cb := gi*g + b
				v := st.gram[ra*n+cb]
				if s != nil {
					v /= s[ra] * s[cb]
				}
				out[(gi*g+a)*g+b] = v
			}
		}
	}
	return tensors.FromFlatDataAndDimensions(out, ng, g, g)
}

// groupMSE is the output MSE of the INT4 round trip of the quantized
// members (as they are now) on inputs x/s, s nil meaning 1.
func (q *quantizer) groupMSE(members []member, st *inputStat, s []float32) (float64, error) {
	in := st.dim
	g := make([]float32, in*in)
	for a := range in {
		for b := range in {
			v := st.gram[a*in+b]
			if s != nil {
				v /= s[a] * s[b]
			}
			g[a*in+b] = v
		}
	}
	gt := tensors.FromFlatDataAndDimensions(g, in, in)
	defer gt.FinalizeAll()
	var rows int
	var e []float32
	deq := make([]float32, in)
	for _, m := range members {
		if !m.quantize {
			continue
		}
		for o := range m.out {
			row := m.w[o*in : (o+1)*in]
			fakeQuant4(deq, row, q.opts.GroupSize)
			for c, v := range row {
				e = append(e, deq[c]-v)
			}
			rows++
		}
	}
	if rows == 0 {
		return 0, nil
	}
	sum, err := q.loss.quadSum(e, rows, in, gt)
	if err != nil {
		return 0, err
	}
	return sum / (float64(max(st.tokens, 1)) * float64(rows)), nil
}
