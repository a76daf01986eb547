package model

import (
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestBF16DenseAccuracy guards against bf16 products that accumulate in
// bf16 (the Go backend does, and loses all precision over 32+ terms).
func TestBF16DenseAccuracy(t *testing.T) {
	b, _ := NewBackend("")
	for _, sz := range [][3]int{{6, 32, 128}, {6, 32, 16}, {6, 8, 128}, {1, 32, 128}, {6, 64, 64}, {64, 64, 64}} {
		s, d, o := sz[0], sz[1], sz[2]
		xv := make([]float32, s*d)
		wv := make([]float32, o*d)
		for i := range xv {
			xv[i] = float32(rand.NormFloat64())
		}
		for i := range wv {
			wv[i] = float32(rand.NormFloat64())
		}
		x := tensors.FromFlatDataAndDimensions(xv, 1, s, d)
		w := tensors.FromFlatDataAndDimensions(wv, o, d)
		run := func(dt dtypes.DType) []float32 {
			out, err := graph.ExecOnce(b, func(x, w *graph.Node) *graph.Node {
				return graph.ConvertDType(Dense(graph.ConvertDType(x, dt), graph.ConvertDType(w, dt)), dtypes.Float32)
			}, x, w)
			if err != nil {
				t.Fatal(err)
			}
			return tensors.MustCopyFlatData[float32](out)
		}
		a, c := run(dtypes.Float32), run(dtypes.BFloat16)
		if e := RelativeError(c, a); e > 0.01 {
			t.Errorf("bf16 dense %v: relative error %.3g", sz, e)
		}
	}
}
