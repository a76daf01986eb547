package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// DType names a safetensors element type as it is spelled in the header.
// F32, F16 and BF16 can be read and written; F64, I64, I32, I8, U8 and BOOL
// can be read (checkpoints carry them for buffers such as position ids).
type DType string

// The safetensors element types this package understands.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I32  DType = "I32"
	I64  DType = "I64"
	U8   DType = "U8"
	I8   DType = "I8"
	F64  DType = "F64"
	BOOL DType = "BOOL"
)

// Size is the number of bytes per element, 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16:
		return 2
	case U8, I8, BOOL:
		return 1
	}
	return 0
}

// Tensor is one named tensor with its raw little-endian data, as stored in
// a safetensors file. Data may be a zero-copy view into a memory-mapped
// file: it is then read-only and valid only until that file is closed.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar, shape []).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// checkData reports a Data length that does not match DType and Shape, so
// that conversions never read past a tensor or silently drop elements.
func (t Tensor) checkData() (int, error) {
	size := t.DType.Size()
	if size == 0 {
		return 0, fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
	}
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		if d != 0 && n > math.MaxInt/size/d {
			return 0, fmt.Errorf("tensor %q: shape %v overflows", t.Name, t.Shape)
		}
		n *= d
	}
	if len(t.Data) != n*size {
		return 0, fmt.Errorf("tensor %q: %s%v needs %d bytes, data has %d", t.Name, t.DType, t.Shape, n*size, len(t.Data))
	}
	return n, nil
}

// hostLittleEndian lets F32/I32 conversions be a plain memory copy on
// little-endian hosts (all the ones we run on) instead of a decode loop.
var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Float32 decodes F32, F16, BF16 or F64 data into a new []float32 (F64 is
// rounded to nearest). It errors on other dtypes and when the data length
// does not match the shape.
func (t Tensor) Float32() ([]float32, error) {
	n, err := t.checkData()
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	if n == 0 {
		return out, nil
	}
	data := t.Data
	switch t.DType {
	case F32:
		if hostLittleEndian {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n), data)
		} else {
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			}
		}
	case BF16:
		data = data[:2*n]
		for i := range out {
			out[i] = math.Float32frombits((uint32(data[2*i]) | uint32(data[2*i+1])<<8) << 16)
		}
	case F16:
		data = data[:2*n]
		for i := range out {
			out[i] = F16ToFloat32(uint16(data[2*i]) | uint16(data[2*i+1])<<8)
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:])))
		}
	default:
		return nil, fmt.Errorf("tensor %q: cannot convert %s to float32", t.Name, t.DType)
	}
	return out, nil
}

// Int32 decodes I32, I64, U8, I8 or BOOL data into a new []int32. I64
// values outside the int32 range are an error rather than wrapping.
func (t Tensor) Int32() ([]int32, error) {
	n, err := t.checkData()
	if err != nil {
		return nil, err
	}
	out := make([]int32, n)
	if n == 0 {
		return out, nil
	}
	data := t.Data
	switch t.DType {
	case I32:
		if hostLittleEndian {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n), data)
		} else {
			for i := range out {
				out[i] = int32(binary.LittleEndian.Uint32(data[4*i:]))
			}
		}
	case I64:
		for i := range out {
			v := int64(binary.LittleEndian.Uint64(data[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("tensor %q: element %d = %d does not fit int32", t.Name, i, v)
			}
			out[i] = int32(v)
		}
	case U8, BOOL:
		for i, b := range data {
			out[i] = int32(b)
		}
	case I8:
		for i, b := range data {
			out[i] = int32(int8(b))
		}
	default:
		return nil, fmt.Errorf("tensor %q: cannot convert %s to int32", t.Name, t.DType)
	}
	return out, nil
}

// NewTensor encodes values as an F32, F16 or BF16 tensor (F16 and BF16
// round to nearest even). It panics when len(values) does not match shape
// or dtype is not one of those three: both are programming errors.
func NewTensor(name string, dtype DType, shape []int, values []float32) Tensor {
	t := Tensor{Name: name, DType: dtype, Shape: append([]int{}, shape...)}
	if n := t.NumElements(); n != len(values) {
		panic(fmt.Sprintf("model.NewTensor(%q): shape %v has %d elements, got %d values", name, shape, n, len(values)))
	}
	switch dtype {
	case F32:
		t.Data = make([]byte, 4*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
		}
	case F16:
		t.Data = make([]byte, 2*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint16(t.Data[2*i:], Float32ToF16(v))
		}
	case BF16:
		t.Data = make([]byte, 2*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint16(t.Data[2*i:], Float32ToBF16(v))
		}
	default:
		panic(fmt.Sprintf("model.NewTensor(%q): cannot encode float32 values as %q", name, dtype))
	}
	return t
}

// NewInt32Tensor encodes values as an I32 tensor; it panics when
// len(values) does not match shape.
func NewInt32Tensor(name string, shape []int, values []int32) Tensor {
	t := Tensor{Name: name, DType: I32, Shape: append([]int{}, shape...)}
	if n := t.NumElements(); n != len(values) {
		panic(fmt.Sprintf("model.NewInt32Tensor(%q): shape %v has %d elements, got %d values", name, shape, n, len(values)))
	}
	t.Data = make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(t.Data[4*i:], uint32(v))
	}
	return t
}

// Float32ToBF16 rounds f to bfloat16, to nearest with ties to even, as
// PyTorch does. Overflow gives ±Inf; NaN stays a (quiet) NaN of the same sign.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: truncation could clear the payload and make it Inf
		return uint16(b>>16) | 0x0040
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// BF16ToFloat32 widens a bfloat16 exactly.
func BF16ToFloat32(u uint16) float32 {
	return math.Float32frombits(uint32(u) << 16)
}

// Float32ToF16 rounds f to IEEE half precision, to nearest with ties to
// even, producing subnormals below 2^-14 and ±Inf at or above 65520.
// NaN stays a quiet NaN of the same sign.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 31 {
		return sign | 0x7c00
	}
	var q, shift uint32
	if e <= 0 {
		// Subnormal half: value = m * 2^(exp-150) = q * 2^-24, so q = m >> (14-e)
		// before rounding (float32 subnormals, exp == 0, all round to zero).
		shift = uint32(14 - e)
		if exp == 0 || shift > 24 {
			return sign
		}
		mant |= 0x800000
		q = mant >> shift
	} else {
		shift = 13
		q = uint32(e)<<10 | mant>>13
	}
	rem := mant & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++ // a carry into the exponent is the correct next binade (or Inf)
	}
	return sign | uint16(q)
}

// F16ToFloat32 widens an IEEE half exactly, including subnormals, ±Inf and
// NaN payloads. It is small enough to inline into conversion loops: the
// exponent is rebiased by an add, and subnormals are renormalized by a
// float subtraction (2^-14 * (1 + m/1024) - 2^-14 = m * 2^-24, exact).
func F16ToFloat32(u uint16) float32 {
	sign := uint32(u&0x8000) << 16
	em := uint32(u&0x7fff) << 13 // exponent and mantissa in float32 position
	switch em & 0x0f800000 {
	case 0x0f800000: // Inf, NaN: exponent 31 -> 255
		em += (255 - 31) << 23
	case 0: // zero, subnormal
		return math.Float32frombits(sign | math.Float32bits(math.Float32frombits(em+(127-15+1)<<23)-0x1p-14))
	default:
		em += (127 - 15) << 23
	}
	return math.Float32frombits(sign | em)
}
