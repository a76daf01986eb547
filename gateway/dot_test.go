package gateway

import (
	"math"
	"math/rand/v2"
	"testing"
)

// dot (AVX2 where the build and CPU allow) agrees with the portable loop on
// every length, tails included.
func TestDotMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 64, 100, 512, 1023} {
		a, b := make([]float32, n), make([]float32, n)
		var norm float64
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			norm += math.Abs(float64(a[i] * b[i]))
		}
		got, want := dot(a, b), dotGeneric(a, b)
		if d := math.Abs(float64(got - want)); d > 1e-5*(norm+1) {
			t.Errorf("n=%d: dot %v, generic %v", n, got, want)
		}
	}
}

func BenchmarkDot512(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	x, y := make([]float32, 512), make([]float32, 512)
	for i := range x {
		x[i], y[i] = rng.Float32(), rng.Float32()
	}
	b.Run("dot", func(b *testing.B) {
		for b.Loop() {
			dot(x, y)
		}
	})
	b.Run("generic", func(b *testing.B) {
		for b.Loop() {
			dotGeneric(x, y)
		}
	})
}
