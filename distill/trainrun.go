package distill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"
)

// fingerprint identifies what a checkpoint is valid for: the trainable
// shapes and every option that changes the curve.
func (o *TrainOptions) fingerprint(shapes map[string][]int) string {
	names := sortedKeys(shapes)
	data, _ := json.Marshal(struct {
		Names                                  []string
		Shapes                                 map[string][]int
		Loss                                   KDSpec
		Epochs                                 float64
		MaxSteps, BatchSize, GradAccum, K      int
		LR, Warmup, WD, Clip                   float64
		Seed                                   uint64
		Dropout, Bucketing                     bool
		EvalEvery, Patience, NTrain, NVal      int
		FirstTrainLen, FirstTrainID, LastTrain string
	}{names, shapes, o.Loss, o.Epochs, o.MaxSteps, o.BatchSize, o.GradAccum, o.K, o.LR, o.WarmupRatio,
		o.WeightDecay, o.MaxGradNorm, o.Seed, o.Dropout, o.Bucketing, o.EvalEvery, o.Patience, len(o.Train), len(o.Val),
		fmt.Sprint(len(o.Train[0].IDs)), o.Train[0].ID, o.Train[len(o.Train)-1].ID})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

func (t *trainer) run(ctx context.Context) (TrainResult, error) {
	o := &t.o
	resumed, err := t.load()
	if err != nil {
		return TrainResult{}, err
	}
	if t.metrics, err = openMetrics(o.Dir, t.st.Step); err != nil {
		return TrainResult{}, err
	}
	res := TrainResult{TrainableParams: t.trainableParams(), OptimizerBytes: t.optimizerBytes()}
	if resumed {
		res.ResumedFrom = t.st.Step
		o.Log.Info("resuming training", "step", t.st.Step, "of", t.steps, "epoch", t.st.Epoch)
	} else if len(o.Val) > 0 {
		ev, err := t.evaluate()
		if err != nil {
			return res, err
		}
		t.st.FirstVal = ev
		if err := t.metrics.write(map[string]any{"step": 0, "val_loss": ev.Loss, "val_accuracy": accuracyOrNil(ev)}); err != nil {
			return res, err
		}
	}
	saveEvery := o.SaveEvery
	if saveEvery <= 0 {
		saveEvery = o.EvalEvery
	}
	if saveEvery <= 0 {
		saveEvery = 50
	}
	t.start = time.Now().Add(-time.Duration(t.st.Seconds * float64(time.Second)))
	lastSaved := t.st.Step
	for t.st.Step < t.steps {
		if err := ctx.Err(); err != nil {
			if t.st.Step > lastSaved {
				if serr := t.save(); serr != nil {
					return res, serr
				}
			}
			return res, err
		}
		var loss, kd, ce float64
		for range o.GradAccum {
			b := t.nextBatch()
			l, k, c, err := t.microStep(b)
			t.st.Tokens += int64(b.tokens)
			b.finalize()
			if err != nil {
				return res, err
			}
			loss, kd, ce = loss+l/float64(o.GradAccum), kd+k/float64(o.GradAccum), ce+c/float64(o.GradAccum)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return res, fmt.Errorf("train step %d: loss is %v; lower the learning rate", t.st.Step+1, loss)
		}
		lr, norm, err := t.update(t.st.Step)
		if err != nil {
			return res, err
		}
		t.st.Step++
		t.st.Seconds = time.Since(t.start).Seconds()
		if t.st.Step == 1 {
			t.st.FirstLoss = loss
		}
		t.st.LastLoss = loss
		tps := float64(t.st.Tokens) / math.Max(t.st.Seconds, 1e-9)
		line := map[string]any{"step": t.st.Step, "epoch": t.epochs(), "loss": loss, "lr": lr, "grad_norm": norm,
			"tokens": t.st.Tokens, "tokens_per_s": tps, "elapsed_s": t.st.Seconds}
		if o.Loss.Kind != "ce" {
			line["kd_loss"], line["ce_loss"] = kd, ce
		}
		if err := t.metrics.write(line); err != nil {
			return res, err
		}
		if o.Progress != nil {
			o.Progress(TrainProgress{Step: t.st.Step, Steps: t.steps, Loss: loss, LR: lr, TokensPerSec: tps})
		}
		stop := false
		if (o.EvalEvery > 0 && t.st.Step%o.EvalEvery == 0) || t.st.Step == t.steps {
			if stop, err = t.evalStep(); err != nil {
				return res, err
			}
		}
		if t.st.Step%saveEvery == 0 || stop || t.st.Step == t.steps {
			if err := t.save(); err != nil {
				return res, err
			}
			lastSaved = t.st.Step
		}
		if stop {
			t.st.EarlyStopped = true
			o.Log.Info("early stopping", "step", t.st.Step, "best_step", t.st.BestStep, "patience", o.Patience)
			break
		}
	}
	return t.finish(res)
}

// evalStep evaluates on val, tracks the best step and says whether the
// patience has run out.
func (t *trainer) evalStep() (bool, error) {
	ev, err := t.evaluate()
	if err != nil {
		return false, err
	}
	t.st.LastVal = ev
	if err := t.metrics.write(map[string]any{"step": t.st.Step, "val_loss": ev.Loss, "val_accuracy": accuracyOrNil(ev)}); err != nil {
		return false, err
	}
	if len(t.o.Val) == 0 {
		return false, nil
	}
	if !t.st.HasBest || ev.Loss < t.st.BestVal-1e-7 {
		t.st.HasBest, t.st.BestVal, t.st.BestAcc, t.st.BestStep, t.st.BadEvals = true, ev.Loss, ev.Accuracy, t.st.Step, 0
		if t.o.Patience > 0 {
			t.best = t.snapshot()
		}
		return false, nil
	}
	t.st.BadEvals++
	return t.o.Patience > 0 && t.st.BadEvals >= t.o.Patience, nil
}

func (t *trainer) finish(res TrainResult) (TrainResult, error) {
	vals := t.snapshot()
	final := t.st.LastVal
	if t.best != nil && t.st.BestStep != t.st.Step {
		vals = t.best
		t.o.Log.Info("keeping the best evaluated weights", "step", t.st.BestStep, "val_loss", t.st.BestVal)
		final = evalResult{Loss: t.st.BestVal, Accuracy: t.st.BestAcc, HasAccuracy: t.st.LastVal.HasAccuracy}
	}
	if err := t.o.Trainable.SetValues(vals); err != nil {
		return res, err
	}
	res.Steps, res.Epochs = t.st.Step, t.epochs()
	res.FirstLoss, res.FinalLoss = t.st.FirstLoss, t.st.LastLoss
	res.FirstValLoss, res.FirstValAcc = t.st.FirstVal.Loss, t.st.FirstVal.Accuracy
	res.ValLoss, res.ValAccuracy = final.Loss, final.Accuracy
	res.BestStep, res.EarlyStopped = t.st.BestStep, t.st.EarlyStopped
	res.Tokens, res.Seconds = t.st.Tokens, t.st.Seconds
	res.TokensPerSecond = float64(t.st.Tokens) / math.Max(t.st.Seconds, 1e-9)
	return res, t.metrics.close()
}

func (t *trainer) epochs() float64 {
	per := float64((len(t.o.Train) + t.o.BatchSize - 1) / t.o.BatchSize)
	return float64(t.st.Epoch) + float64(t.st.Pos)/per
}

func accuracyOrNil(ev evalResult) any {
	if !ev.HasAccuracy {
		return nil
	}
	return ev.Accuracy
}

func (t *trainer) trainableParams() int64 {
	var n int64
	for _, x := range t.w {
		n += int64(x.Shape().Size())
	}
	return n
}

// optimizerBytes counts AdamW's state: two f32 moments per trainable value.
// Frozen weights have none.
func (t *trainer) optimizerBytes() int64 {
	var n int64
	for i := range t.m {
		n += int64(t.m[i].Shape().Memory()) + int64(t.v[i].Shape().Memory())
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
