package distill

import (
	"math/rand/v2"
	"slices"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
)

// epochBatches returns the micro-batches of one epoch as sequence indices.
// The order depends only on seed and epoch, so a resumed run replays it.
// With bucketing, windows of 64 batches are sorted by length before they
// are cut, which cuts padding, and the batches are then shuffled.
func epochBatches(lengths []int, batchSize int, seed uint64, epoch int, bucketing bool) [][]int {
	rng := rand.New(rand.NewPCG(seed, uint64(epoch)+1))
	perm := rng.Perm(len(lengths))
	if bucketing {
		w := 64 * batchSize
		for off := 0; off < len(perm); off += w {
			win := perm[off:min(off+w, len(perm))]
			slices.SortStableFunc(win, func(a, b int) int { return lengths[a] - lengths[b] })
		}
	}
	var out [][]int
	for off := 0; off < len(perm); off += batchSize {
		out = append(out, perm[off:min(off+batchSize, len(perm))])
	}
	if bucketing {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}

// batch is one micro-batch as host tensors, padded to rows × seqLen.
//
// When few positions carry a loss (fine-tuning on answers), the targets are
// compacted: at [rows, n] lists the positions whose logits are needed, and
// targets, masks and soft targets are laid out over those n slots instead
// of seqLen, so the head runs on n positions only. at is nil otherwise
// (pretraining, where every position counts).
type batch struct {
	ids, targets, ceMask, topIDs, topLogp, topValid, kdMask *tensors.Tensor
	answer, label                                           *tensors.Tensor // [rows] int32, -1 where none
	at, answerAt                                            *tensors.Tensor // compacted: positions [rows, n], answer slot [rows]
	rows, seqLen, tokens                                    int
	ceTokens                                                float64
}

// makeBatch pads the chosen sequences into tensors of rows × PadLen(longest)
// with k soft-target slots per position. Rows beyond len(idx) are all padding.
func makeBatch(seqs []Sequence, idx []int, rows, k int) *batch {
	maxLen := 1
	for _, i := range idx {
		maxLen = max(maxLen, len(seqs[i].IDs))
	}
	s := model.PadLen(maxLen)
	b := &batch{rows: rows, seqLen: s}
	ids := make([]int32, rows*s)
	tg := make([]int32, rows*s)
	ce := make([]float32, rows*s)
	tid := make([]int32, rows*s*k)
	tlp := make([]float32, rows*s*k)
	tv := make([]float32, rows*s*k)
	kd := make([]float32, rows*s)
	ans := make([]int32, rows)
	lab := make([]int32, rows)
	for r := range rows {
		ans[r], lab[r] = -1, -1
		if r >= len(idx) {
			continue
		}
		q := seqs[idx[r]]
		b.tokens += len(q.IDs)
		off := r * s
		copy(ids[off:], q.IDs)
		for t := 0; t+1 < len(q.IDs); t++ {
			tg[off+t] = q.IDs[t+1]
			ce[off+t] = q.Loss[t]
			b.ceTokens += float64(q.Loss[t])
		}
		for _, st := range q.Soft {
			if st.Pos < 0 || st.Pos >= s {
				continue
			}
			kd[off+st.Pos] = 1
			base := (off + st.Pos) * k
			for j := range min(k, len(st.IDs)) {
				tid[base+j] = st.IDs[j]
				tlp[base+j] = st.Logp[j]
				tv[base+j] = 1
			}
		}
		ans[r], lab[r] = int32(q.Answer), int32(q.Label)
	}
	b.ids = tensors.FromFlatDataAndDimensions(ids, rows, s)
	b.answer = tensors.FromFlatDataAndDimensions(ans, rows)
	b.label = tensors.FromFlatDataAndDimensions(lab, rows)
	n := s
	if sel := lossSlots(ce, kd, ans, rows, s); sel != nil && compactTargets {
		n = len(sel) / rows
		at := make([]int32, rows*n)
		ansAt := make([]int32, rows)
		tg, ce, kd = gatherSlots(tg, sel, s, n, 1), gatherSlots(ce, sel, s, n, 1), gatherSlots(kd, sel, s, n, 1)
		tid, tlp, tv = gatherSlots(tid, sel, s, n, k), gatherSlots(tlp, sel, s, n, k), gatherSlots(tv, sel, s, n, k)
		for r := range rows {
			ansAt[r] = -1
			for j := range n {
				t := sel[r*n+j]
				at[r*n+j] = int32(max(t, 0))
				if t >= 0 && t == int(ans[r]) {
					ansAt[r] = int32(j)
				}
			}
		}
		b.at = tensors.FromFlatDataAndDimensions(at, rows, n)
		b.answerAt = tensors.FromFlatDataAndDimensions(ansAt, rows)
	}
	b.targets = tensors.FromFlatDataAndDimensions(tg, rows, n)
	b.ceMask = tensors.FromFlatDataAndDimensions(ce, rows, n)
	b.topIDs = tensors.FromFlatDataAndDimensions(tid, rows, n, k)
	b.topLogp = tensors.FromFlatDataAndDimensions(tlp, rows, n, k)
	b.topValid = tensors.FromFlatDataAndDimensions(tv, rows, n, k)
	b.kdMask = tensors.FromFlatDataAndDimensions(kd, rows, n)
	return b
}

// compactTargets turns compaction on; tests compare with the dense layout.
var compactTargets = true

// lossSlots picks, per row, the positions the loss or the answer reads, in
// order, padded with -1 to a common count n (a power of two, at least 4).
// It returns nil when compacting would not save at least half the positions.
func lossSlots(ce, kd []float32, ans []int32, rows, s int) []int {
	per := make([][]int, rows)
	most := 0
	for r := range rows {
		for t := range s {
			i := r*s + t
			if ce[i] > 0 || kd[i] > 0 || int32(t) == ans[r] {
				per[r] = append(per[r], t)
			}
		}
		most = max(most, len(per[r]))
	}
	n := 4
	for n < most {
		n *= 2
	}
	if 2*n > s {
		return nil
	}
	sel := make([]int, rows*n)
	for r := range rows {
		for j := range n {
			sel[r*n+j] = -1
			if j < len(per[r]) {
				sel[r*n+j] = per[r][j]
			}
		}
	}
	return sel
}

// gatherSlots copies the chosen positions' values (k per position) from a
// rows × s × k layout into rows × n × k; empty slots (-1) stay zero.
func gatherSlots[T int32 | float32](src []T, sel []int, s, n, k int) []T {
	rows := len(sel) / n
	out := make([]T, rows*n*k)
	for r := range rows {
		for j := range n {
			if t := sel[r*n+j]; t >= 0 {
				copy(out[(r*n+j)*k:(r*n+j+1)*k], src[(r*s+t)*k:(r*s+t+1)*k])
			}
		}
	}
	return out
}

// args are the gradient graph's batch inputs; at comes last when compacted.
func (b *batch) args() []any {
	a := []any{b.ids, b.targets, b.ceMask, b.topIDs, b.topLogp, b.topValid, b.kdMask}
	if b.at != nil {
		a = append(a, b.at)
	}
	return a
}

// evalArgs are the eval graph's batch inputs: the answer as a slot of at
// when compacted.
func (b *batch) evalArgs() []any {
	if b.at != nil {
		return []any{b.ids, b.targets, b.ceMask, b.answerAt, b.at}
	}
	return []any{b.ids, b.targets, b.ceMask, b.answer}
}

func (b *batch) finalize() {
	for _, t := range []*tensors.Tensor{b.ids, b.targets, b.ceMask, b.topIDs, b.topLogp, b.topValid, b.kdMask, b.answer, b.label, b.at, b.answerAt} {
		if t != nil {
			t.FinalizeAll()
		}
	}
}
