//go:build goexperiment.simd && amd64

package gateway

import (
	"simd/archsimd"
	"unsafe"
)

// The cache's vectors are 512 floats: the semantic lookup spends most of
// its time in dot products, which AVX2 with FMA does eight at a time.
var dotAVX2 = archsimd.X86.AVX2() && archsimd.X86.FMA()

func dot(a, b []float32) float32 {
	if !dotAVX2 {
		return dotGeneric(a, b)
	}
	n := min(len(a), len(b))
	var acc0, acc1, acc2, acc3 archsimd.Float32x8
	i := 0
	if n >= 32 {
		pa, pb := unsafe.Pointer(unsafe.SliceData(a)), unsafe.Pointer(unsafe.SliceData(b))
		for ; i+32 <= n; i += 32 { // in bounds: i+32 <= n <= len(a), len(b)
			off := uintptr(i) * 4
			acc0 = at8(pa, off).MulAdd(at8(pb, off), acc0)
			acc1 = at8(pa, off+32).MulAdd(at8(pb, off+32), acc1)
			acc2 = at8(pa, off+64).MulAdd(at8(pb, off+64), acc2)
			acc3 = at8(pa, off+96).MulAdd(at8(pb, off+96), acc3)
		}
	}
	var lanes [8]float32
	acc0.Add(acc1).Add(acc2.Add(acc3)).Store(&lanes)
	s := (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
	for ; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

// at8 loads the eight floats at byte offset off from p.
func at8(p unsafe.Pointer, off uintptr) archsimd.Float32x8 {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, off)))
}
