package distill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
)

// TrainOptions configure Train.
type TrainOptions struct {
	Config  *model.Config
	Backend compute.Backend
	// Base holds the frozen weights (all of them for LoRA; none, or those
	// not in Trainable, for full fine-tuning).
	Base      map[string][]float32
	Trainable Trainable
	Train     []Sequence
	Val       []Sequence
	// K is the number of soft-target slots per position (the teacher's
	// top-k, or the label count); 0 when there are no soft targets.
	K    int
	Loss KDSpec

	Epochs      float64
	MaxSteps    int
	LR          float64
	WarmupRatio float64
	WeightDecay float64
	MaxGradNorm float64
	BatchSize   int
	GradAccum   int
	Seed        uint64
	Dropout     bool // the Trainable applies dropout in training graphs
	Bucketing   bool // sort by length within windows (SFT); off for packed blocks

	EvalEvery int // optimiser steps between val evaluations (0: at the end)
	Patience  int // evaluations without improvement before stopping (0: never)
	SaveEvery int // optimiser steps between checkpoints (0: at evaluations)

	// LabelIDs, for classification, are the labels' first tokens: the val
	// accuracy is the argmax among them at the answer position.
	LabelIDs []int32

	// Dir holds checkpoint/ and metrics.jsonl; a checkpoint found there is
	// resumed.
	Dir      string
	Progress func(TrainProgress)
	Log      *slog.Logger
}

// TrainProgress is reported after every optimiser step.
type TrainProgress struct {
	Step, Steps  int
	Loss, LR     float64
	TokensPerSec float64
}

// TrainResult sums up a run.
type TrainResult struct {
	Steps           int     `json:"steps"`
	Epochs          float64 `json:"epochs"`
	FinalLoss       float64 `json:"final_loss"`
	FirstLoss       float64 `json:"first_loss"`
	ValLoss         float64 `json:"val_loss"`
	ValAccuracy     float64 `json:"val_accuracy,omitempty"`
	FirstValLoss    float64 `json:"first_val_loss"`
	FirstValAcc     float64 `json:"first_val_accuracy,omitempty"`
	BestStep        int     `json:"best_step"`
	EarlyStopped    bool    `json:"early_stopped"`
	ResumedFrom     int     `json:"resumed_from,omitempty"`
	Tokens          int64   `json:"tokens"`
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	TrainableParams int64   `json:"trainable_params"`
	OptimizerBytes  int64   `json:"optimizer_state_bytes"`
}

// Schedule returns the learning rate at optimiser step (0-based): linear
// warm-up to peak over warm steps, then cosine decay to 0 at total.
func Schedule(step, total, warm int, peak float64) float64 {
	if step < warm {
		return peak * float64(step+1) / float64(warm)
	}
	if total <= warm {
		return peak
	}
	frac := float64(step-warm) / float64(total-warm)
	return peak * 0.5 * (1 + math.Cos(math.Pi*math.Min(1, frac)))
}

func (o *TrainOptions) check() error {
	switch {
	case o.Config == nil || o.Trainable == nil:
		return errors.New("train: config and trainable weights are required")
	case len(o.Train) == 0:
		return errors.New("train: no training sequences")
	case o.BatchSize <= 0 || o.GradAccum <= 0:
		return errors.New("train: batch size and gradient accumulation must be positive")
	case o.Epochs <= 0 && o.MaxSteps <= 0:
		return errors.New("train: set epochs or max steps")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.K <= 0 {
		o.K = 1
	}
	return nil
}

// totalSteps is MaxSteps, or the optimiser steps of Epochs passes.
func (o *TrainOptions) totalSteps() int {
	if o.MaxSteps > 0 {
		return o.MaxSteps
	}
	per := (len(o.Train) + o.BatchSize - 1) / o.BatchSize
	return max(1, int(math.Ceil(o.Epochs*float64(per)/float64(o.GradAccum))))
}

// trainer is one run's state.
type trainer struct {
	o                   TrainOptions
	gs                  *graphs
	grad, apply, eval   *graph.Exec
	frozen              []*tensors.Tensor
	w, m, v, acc        []*tensors.Tensor
	rng                 *tensors.Tensor
	st                  trainState
	lengths             []int
	epochPlan           [][]int
	planEpoch           int
	metrics             *metricsLog
	labelIDs            *tensors.Tensor
	best                map[string][]float32
	steps, warm         int
	start               time.Time
	firstLoss, lastLoss float64
}

// Train runs AdamW over the training sequences, evaluating on Val, with
// checkpoints in Dir that a later call resumes from. It leaves the trained
// values (the best evaluated ones with early stopping) in o.Trainable.
func Train(ctx context.Context, o TrainOptions) (TrainResult, error) {
	if err := o.check(); err != nil {
		return TrainResult{}, err
	}
	t, err := newTrainer(o)
	if err != nil {
		return TrainResult{}, err
	}
	defer t.close()
	return t.run(ctx)
}

func newTrainer(o TrainOptions) (*trainer, error) {
	if o.Backend == nil {
		b, err := model.NewBackend("")
		if err != nil {
			return nil, err
		}
		o.Backend = b
	}
	names := o.Trainable.Names()
	vals, shp := o.Trainable.Values(), o.Trainable.Shapes()
	var frozen []string
	for n := range o.Base {
		if _, ok := vals[n]; !ok {
			frozen = append(frozen, n)
		}
	}
	sort.Strings(frozen)
	t := &trainer{o: o, gs: &graphs{cfg: o.Config, frozen: frozen, names: names, tr: o.Trainable, spec: o.Loss, dropout: o.Dropout}}
	baseShapes := model.WeightShapes(o.Config)
	for _, n := range frozen {
		t.frozen = append(t.frozen, tensors.FromFlatDataAndDimensions(o.Base[n], baseShapes[n]...))
	}
	for _, n := range names {
		t.w = append(t.w, tensors.FromFlatDataAndDimensions(append([]float32{}, vals[n]...), shp[n]...))
		t.m = append(t.m, tensors.FromShape(t.w[len(t.w)-1].Shape()))
		t.v = append(t.v, tensors.FromShape(t.w[len(t.w)-1].Shape()))
		t.acc = append(t.acc, tensors.FromShape(t.w[len(t.w)-1].Shape()))
	}
	var err error
	if t.rng, err = graph.RNGStateFromSeed(int64(o.Seed)); err != nil {
		return nil, err
	}
	if t.grad, err = graph.NewExec(o.Backend, t.gs.gradFn); err != nil {
		return nil, fmt.Errorf("train graph: %w", err)
	}
	if t.apply, err = graph.NewExec(o.Backend, t.gs.applyFn); err != nil {
		return nil, fmt.Errorf("optimizer graph: %w", err)
	}
	if t.eval, err = graph.NewExec(o.Backend, t.gs.evalFn); err != nil {
		return nil, fmt.Errorf("eval graph: %w", err)
	}
	for _, e := range []*graph.Exec{t.grad, t.apply, t.eval} {
		e.SetMaxCache(64)
	}
	labels := o.LabelIDs
	if len(labels) == 0 {
		labels = []int32{0}
	}
	t.labelIDs = tensors.FromFlatDataAndDimensions(append([]int32{}, labels...), len(labels))
	for _, s := range o.Train {
		t.lengths = append(t.lengths, len(s.IDs))
	}
	t.steps = o.totalSteps()
	t.warm = int(math.Round(o.WarmupRatio * float64(t.steps)))
	t.st = trainState{Fingerprint: o.fingerprint(shp)}
	t.planEpoch = -1
	return t, nil
}

func (t *trainer) close() {
	for _, group := range [][]*tensors.Tensor{t.frozen, t.w, t.m, t.v, t.acc} {
		for _, x := range group {
			x.FinalizeAll()
		}
	}
	if t.metrics != nil {
		t.metrics.close()
	}
}

// nextBatch returns the micro-batch at the data position and advances it.
func (t *trainer) nextBatch() *batch {
	for {
		if t.planEpoch != t.st.Epoch {
			t.epochPlan = epochBatches(t.lengths, t.o.BatchSize, t.o.Seed, t.st.Epoch, t.o.Bucketing)
			t.planEpoch = t.st.Epoch
		}
		if t.st.Pos < len(t.epochPlan) {
			b := makeBatch(t.o.Train, t.epochPlan[t.st.Pos], t.o.BatchSize, t.o.K)
			t.st.Pos++
			return b
		}
		t.st.Epoch++
		t.st.Pos = 0
	}
}

func (t *trainer) weightArgs(extra ...any) []any {
	args := make([]any, 0, len(t.frozen)+len(t.w)+len(extra))
	for _, x := range t.frozen {
		args = append(args, x)
	}
	for _, x := range t.w {
		args = append(args, x)
	}
	return append(args, extra...)
}

// microStep runs one micro-batch forward and backward, adding its
// gradients to the accumulators.
func (t *trainer) microStep(b *batch) (total, kd, ce float64, err error) {
	args := t.weightArgs()
	for _, a := range t.acc {
		args = append(args, a)
	}
	args = append(args, t.rng)
	out, err := t.grad.Exec(append(args, b.args()...)...)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("train step: %w", err)
	}
	total, kd, ce = scalar(out[0]), scalar(out[1]), scalar(out[2])
	t.rng.FinalizeAll()
	t.rng = out[3]
	for i := range t.acc {
		t.acc[i].FinalizeAll()
		t.acc[i] = out[4+i]
	}
	return total, kd, ce, nil
}

// update applies AdamW with the accumulated gradients.
func (t *trainer) update(step int) (lr, norm float64, err error) {
	lr = Schedule(step, t.steps, t.warm, t.o.LR)
	var args []any
	for _, group := range [][]*tensors.Tensor{t.w, t.m, t.v, t.acc} {
		for _, x := range group {
			args = append(args, x)
		}
	}
	n := float64(step + 1)
	f := func(x float64) *tensors.Tensor { return tensors.FromScalar(float32(x)) }
	args = append(args, f(lr), f(1-math.Pow(0.9, n)), f(1-math.Pow(0.999, n)), f(1/float64(t.o.GradAccum)),
		f(t.o.WeightDecay), f(t.o.MaxGradNorm))
	out, err := t.apply.Exec(args...)
	if err != nil {
		return 0, 0, fmt.Errorf("optimizer step: %w", err)
	}
	nt := len(t.w)
	for i, group := range [][]*tensors.Tensor{t.w, t.m, t.v, t.acc} {
		for j := range group {
			group[j].FinalizeAll()
			group[j] = out[i*nt+j]
		}
	}
	norm = scalar(out[4*nt])
	return lr, norm, nil
}

func scalar(t *tensors.Tensor) float64 {
	v := tensors.MustCopyFlatData[float32](t)
	t.FinalizeAll()
	return float64(v[0])
}

// evalResult is the val loss (mean NLL of completion tokens) and, for
// classification, accuracy of the label argmax.
type evalResult struct {
	Loss, Accuracy float64
	HasAccuracy    bool
}

func (t *trainer) evaluate() (evalResult, error) {
	var r evalResult
	if len(t.o.Val) == 0 {
		return r, nil
	}
	idx := make([]int, len(t.o.Val))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return len(t.o.Val[idx[a]].IDs) < len(t.o.Val[idx[b]].IDs) })
	var nll, count float64
	var right, labelled int
	for off := 0; off < len(idx); off += t.o.BatchSize {
		b := makeBatch(t.o.Val, idx[off:min(off+t.o.BatchSize, len(idx))], t.o.BatchSize, 1)
		out, err := t.eval.Exec(t.weightArgs(append([]any{t.labelIDs}, b.evalArgs()...)...)...)
		lab := tensors.MustCopyFlatData[int32](b.label)
		b.finalize()
		if err != nil {
			return r, fmt.Errorf("eval: %w", err)
		}
		sums := tensors.MustCopyFlatData[float32](out[0])
		counts := tensors.MustCopyFlatData[float32](out[1])
		ll := tensors.MustCopyFlatData[float32](out[2])
		nl := len(ll) / t.o.BatchSize
		for _, x := range out {
			x.FinalizeAll()
		}
		for i := range sums {
			nll += float64(sums[i])
			count += float64(counts[i])
			if len(t.o.LabelIDs) > 0 && lab[i] >= 0 {
				labelled++
				if argmax(ll[i*nl:(i+1)*nl]) == int(lab[i]) {
					right++
				}
			}
		}
	}
	if count > 0 {
		r.Loss = nll / count
	}
	if labelled > 0 {
		r.Accuracy, r.HasAccuracy = float64(right)/float64(labelled), true
	}
	return r, nil
}

func argmax(xs []float32) int {
	best := 0
	for i, x := range xs {
		if x > xs[best] {
			best = i
		}
	}
	return best
}

// snapshot copies the trainable tensors to the host.
func (t *trainer) snapshot() map[string][]float32 {
	out := map[string][]float32{}
	for i, n := range t.gs.names {
		out[n] = tensors.MustCopyFlatData[float32](t.w[i])
	}
	return out
}
