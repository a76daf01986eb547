package distill

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Loss kinds, the values of train.loss.kind.
const (
	KindForwardKL = "forward_kl" // KL(teacher ‖ student)
	KindReverseKL = "reverse_kl" // KL(student ‖ teacher)
	KindJSD       = "jsd"        // generalised Jensen-Shannon divergence, weight Beta
	KindCE        = "ce"         // hard-label cross-entropy only, no KD term
)

// ProbFloor is the smallest probability a bucket of the top-k distributions
// may hold, so that log-ratios and gradients stay finite:
//
//   - Teacher: a bucket below ProbFloor (a tail of 1 - Σ exp(topLogp) that is
//     0 or rounding noise, a label the teacher never chose) counts as 0 when
//     tempering; after tempering every bucket is raised to at least
//     ProbFloor and the distribution renormalised. Flooring after tempering
//     keeps T > 1 from inflating the floor (1e-6^(1/2) would be 1e-3).
//   - Student: the tail is Σ_non-listed p + ProbFloor, finite (with its
//     gradient) even when the listed tokens cover the whole vocabulary;
//     then the buckets are renormalised.
//
// The floor sits above float32 rounding: top-k probabilities stored as
// float32 log-probs sum to 1 only within ~1e-7, so a smaller tail is noise.
const ProbFloor = 1e-6

// bigNeg stands for -inf in masked reductions: finite, so that neither
// max - max nor 0·x turns into NaN.
const bigNeg = -1e30

// KDSpec is the distillation loss of a training run (recipe train.loss).
//
// The teacher is known only through its top-k list at each position, so
// both distributions are compared on K+1 buckets: the K listed tokens
// (valid entries, duplicates merged) and a tail bucket holding all the
// other tokens.
//
//   - Student: p_s = softmax(logits/T) over the vocabulary, projected on
//     the buckets: p_s(id_k) for listed ids and Σ of the non-listed tokens
//     for the tail (summed directly, not 1 - Σ listed, so no cancellation).
//   - Teacher: p_k = exp(topLogp_k), tail = 1 - Σ p_k (see ProbFloor),
//     tempered as p^(1/T) and renormalised over the K+1 buckets. This is
//     exact for the listed tokens; for the tail it is an approximation,
//     since tempering the lumped tail mass (Σ p_j)^(1/T) is not
//     Σ p_j^(1/T) of the unknown tail tokens. At T = 1 it is exact.
//
// The KD term is multiplied by T² (Hinton et al.), so that its gradients
// keep their scale across temperatures.
type KDSpec struct {
	// Kind is KindForwardKL, KindReverseKL, KindJSD or KindCE.
	Kind string
	// Temperature T > 0 softens both distributions; 1 compares them as
	// they are.
	Temperature float64
	// Alpha in [0,1] weighs the KD term in DistillLoss; 1-Alpha goes to
	// the hard-label cross-entropy. Ignored by KindCE.
	Alpha float64
	// Beta in [0,1] is the JSD's mixing weight, as in TRL's GKD trainer
	// (generalized_jsd_loss) and Agarwal et al. 2023, eq. 1:
	//   m = β·p_t + (1-β)·p_s,  JSD_β = β·KL(p_t‖m) + (1-β)·KL(p_s‖m);
	// like TRL, β = 0 is KL(p_t‖p_s) (forward) and β = 1 is KL(p_s‖p_t)
	// (reverse), where the formula itself would vanish. Used by KindJSD only.
	Beta float64
}

// Validate checks the kind and the ranges of the spec's numbers. KDLoss
// and DistillLoss panic, while building the graph, on a spec that fails it.
func (s KDSpec) Validate() error {
	switch s.Kind {
	case KindForwardKL, KindReverseKL, KindJSD, KindCE:
	default:
		return fmt.Errorf("loss kind %q: want %s, %s, %s or %s", s.Kind, KindForwardKL, KindReverseKL, KindJSD, KindCE)
	}
	if s.Kind == KindCE {
		return nil
	}
	if !(s.Temperature > 0) || math.IsInf(s.Temperature, 0) {
		return fmt.Errorf("loss temperature %v: want a finite number > 0", s.Temperature)
	}
	if !(s.Alpha >= 0 && s.Alpha <= 1) {
		return fmt.Errorf("loss alpha %v: want [0,1]", s.Alpha)
	}
	if s.Kind == KindJSD && !(s.Beta >= 0 && s.Beta <= 1) {
		return fmt.Errorf("loss beta %v: want [0,1]", s.Beta)
	}
	return nil
}

// KDLoss is the KD term, T² times the divergence between the teacher's and
// the student's bucket distributions (see KDSpec), averaged over the
// positions where kdMask > 0 and at least one top-k entry is valid; a
// float32 scalar, 0 when no position counts. KindCE gives 0.
//
// Shapes: logits [B,S,V] (any float dtype, computed in float32); topIDs
// [B,S,K] int (student-vocabulary ids; entries whose topValid is 0 are
// ignored, whatever their id); topLogp [B,S,K] teacher natural-log
// probabilities; topValid [B,S,K] 1 for real entries, 0 for padding;
// kdMask [B,S] (weights, normally 0/1). Valid entries that repeat an id are
// merged (their probabilities summed). Valid ids must lie in [0,V); they
// are clamped into it.
//
// Classification: K = number of labels, topIDs = first student token of
// each label, topLogp = log of the teacher's label probabilities (a label
// of probability 0 may be -inf), the tail is then the __other__ mass, and
// kdMask is 1 at the answer position only.
func KDLoss(spec KDSpec, logits, topIDs, topLogp, topValid, kdMask *graph.Node) *graph.Node {
	mustValidate(spec)
	checkShapes(logits, topIDs, topLogp, topValid, kdMask)
	if spec.Kind == KindCE {
		return graph.Scalar(logits.Graph(), dtypes.Float32, 0)
	}
	return kdTerm(spec, newTempered(logits, spec.Temperature), topIDs, topLogp, topValid, kdMask)
}

// CrossEntropy is the mean over positions with mask > 0 of the next-token
// negative log-likelihood -log softmax(logits)[targets]: a float32 scalar, 0
// when the mask is all zero. logits [B,S,V]; targets [B,S] int, already
// shifted (targets[b,s] is the token that should follow position s; masked
// positions may hold anything, e.g. -100); mask [B,S].
func CrossEntropy(logits, targets, mask *graph.Node) *graph.Node {
	checkShapes(logits, nil, nil, nil, mask)
	return crossEntropy(newTempered(logits, 1).ls, targets, mask)
}

// DistillLoss returns the training loss total = Alpha·kd + (1-Alpha)·ce,
// with kd = KDLoss (over kdMask) and ce = CrossEntropy (over ceMask, at
// temperature 1); for KindCE total = ce and kd = 0. kd and ce are returned
// for logging. Shapes as in KDLoss and CrossEntropy.
func DistillLoss(spec KDSpec, logits, targets, ceMask, topIDs, topLogp, topValid, kdMask *graph.Node) (total, kd, ce *graph.Node) {
	mustValidate(spec)
	checkShapes(logits, topIDs, topLogp, topValid, kdMask)
	checkShapes(logits, nil, nil, nil, ceMask)
	sm1 := newTempered(logits, 1)
	ce = crossEntropy(sm1.ls, targets, ceMask)
	if spec.Kind == KindCE {
		return ce, graph.Scalar(logits.Graph(), dtypes.Float32, 0), ce
	}
	smT := sm1
	if spec.Temperature != 1 {
		smT = newTempered(logits, spec.Temperature)
	}
	kd = kdTerm(spec, smT, topIDs, topLogp, topValid, kdMask)
	total = graph.Add(graph.MulScalar(kd, spec.Alpha), graph.MulScalar(ce, 1-spec.Alpha))
	return total, kd, ce
}

func mustValidate(spec KDSpec) {
	if err := spec.Validate(); err != nil {
		exceptions.Panicf("distill: %v", err)
	}
}

// checkShapes panics unless logits is [B,S,V] float, the top-k inputs (when
// not nil) are [B,S,K] and mask is [B,S].
func checkShapes(logits, topIDs, topLogp, topValid, mask *graph.Node) {
	if logits.Rank() != 3 || !logits.DType().IsFloat() {
		exceptions.Panicf("distill: logits must be float [B,S,V], got %s", logits.Shape())
	}
	d := logits.Shape().Dimensions
	if mask.Rank() != 2 || mask.Shape().Dimensions[0] != d[0] || mask.Shape().Dimensions[1] != d[1] {
		exceptions.Panicf("distill: mask must be [%d,%d], got %s", d[0], d[1], mask.Shape())
	}
	if topIDs == nil {
		return
	}
	if !topIDs.DType().IsInt() {
		exceptions.Panicf("distill: topIDs must be integers, got %s", topIDs.Shape())
	}
	k := topIDs.Shape().Dimensions
	for _, n := range []*graph.Node{topIDs, topLogp, topValid} {
		nd := n.Shape().Dimensions
		if n.Rank() != 3 || nd[0] != d[0] || nd[1] != d[1] || len(k) != 3 || nd[2] != k[2] {
			exceptions.Panicf("distill: top-k inputs must be [%d,%d,K] alike, got %s, %s, %s",
				d[0], d[1], topIDs.Shape(), topLogp.Shape(), topValid.Shape())
		}
	}
}

func toF32(x *graph.Node) *graph.Node {
	if x.DType() == dtypes.Float32 {
		return x
	}
	return graph.ConvertDType(x, dtypes.Float32)
}

// tempered is softmax(logits/T) over the last axis in the pieces the
// losses use: ls = log_softmax, and the softmax as e/sum, where
// e = exp(z - max z) and sum = Σ e (kept [B,S,1]).
type tempered struct{ ls, e, sum *graph.Node }

func newTempered(logits *graph.Node, t float64) tempered {
	z := toF32(logits)
	if t != 1 {
		z = graph.MulScalar(z, 1/t)
	}
	shifted := graph.Sub(z, graph.StopGradient(graph.ReduceAndKeep(z, graph.ReduceMax, -1)))
	e := graph.Exp(shifted)
	sum := graph.ReduceAndKeep(e, graph.ReduceSum, -1)
	return tempered{ls: graph.Sub(shifted, graph.Log(sum)), e: e, sum: sum}
}

// indicesAt builds Gather/Scatter indices [B,S,N,3] = (b, s, ids[b,s,n])
// for ids [B,S,N], with ids where use is false replaced by 0 and the rest
// clamped into [0,v).
func indicesAt(ids, use *graph.Node, v int) *graph.Node {
	g := ids.Graph()
	ids = graph.ConvertDType(ids, dtypes.Int32)
	ids = graph.Where(use, ids, graph.ScalarZero(g, dtypes.Int32))
	ids = graph.MinScalar(graph.MaxScalar(ids, 0), v-1)
	sh := shapes.Make(dtypes.Int32, ids.Shape().Dimensions...)
	return graph.Stack([]*graph.Node{graph.Iota(g, sh, 0), graph.Iota(g, sh, 1), ids}, -1)
}

func crossEntropy(ls, targets, mask *graph.Node) *graph.Node {
	if targets.Rank() != 2 || !targets.DType().IsInt() {
		exceptions.Panicf("distill: targets must be int [B,S], got %s", targets.Shape())
	}
	mask = toF32(mask)
	use := graph.GreaterThan(mask, graph.ScalarZero(mask.Graph(), dtypes.Float32))
	idx := indicesAt(graph.ExpandAxes(targets, -1), graph.ExpandAxes(use, -1), ls.Shape().Dimensions[2])
	nll := graph.Neg(graph.Squeeze(graph.Gather(ls, idx), -1))
	return maskedMean(nll, mask)
}

// maskedMean is Σ w·x / Σ w over w > 0, 0 when Σ w = 0; x where w = 0 is
// ignored even if it is not finite.
func maskedMean(x, w *graph.Node) *graph.Node {
	g := x.Graph()
	zero := graph.ScalarZero(g, dtypes.Float32)
	num := graph.ReduceAllSum(graph.Mul(graph.Where(graph.GreaterThan(w, zero), x, zero), w))
	den := graph.ReduceAllSum(w)
	den = graph.Where(graph.GreaterThan(den, zero), den, graph.Scalar(g, dtypes.Float32, 1))
	return graph.Div(num, den)
}

// maskedLogNormalize returns x - logsumexp(x over w > 0) along the last
// axis where w > 0, and 0 elsewhere. Each row must have some w > 0.
func maskedLogNormalize(x, w *graph.Node) *graph.Node {
	g := x.Graph()
	on := graph.GreaterThan(w, graph.ScalarZero(g, dtypes.Float32))
	xm := graph.Where(on, x, graph.Scalar(g, dtypes.Float32, bigNeg))
	mx := graph.StopGradient(graph.ReduceAndKeep(xm, graph.ReduceMax, -1))
	lse := graph.Add(mx, graph.Log(graph.ReduceAndKeep(graph.Exp(graph.Sub(xm, mx)), graph.ReduceSum, -1)))
	return graph.Where(on, graph.Sub(x, lse), graph.ScalarZero(g, dtypes.Float32))
}

// logAddExp is log(exp(a)+exp(b)) for finite a, b.
func logAddExp(a, b *graph.Node) *graph.Node {
	mx := graph.StopGradient(graph.Max(a, b))
	return graph.Add(mx, graph.Log(graph.Add(graph.Exp(graph.Sub(a, mx)), graph.Exp(graph.Sub(b, mx)))))
}

// kdTerm computes KDLoss from the student's tempered softmax.
func kdTerm(spec KDSpec, st tempered, topIDs, topLogp, topValid, kdMask *graph.Node) *graph.Node {
	lsT := st.ls
	g := lsT.Graph()
	f32 := dtypes.Float32
	zero := graph.ScalarZero(g, f32)
	dims := lsT.Shape().Dimensions
	b, s, v := dims[0], dims[1], dims[2]
	k := topIDs.Shape().Dimensions[2]
	t := spec.Temperature

	// Teacher side: constants as far as the gradient goes.
	validF := graph.StopGradient(toF32(topValid))
	valid := graph.GreaterThan(validF, zero)
	validF = graph.ConvertDType(valid, f32)
	ids := graph.ConvertDType(topIDs, dtypes.Int32)
	ids = graph.Where(valid, ids, graph.ScalarZero(g, dtypes.Int32))
	// same[b,s,k,j]: entries k and j are both valid and name the same id.
	bkk := []int{b, s, k, k}
	same := graph.ConvertDType(graph.Equal(
		graph.BroadcastToDims(graph.ExpandAxes(ids, -1), bkk...),
		graph.BroadcastToDims(graph.ExpandAxes(ids, -2), bkk...)), f32)
	same = graph.Mul(same, graph.Mul(
		graph.BroadcastToDims(graph.ExpandAxes(validF, -1), bkk...),
		graph.BroadcastToDims(graph.ExpandAxes(validF, -2), bkk...)))
	// first: valid entries whose id no earlier valid entry holds.
	kk := shapes.Make(dtypes.Int32, k, k)
	earlier := graph.ConvertDType(graph.LessThan(graph.Iota(g, kk, 1), graph.Iota(g, kk, 0)), f32)
	dupBefore := graph.ReduceMax(graph.Mul(same, graph.BroadcastToDims(graph.ExpandLeftToRank(earlier, 4), bkk...)), -1)
	first := graph.Mul(validF, graph.Sub(graph.OnesLike(dupBefore), dupBefore))
	pt := graph.Mul(graph.Exp(graph.Where(valid, graph.StopGradient(toF32(topLogp)), zero)), validF)
	merged := graph.ReduceSum(graph.Mul(same, graph.BroadcastToDims(graph.ExpandAxes(pt, -2), bkk...)), -1)
	tailT := graph.Sub(graph.Scalar(g, f32, 1), graph.ReduceAndKeep(graph.Mul(merged, first), graph.ReduceSum, -1))
	w := graph.Concatenate([]*graph.Node{first, graph.Ones(g, shapes.Make(f32, b, s, 1))}, -1)
	pT := graph.Concatenate([]*graph.Node{merged, tailT}, -1)
	logT := graph.Log(graph.MaxScalar(pT, ProbFloor))
	if t != 1 {
		logT = graph.MulScalar(logT, 1/t)
	}
	logT = graph.Where(graph.GreaterOrEqual(pT, graph.Scalar(g, f32, ProbFloor)), logT, graph.Scalar(g, f32, bigNeg))
	logT = graph.Log(graph.MaxScalar(graph.Exp(maskedLogNormalize(logT, w)), ProbFloor))
	lqt := graph.StopGradient(maskedLogNormalize(logT, w))

	// Student side.
	idx := graph.StopGradient(indicesAt(ids, valid, v))
	// notListed[b,s,j] = 0 where a valid entry names j, else 1.
	notListed := graph.StopGradient(graph.ScatterMin(graph.Ones(g, shapes.Make(f32, b, s, v)), idx,
		graph.Sub(graph.OnesLike(validF), validF), false, false))
	gathered := graph.Gather(lsT, idx)
	// The tail summed directly over the non-listed tokens: no cancellation.
	rest := graph.Div(graph.ReduceAndKeep(graph.Mul(st.e, notListed), graph.ReduceSum, -1), st.sum)
	tailS := graph.Log(graph.AddScalar(rest, ProbFloor))
	lqs := maskedLogNormalize(graph.Concatenate([]*graph.Node{gathered, tailS}, -1), w)

	qt := graph.Mul(graph.Exp(lqt), w)
	qs := graph.Mul(graph.Exp(lqs), w)
	kl := func(q, lq, lr *graph.Node) *graph.Node { // Σ q·(lq - lr)
		return graph.ReduceSum(graph.Mul(q, graph.Sub(lq, lr)), -1)
	}
	var div *graph.Node
	switch beta := spec.Beta; {
	case spec.Kind == KindForwardKL || spec.Kind == KindJSD && beta == 0:
		div = kl(qt, lqt, lqs)
	case spec.Kind == KindReverseKL || spec.Kind == KindJSD && beta == 1:
		div = kl(qs, lqs, lqt)
	default:
		lm := logAddExp(graph.AddScalar(lqt, math.Log(beta)), graph.AddScalar(lqs, math.Log1p(-beta)))
		div = graph.Add(graph.MulScalar(kl(qt, lqt, lm), beta), graph.MulScalar(kl(qs, lqs, lm), 1-beta))
	}
	div = graph.MulScalar(div, t*t)

	hasTop := graph.ReduceMax(validF, -1)
	return maskedMean(div, graph.Mul(toF32(kdMask), hasTop))
}
