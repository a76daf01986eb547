package distill

import (
	"math/rand/v2"
	"slices"

	"github.com/gomlx/gomlx/core/tensors"
)

// bucketLen rounds a sequence length up to one of a few sizes (powers of
// two and 1.5×), so that the trainer compiles few graph shapes.
func bucketLen(n int) int {
	b := 16
	for b < n {
		if b*3/2 >= n {
			return b * 3 / 2
		}
		b *= 2
	}
	return b
}

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
type batch struct {
	ids, targets, ceMask, topIDs, topLogp, topValid, kdMask *tensors.Tensor
	answer, label                                           *tensors.Tensor // [rows] int32, -1 where none
	rows, seqLen, tokens                                    int
	ceTokens                                                float64
}

// makeBatch pads the chosen sequences into tensors of rows × bucketLen with
// k soft-target slots per position. Rows beyond len(idx) are all padding.
func makeBatch(seqs []Sequence, idx []int, rows, k int) *batch {
	maxLen := 1
	for _, i := range idx {
		maxLen = max(maxLen, len(seqs[i].IDs))
	}
	s := bucketLen(maxLen)
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
	b.targets = tensors.FromFlatDataAndDimensions(tg, rows, s)
	b.ceMask = tensors.FromFlatDataAndDimensions(ce, rows, s)
	b.topIDs = tensors.FromFlatDataAndDimensions(tid, rows, s, k)
	b.topLogp = tensors.FromFlatDataAndDimensions(tlp, rows, s, k)
	b.topValid = tensors.FromFlatDataAndDimensions(tv, rows, s, k)
	b.kdMask = tensors.FromFlatDataAndDimensions(kd, rows, s)
	b.answer = tensors.FromFlatDataAndDimensions(ans, rows)
	b.label = tensors.FromFlatDataAndDimensions(lab, rows)
	return b
}

func (b *batch) args() []any {
	return []any{b.ids, b.targets, b.ceMask, b.topIDs, b.topLogp, b.topValid, b.kdMask}
}

func (b *batch) finalize() {
	for _, t := range []*tensors.Tensor{b.ids, b.targets, b.ceMask, b.topIDs, b.topLogp, b.topValid, b.kdMask, b.answer, b.label} {
		t.FinalizeAll()
	}
}
