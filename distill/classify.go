package distill

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
)

// Classifier scores sequences by the model's next-token distribution at
// the answer position, restricted to the labels' first tokens.
type Classifier struct {
	m        *model.Model
	exec     *graph.Exec
	labelIDs *tensors.Tensor
	n        int
}

// NewClassifier compiles the scoring graph for a model (plain, LoRA or INT4).
func NewClassifier(m *model.Model, labelIDs []int32) (*Classifier, error) {
	c := &Classifier{m: m, n: len(labelIDs),
		labelIDs: tensors.FromFlatDataAndDimensions(append([]int32{}, labelIDs...), len(labelIDs))}
	var err error
	c.exec, err = m.NewExec(func(p model.Params, in []*graph.Node) []*graph.Node {
		ids, answer, labels := in[0], in[1], in[2]
		at := graph.ExpandAxes(graph.MaxScalar(answer, 0), 1) // [B, 1]: the head runs there only
		logits, _ := model.Forward(m.Config, p, model.Inputs{IDs: ids, Positions: positions(ids), At: at})
		v := logits.Shape().Dimensions[2]
		row := graph.Reshape(logits, logits.Shape().Dimensions[0], v) // [B, V]
		lp := graph.LogSoftmax(row, -1)
		return []*graph.Node{model.Dense(lp, graph.OneHot(labels, v, lp.DType()))} // [B, L]
	})
	if err != nil {
		return nil, fmt.Errorf("classifier graph: %w", err)
	}
	return c, nil
}

// Prediction is one sequence's label scores.
type Prediction struct {
	// LabelLogprobs are the model's log-probabilities of each label's first
	// token (over the whole vocabulary).
	LabelLogprobs []float64
	// Probs renormalises them over the labels.
	Probs []float64
	Label int // argmax
}

// Classify scores seqs in batches of batchSize, padding lengths to a few
// buckets so few shapes compile.
func (c *Classifier) Classify(ctx context.Context, seqs []Sequence, batchSize int) ([]Prediction, error) {
	out := make([]Prediction, len(seqs))
	idx := make([]int, len(seqs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return len(seqs[idx[a]].IDs) < len(seqs[idx[b]].IDs) })
	for off := 0; off < len(idx); off += batchSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		part := idx[off:min(off+batchSize, len(idx))]
		b := makeBatch(seqs, part, batchSize, 1)
		res, err := c.exec.Exec(c.m.Args(b.ids, b.answer, c.labelIDs)...)
		b.finalize()
		if err != nil {
			return nil, fmt.Errorf("classify: %w", err)
		}
		lp := tensors.MustCopyFlatData[float32](res[0])
		res[0].FinalizeAll()
		for r, i := range part {
			p := Prediction{LabelLogprobs: make([]float64, c.n), Probs: make([]float64, c.n)}
			mx := math.Inf(-1)
			for j := range c.n {
				p.LabelLogprobs[j] = float64(lp[r*c.n+j])
				mx = math.Max(mx, p.LabelLogprobs[j])
			}
			var z float64
			for j := range c.n {
				p.Probs[j] = math.Exp(p.LabelLogprobs[j] - mx)
				z += p.Probs[j]
			}
			for j := range c.n {
				p.Probs[j] /= z
				if p.Probs[j] > p.Probs[p.Label] {
					p.Label = j
				}
			}
			out[i] = p
		}
	}
	return out, nil
}
