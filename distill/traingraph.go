package distill

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"

	"github.com/distillery/distillery/model"
)

// Trainable is the set of tensors a training run updates and how they
// enter the forward pass. Frozen weights get no gradient and no optimizer
// state. *lora.Adapter and FullWeights implement it.
type Trainable interface {
	// Names lists the trainable tensors, sorted.
	Names() []string
	Values() map[string][]float32
	Shapes() map[string][]int
	// SetValues stores trained values.
	SetValues(map[string][]float32) error
	// Params combines frozen base weights and trainable nodes; dropout is
	// nil outside training.
	Params(base model.PlainParams, trainable map[string]*graph.Node, dropout func(x *graph.Node, rate float64) *graph.Node) model.Params
}

// FullWeights trains every weight of a model: full fine-tuning and
// pretraining.
type FullWeights struct {
	values map[string][]float32
	shapes map[string][]int
}

// NewFullWeights wraps host weights (copied) for full fine-tuning.
func NewFullWeights(values map[string][]float32, shapes map[string][]int) *FullWeights {
	f := &FullWeights{values: map[string][]float32{}, shapes: map[string][]int{}}
	for n, v := range values {
		f.values[n] = append([]float32{}, v...)
		f.shapes[n] = shapes[n]
	}
	return f
}

func (f *FullWeights) Names() []string              { return sortedKeys(f.values) }
func (f *FullWeights) Values() map[string][]float32 { return f.values }
func (f *FullWeights) Shapes() map[string][]int     { return f.shapes }
func (f *FullWeights) SetValues(v map[string][]float32) error {
	for n := range f.values {
		if x, ok := v[n]; ok {
			f.values[n] = x
		}
	}
	return nil
}
func (f *FullWeights) Params(base model.PlainParams, tr map[string]*graph.Node, _ func(*graph.Node, float64) *graph.Node) model.Params {
	p := model.PlainParams{}
	for n, x := range base {
		p[n] = x
	}
	for n, x := range tr {
		p[n] = x
	}
	return p
}

// graphs builds the trainer's three computations. Inputs come in a fixed
// order: frozen weights, trainable weights, then per-exec state.
type graphs struct {
	cfg      *model.Config
	frozen   []string
	names    []string
	tr       Trainable
	spec     KDSpec
	dropout  bool
	labelIDs []int32
}

func (gs *graphs) params(in []*graph.Node, dropout func(*graph.Node, float64) *graph.Node) (model.Params, []*graph.Node) {
	base := model.PlainParams{}
	for i, n := range gs.frozen {
		base[n] = in[i]
	}
	w := in[len(gs.frozen) : len(gs.frozen)+len(gs.names)]
	tr := map[string]*graph.Node{}
	for i, n := range gs.names {
		tr[n] = w[i]
	}
	return gs.tr.Params(base, tr, dropout), w
}

func positions(ids *graph.Node) *graph.Node {
	b, s := ids.Shape().Dimensions[0], ids.Shape().Dimensions[1]
	return graph.BroadcastToDims(graph.Iota(ids.Graph(), shapes.Make(dtypes.Int32, 1, s), 1), b, s)
}

// gradFn: (frozen, trainable, acc, rng, batch...) -> (total, kd, ce, rng', acc'...).
func (gs *graphs) gradFn(g *graph.Graph, in []*graph.Node) []*graph.Node {
	nf, nt := len(gs.frozen), len(gs.names)
	acc := in[nf+nt : nf+2*nt]
	rng := in[nf+2*nt]
	b := in[nf+2*nt+1:]
	ids, targets, ceMask, topIDs, topLogp, topValid, kdMask := b[0], b[1], b[2], b[3], b[4], b[5], b[6]
	var at *graph.Node // compacted batch: the positions the targets refer to
	if len(b) > 7 {
		at = b[7]
	}
	var drop func(*graph.Node, float64) *graph.Node
	if gs.dropout {
		drop = func(x *graph.Node, rate float64) *graph.Node {
			if rate <= 0 {
				return x
			}
			var u *graph.Node
			rng, u = graph.RandomUniform(rng, x.Shape())
			keep := graph.GreaterOrEqual(u, graph.Scalar(u.Graph(), u.DType(), rate))
			return graph.Where(keep, graph.DivScalar(x, 1-rate), graph.ZerosLike(x))
		}
	}
	p, w := gs.params(in, drop)
	logits, _ := model.Forward(gs.cfg, p, model.Inputs{IDs: ids, Positions: positions(ids), At: at})
	total, kd, ce := DistillLoss(gs.spec, logits, targets, ceMask, topIDs, topLogp, topValid, kdMask)
	grads := graph.Gradient(total, w...)
	out := []*graph.Node{total, kd, ce, rng}
	for i := range grads {
		out = append(out, graph.Add(acc[i], grads[i]))
	}
	return out
}

// applyFn: (trainable, m, v, acc, lr, bc1, bc2, scale, wd, clip) ->
// (trainable', m', v', acc'=0, grad norm). AdamW as in PyTorch, after
// averaging the accumulated gradients (scale) and global-norm clipping.
func (gs *graphs) applyFn(g *graph.Graph, in []*graph.Node) []*graph.Node {
	nt := len(gs.names)
	w, m, v, acc := in[:nt], in[nt:2*nt], in[2*nt:3*nt], in[3*nt:4*nt]
	lr, bc1, bc2, scale, wd, clip := in[4*nt], in[4*nt+1], in[4*nt+2], in[4*nt+3], in[4*nt+4], in[4*nt+5]
	const b1, b2, eps = 0.9, 0.999, 1e-8
	grads := make([]*graph.Node, nt)
	var sq *graph.Node
	for i := range acc {
		grads[i] = graph.Mul(acc[i], scale)
		s := graph.ReduceAllSum(graph.Square(grads[i]))
		if sq == nil {
			sq = s
		} else {
			sq = graph.Add(sq, s)
		}
	}
	norm := graph.Sqrt(sq)
	// factor = clip / max(norm, clip) when clip > 0, else 1.
	factor := graph.Where(graph.GreaterThan(clip, graph.ScalarZero(g, clip.DType())),
		graph.Div(clip, graph.Max(norm, clip)), graph.ScalarOne(g, clip.DType()))
	var ws, ms, vs, zs []*graph.Node
	for i := range w {
		gi := graph.Mul(grads[i], factor)
		mi := graph.Add(graph.MulScalar(m[i], b1), graph.MulScalar(gi, 1-b1))
		vi := graph.Add(graph.MulScalar(v[i], b2), graph.MulScalar(graph.Square(gi), 1-b2))
		upd := graph.Div(graph.Div(mi, bc1), graph.AddScalar(graph.Sqrt(graph.Div(vi, bc2)), eps))
		wi := w[i]
		if wi.Rank() >= 2 { // no decay on norms and biases, as HF does
			wi = graph.Sub(wi, graph.Mul(wi, graph.Mul(lr, wd)))
		}
		wi = graph.Sub(wi, graph.Mul(upd, lr))
		ws, ms, vs, zs = append(ws, wi), append(ms, mi), append(vs, vi), append(zs, graph.ZerosLike(acc[i]))
	}
	out := append(append(append(ws, ms...), vs...), zs...)
	return append(out, norm)
}

// evalFn: (frozen, trainable, labelIDs, ids, targets, ceMask, answer[, at])
// -> (nll sum [B], token count [B], label logits [B, L]). With at, the
// targets are compacted and answer is a slot of at.
func (gs *graphs) evalFn(g *graph.Graph, in []*graph.Node) []*graph.Node {
	nf, nt := len(gs.frozen), len(gs.names)
	labelIDs, ids, targets, ceMask, answer := in[nf+nt], in[nf+nt+1], in[nf+nt+2], in[nf+nt+3], in[nf+nt+4]
	var at *graph.Node
	if len(in) > nf+nt+5 {
		at = in[nf+nt+5]
	}
	p, _ := gs.params(in, nil)
	logits, _ := model.Forward(gs.cfg, p, model.Inputs{IDs: ids, Positions: positions(ids), At: at})
	v := logits.Shape().Dimensions[2]
	lp := graph.LogSoftmax(logits, -1)
	nll := graph.Neg(graph.ReduceSum(graph.Mul(lp, graph.OneHot(targets, v, lp.DType())), -1))
	nllSum := graph.ReduceSum(graph.Mul(nll, ceMask), 1)
	count := graph.ReduceSum(ceMask, 1)
	s := logits.Shape().Dimensions[1]
	one := graph.OneHot(graph.MaxScalar(answer, 0), s, logits.DType())                  // [B, S]
	rowLogits := graph.Dot(one, logits).General([]int{1}, []int{0}, []int{1}, []int{0}) // [B, V]
	sel := graph.OneHot(labelIDs, v, logits.DType())                                    // [L, V]
	labelLogits := model.Dense(rowLogits, sel)                                          // [B, L]
	return []*graph.Node{nllSum, count, labelLogits}
}
