package quantize

import (
	"math"

	"github.com/distillery/distillery/model"
)

// awqOrder is AutoAWQ's GEMM packing order: nibble j (bits 4j..4j+3) of a
// packed int32 holds output column 8c+awqOrder[j].
var awqOrder = [8]int{0, 2, 4, 6, 1, 3, 5, 7}

// awqShift[k] is the bit offset of output column 8c+k inside its packed
// int32 (4 * AWQ_REVERSE_ORDER[k]), so unpacking needs no permutation.
var awqShift = [8]int32{0, 16, 4, 20, 8, 24, 12, 28}

// maxF16 is the largest finite float16.
const maxF16 = 65504

// f16 rounds x to float16 and back, as the stored scales are.
func f16(x float32) float32 { return model.F16ToFloat32(model.Float32ToF16(x)) }

// int4Params returns the float16-exact scale and the zero point of one
// quantization group, asymmetric min-max as AutoAWQ computes them; the
// range is widened to include 0 so a group of one sign still quantizes.
func int4Params(w []float32) (scale float32, zero uint8) {
	var lo, hi float32
	for _, v := range w {
		lo, hi = min(lo, v), max(hi, v)
	}
	s := f16(max(hi-lo, 1e-5) / 15)
	if s > maxF16 {
		s = maxF16
	}
	z := float32(math.RoundToEven(float64(-lo / s)))
	return s, uint8(min(max(z, 0), 15))
}

// int4Code is clamp(round(v/s) + z, 0, 15).
func int4Code(v, s float32, z uint8) uint8 {
	q := float32(math.RoundToEven(float64(v/s))) + float32(z)
	return uint8(min(max(q, 0), 15))
}

// fakeQuant4 writes into dst the INT4 round trip of the row w, quantized in
// groups of g consecutive input channels.
func fakeQuant4(dst, w []float32, g int) {
	for start := 0; start < len(w); start += g {
		grp := w[start : start+g]
		s, z := int4Params(grp)
		for i, v := range grp {
			dst[start+i] = float32(int(int4Code(v, s, z))-int(z)) * s
		}
	}
}

// int4Linear is one linear layer quantized to 4 bits, in HF orientation:
// codes[o*in+i], and per (output row, group) zeros and scales [o*ng+g].
type int4Linear struct {
	out, in, group int
	codes          []uint8
	zeros          []uint8
	scales         []float32 // float16-exact
}

// quantizeInt4 quantizes w [out, in] in groups of g input channels.
func quantizeInt4(w []float32, out, in, g int) *int4Linear {
	ng := in / g
	l := &int4Linear{out: out, in: in, group: g, codes: make([]uint8, out*in), zeros: make([]uint8, out*ng), scales: make([]float32, out*ng)}
	for o := range out {
		row := w[o*in : (o+1)*in]
		for gi := range ng {
			grp := row[gi*g : (gi+1)*g]
			s, z := int4Params(grp)
			l.scales[o*ng+gi], l.zeros[o*ng+gi] = s, z
			for i, v := range grp {
				l.codes[o*in+gi*g+i] = int4Code(v, s, z)
			}
		}
	}
	return l
}

// dequant returns the weights [out, in] the layer stands for: (q - z) * s.
func (l *int4Linear) dequant() []float32 {
	ng := l.in / l.group
	w := make([]float32, l.out*l.in)
	for o := range l.out {
		for i := range l.in {
			gi := o*ng + i/l.group
			w[o*l.in+i] = float32(int(l.codes[o*l.in+i])-int(l.zeros[gi])) * l.scales[gi]
		}
	}
	return w
}

// awqTensors returns the layer in AutoAWQ's GEMM layout: qweight int32
// [in, out/8] and qzeros int32 [in/G, out/8], both packed in awqOrder, and
// scales float16 [in/G, out].
func (l *int4Linear) awqTensors(module string) []model.Tensor {
	ng, cols := l.in/l.group, l.out/8
	qweight := make([]int32, l.in*cols)
	for i := range l.in {
		for c := range cols {
			var v uint32
			for j, k := range awqOrder {
				v |= uint32(l.codes[(8*c+k)*l.in+i]) << (4 * j)
			}
			qweight[i*cols+c] = int32(v)
		}
	}
	qzeros := make([]int32, ng*cols)
	scales := make([]float32, ng*l.out)
	for gi := range ng {
		for c := range cols {
			var v uint32
			for j, k := range awqOrder {
				v |= uint32(l.zeros[(8*c+k)*ng+gi]) << (4 * j)
			}
			qzeros[gi*cols+c] = int32(v)
		}
		for o := range l.out {
			scales[gi*l.out+o] = l.scales[o*ng+gi]
		}
	}
	return []model.Tensor{
		model.NewInt32Tensor(module+".qweight", []int{l.in, cols}, qweight),
		model.NewInt32Tensor(module+".qzeros", []int{ng, cols}, qzeros),
		model.NewTensor(module+".scales", model.F16, []int{ng, l.out}, scales),
	}
}

// quantizeInt8 quantizes w [out, in] symmetrically per output channel:
// q = clamp(round(w/s), -127, 127) with s = max|w_o| / 127 (float16-exact).
func quantizeInt8(w []float32, out, in int) (q []int8, scales []float32) {
	q = make([]int8, out*in)
	scales = make([]float32, out)
	for o := range out {
		row := w[o*in : (o+1)*in]
		var amax float32
		for _, v := range row {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		s := f16(max(amax, 1e-8) / 127)
		if s == 0 {
			s = f16(6e-8)
		}
		scales[o] = s
		for i, v := range row {
			c := float32(math.RoundToEven(float64(v / s)))
			q[o*in+i] = int8(min(max(c, -127), 127))
		}
	}
	return q, scales
}

// int8Tensors returns the INT8 layout: weight int8 [out, in] and
// weight_scale float16 [out, 1].
func int8Tensors(module string, q []int8, scales []float32, out, in int) []model.Tensor {
	data := make([]byte, len(q))
	for i, v := range q {
		data[i] = byte(v)
	}
	return []model.Tensor{
		{Name: module + ".weight", DType: model.I8, Shape: []int{out, in}, Data: data},
		model.NewTensor(module+".weight_scale", model.F16, []int{out, 1}, scales),
	}
}
