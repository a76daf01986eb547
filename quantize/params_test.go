package quantize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestAWQLinear checks the runtime's grouped INT4 matmul against the host
// dequantization and against DequantAWQ followed by a float matmul.
func TestAWQLinear(t *testing.T) {
	const in, out, g = 96, 40, 32
	rng := rand.New(rand.NewPCG(4, 4))
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	l := quantizeInt4(w, out, in, g)
	ts := l.awqTensors("m")
	qw, _ := ts[0].Int32()
	qz, _ := ts[1].Int32()
	sc, err := floatTensor(ts[2])
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 2*3*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	deq := l.dequant() // [out, in]
	want := make([]float64, 2*3*out)
	for r := range 6 {
		for o := range out {
			for i := range in {
				want[r*out+o] += float64(x[r*in+i]) * float64(deq[o*in+i])
			}
		}
	}
	exec, err := graph.NewExec(testBackend(t), func(in []*graph.Node) []*graph.Node {
		return []*graph.Node{awqLinear(in[0], in[1], in[2], in[3]), matmul(in[0], DequantAWQ(in[1], in[2], in[3]))}
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := exec.Call(tensors.FromFlatDataAndDimensions(x, 2, 3, in), tensors.FromFlatDataAndDimensions(qw, in, out/8),
		tensors.FromFlatDataAndDimensions(qz, in/g, out/8), sc)
	if err != nil {
		t.Fatal(err)
	}
	for k, name := range []string{"awqLinear", "DequantAWQ+matmul"} {
		if d := res[k].Shape().Dimensions; len(d) != 3 || d[2] != out {
			t.Fatalf("%s: shape %v", name, d)
		}
		got := tensors.MustCopyFlatData[float32](res[k])
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-4*(1+math.Abs(want[i])) {
				t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			}
		}
	}
}

// matmul is x [..., in] @ wᵀ for w [out, in], in f32.
func matmul(x, w *graph.Node) *graph.Node {
	return graph.Dot(x, w).General([]int{x.Rank() - 1}, nil, []int{1}, nil)
}
