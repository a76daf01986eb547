package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// refHalfValue decodes a half from its definition, independently of
// F16ToFloat32: exponent 0 is subnormal (mant * 2^-24), 31 is Inf/NaN.
func refHalfValue(h uint16) float64 {
	exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
	var v float64
	switch exp {
	case 0:
		v = math.Ldexp(mant, -24)
	case 31:
		if mant != 0 {
			return math.NaN()
		}
		v = math.Inf(1)
	default:
		v = math.Ldexp(1024+mant, exp-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// refHalves are the positive finite halves in increasing order (bit
// patterns 0..0x7bff are monotonic).
var refHalves = func() []float64 {
	v := make([]float64, 0x7c00)
	for h := range v {
		v[h] = refHalfValue(uint16(h))
	}
	return v
}()

// refFloat32ToF16 rounds by searching the table of all halves for the
// nearest one, ties to the even bit pattern, values >= 65520 to Inf.
func refFloat32ToF16(f float32) uint16 {
	sign := uint16(math.Float32bits(f)>>16) & 0x8000
	x := math.Abs(float64(f))
	if math.IsNaN(x) {
		panic("NaN")
	}
	if x >= 65520 { // 65504 + half an ulp (32/2)
		return sign | 0x7c00
	}
	i := sort.SearchFloat64s(refHalves, x) // first >= x
	if i == len(refHalves) {
		i--
	}
	if i > 0 {
		lo, hi := refHalves[i-1], refHalves[i]
		if x-lo < hi-x || (x-lo == hi-x && (i-1)%2 == 0) {
			i--
		}
	}
	return sign | uint16(i)
}

// refFloat32ToBF16 picks the nearer of the two bfloat16 neighbours of f
// (truncated and truncated+1 ulp), ties to even, in float64 arithmetic.
func refFloat32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if math.IsInf(float64(f), 0) {
		return uint16(b >> 16)
	}
	lo := b & 0xffff0000
	hi := lo + 0x10000
	x := math.Abs(float64(f))
	vlo := math.Abs(float64(math.Float32frombits(lo)))
	vhi := math.Abs(float64(math.Float32frombits(hi)))
	if hi&0x7fffffff == 0x7f800000 {
		vhi = math.Ldexp(1, 128) // the next binade's first value, as if unbounded
	}
	if x-vlo < vhi-x || (x-vlo == vhi-x && (lo>>16)&1 == 0) {
		return uint16(lo >> 16)
	}
	return uint16(hi >> 16)
}

func TestDTypeSize(t *testing.T) {
	for d, want := range map[DType]int{F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1, I8: 1, F64: 8, BOOL: 1, "F8_E4M3": 0, "": 0, "f32": 0} {
		if got := d.Size(); got != want {
			t.Errorf("%q.Size() = %d, want %d", d, got, want)
		}
	}
}

func TestDTypeF16ToFloat32Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		got := F16ToFloat32(uint16(h))
		want := refHalfValue(uint16(h))
		if math.IsNaN(want) {
			gb := math.Float32bits(got)
			if !math.IsNaN(float64(got)) || gb>>31 != uint32(h>>15) || (gb>>13)&0x3ff != uint32(h&0x3ff) {
				t.Fatalf("F16ToFloat32(%#04x) = %#08x, want NaN with the same sign and payload", h, gb)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (h&0x8000 != 0) {
			t.Fatalf("F16ToFloat32(%#04x) = %v, want %v", h, got, want)
		}
		if back := Float32ToF16(got); back != uint16(h) {
			t.Fatalf("Float32ToF16(F16ToFloat32(%#04x)) = %#04x", h, back)
		}
	}
}

func TestDTypeFloat32ToF16Table(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66},
		{65504, 0x7bff},
		{65519.996, 0x7bff},
		{65520, 0x7c00}, // tie between 65504 and "65536" goes to even = Inf
		{1e10, 0x7c00},
		{-1e10, 0xfc00},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{1 + 1.0/2048, 0x3c00}, // tie, even stays
		{1 + 3.0/2048, 0x3c02}, // tie, odd rounds up
		{1 + 1.0/2048 + 1e-7, 0x3c01},
		{0x1p-14, 0x0400},     // smallest normal
		{0x1p-24, 0x0001},     // smallest subnormal
		{0x1p-25, 0x0000},     // tie with 0 goes to even 0
		{0x1.8p-25, 0x0001},   // above the tie
		{0x1.8p-24, 0x0002},   // tie between 1 and 2 ulps: even 2
		{0x1.ffcp-15, 0x0400}, // tie above the largest subnormal (odd): up to the smallest normal
		{0x1.ff8p-15, 0x03ff}, // largest subnormal
		{0x1p-126, 0x0000},    // float32 min normal
		{0x1p-149, 0x0000},    // float32 subnormal
		{-0x1p-24, 0x8001},
	}
	for _, c := range cases {
		if got := Float32ToF16(c.in); got != c.want {
			t.Errorf("Float32ToF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
		if ref := refFloat32ToF16(c.in); ref != c.want {
			t.Errorf("reference(%g) = %#04x, table says %#04x", c.in, ref, c.want)
		}
	}
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000} {
		got := Float32ToF16(math.Float32frombits(bits))
		if got&0x7c00 != 0x7c00 || got&0x3ff == 0 || got>>15 != uint16(bits>>31) {
			t.Errorf("Float32ToF16(NaN %#08x) = %#04x, want a NaN of the same sign", bits, got)
		}
	}
}

func TestDTypeFloat32ToF16Reference(t *testing.T) {
	check := func(f float32) {
		t.Helper()
		if math.IsNaN(float64(f)) {
			return
		}
		if got, want := Float32ToF16(f), refFloat32ToF16(f); got != want {
			t.Fatalf("Float32ToF16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	// Every rounding boundary: the midpoint between neighbouring halves
	// (exact in float32) and the float32s just either side of it.
	for h := 0; h < 0x7c00; h++ {
		lo := refHalfValue(uint16(h))
		hi := 65536.0
		if h < 0x7bff {
			hi = refHalfValue(uint16(h + 1))
		}
		mid := float32((lo + hi) / 2)
		for _, f := range []float32{float32(lo), mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e30)} {
			check(f)
			check(-f)
		}
	}
	r := rand.New(rand.NewSource(1))
	for range 1 << 20 {
		check(math.Float32frombits(r.Uint32()))
		// Concentrate on the half range too.
		check(float32(r.NormFloat64() * math.Pow(2, float64(r.Intn(44)-28))))
	}
}

func TestDTypeFloat32ToBF16Table(t *testing.T) {
	cases := []struct {
		bits uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // 1 + 2^-8: tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // just above the tie
		{0x3f807fff, 0x3f80}, // just below
		{0x7f7fffff, 0x7f80}, // max float32 rounds to Inf
		{0x7f7f7fff, 0x7f7f}, // below the tie stays finite
		{0x7f7f8000, 0x7f80}, // tie on an odd mantissa: up to Inf
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x80000000, 0x8000}, // -0
		{0x00008000, 0x0000}, // subnormal tie to even 0
		{0x00018000, 0x0002}, // subnormal tie to even 2
		{0x00008001, 0x0001}, // subnormal above the tie
		{0x007fffff, 0x0080}, // largest subnormal rounds up to the smallest normal
		{0xc0490fdb, 0xc049}, // -pi
	}
	for _, c := range cases {
		f := math.Float32frombits(c.bits)
		if got := Float32ToBF16(f); got != c.want {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, want %#04x", c.bits, got, c.want)
		}
		if ref := refFloat32ToBF16(f); ref != c.want {
			t.Errorf("reference(%#08x) = %#04x, table says %#04x", c.bits, ref, c.want)
		}
	}
	// NaNs whose payload is only in the low bits must not truncate to Inf.
	for _, bits := range []uint32{0x7f800001, 0xff800001, 0x7fc00000, 0x7fffffff} {
		got := Float32ToBF16(math.Float32frombits(bits))
		if !math.IsNaN(float64(BF16ToFloat32(got))) || got>>15 != uint16(bits>>31) {
			t.Errorf("Float32ToBF16(NaN %#08x) = %#04x, want a NaN of the same sign", bits, got)
		}
	}
}

func TestDTypeBF16Exhaustive(t *testing.T) {
	for hi := 0; hi < 1<<16; hi++ {
		w := BF16ToFloat32(uint16(hi))
		if math.Float32bits(w) != uint32(hi)<<16 {
			t.Fatalf("BF16ToFloat32(%#04x) = %#08x", hi, math.Float32bits(w))
		}
		for _, low := range []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xffff} {
			bits := uint32(hi)<<16 | low
			f := math.Float32frombits(bits)
			if math.IsNaN(float64(f)) {
				continue
			}
			if got, want := Float32ToBF16(f), refFloat32ToBF16(f); got != want {
				t.Fatalf("Float32ToBF16(%#08x) = %#04x, want %#04x", bits, got, want)
			}
		}
	}
}

// safetensorsTestPython finds a python3 that can import modules (Debian's
// /usr/bin/python3 first, which has numpy and torch here), or skips.
func safetensorsTestPython(t testing.TB, modules ...string) string {
	t.Helper()
	cands := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	for _, py := range cands {
		if exec.Command(py, "-c", "import "+strings.Join(modules, ", ")).Run() == nil {
			return py
		}
	}
	t.Skipf("no python3 with %s", strings.Join(modules, ", "))
	return ""
}

// TestDTypeConversionsMatchPyTorch checks the rounding against numpy's
// float16 and PyTorch's bfloat16 casts when python3 with both is available.
func TestDTypeConversionsMatchPyTorch(t *testing.T) {
	t.Parallel()
	py := safetensorsTestPython(t, "numpy", "torch")
	r := rand.New(rand.NewSource(2))
	var bits []uint32
	for _, b := range []uint32{0x3f808000, 0x3f818000, 0x7f7fffff, 0x7f7f8000, 0x00008000, 0x00018000, 0x477ff000, 0x477fefff, 0x33000000, 0x33400000, 0x387fc000} {
		bits = append(bits, b, b|0x80000000)
	}
	for range 20000 {
		b := r.Uint32()
		if r.Intn(2) == 0 {
			b = b&0x83ffffff | uint32(0x30+r.Intn(0x18))<<24 // exponents around the half range
		}
		if b&0x7fffffff > 0x7f800000 {
			continue // NaN payload handling differs legitimately
		}
		bits = append(bits, b)
	}
	var in strings.Builder
	for _, b := range bits {
		fmt.Fprintln(&in, b)
	}
	script := `
import sys, numpy as np, torch
b = np.array([int(x) for x in sys.stdin.read().split()], dtype=np.uint32)
f = b.view(np.float32)
with np.errstate(over="ignore"):
    h = f.astype(np.float16).view(np.uint16)
bf = torch.from_numpy(f.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
for x, y in zip(h, bf):
    print(int(x), int(y))
`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(bits) {
		t.Fatalf("python printed %d lines for %d inputs", len(lines), len(bits))
	}
	for i, line := range lines {
		var h, bf uint64
		fields := strings.Fields(line)
		h, _ = strconv.ParseUint(fields[0], 10, 16)
		bf, _ = strconv.ParseUint(fields[1], 10, 16)
		f := math.Float32frombits(bits[i])
		if got := Float32ToF16(f); got != uint16(h) {
			t.Errorf("Float32ToF16(%#08x) = %#04x, numpy says %#04x", bits[i], got, h)
		}
		if got := Float32ToBF16(f); got != uint16(bf) {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, torch says %#04x", bits[i], got, bf)
		}
	}
}

func TestDTypeTensorFloat32(t *testing.T) {
	vals := []float32{0, 1, -2.5, 0.1, 65504, float32(math.Inf(-1)), 3.14159, -0x1p-20}
	for _, dt := range []DType{F32, F16, BF16} {
		tn := NewTensor("w", dt, []int{2, 4}, vals)
		if len(tn.Data) != 8*dt.Size() || tn.NumElements() != 8 {
			t.Fatalf("%s: %d bytes, %d elements", dt, len(tn.Data), tn.NumElements())
		}
		got, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			want := v
			switch dt {
			case F16:
				want = F16ToFloat32(Float32ToF16(v))
			case BF16:
				want = BF16ToFloat32(Float32ToBF16(v))
			}
			if got[i] != want {
				t.Errorf("%s[%d] = %v, want %v", dt, i, got[i], want)
			}
		}
	}
	// F64 rounds to nearest float32.
	f64 := Tensor{Name: "d", DType: F64, Shape: []int{3}, Data: make([]byte, 24)}
	for i, v := range []float64{1.0 / 3, -1e300, 2} {
		binary.LittleEndian.PutUint64(f64.Data[8*i:], math.Float64bits(v))
	}
	got, err := f64.Float32()
	if err != nil || got[0] != float32(1.0/3) || !math.IsInf(float64(got[1]), -1) || got[2] != 2 {
		t.Errorf("F64 Float32() = %v, %v", got, err)
	}
	// Scalars and empty tensors.
	if got, err := NewTensor("s", BF16, nil, []float32{1.5}).Float32(); err != nil || len(got) != 1 || got[0] != 1.5 {
		t.Errorf("scalar: %v, %v", got, err)
	}
	if got, err := NewTensor("e", F16, []int{0, 3}, nil).Float32(); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
}

func TestDTypeTensorInt32(t *testing.T) {
	it := NewInt32Tensor("ids", []int{3}, []int32{-1, 0, math.MaxInt32})
	if got, err := it.Int32(); err != nil || got[0] != -1 || got[2] != math.MaxInt32 {
		t.Errorf("I32: %v, %v", got, err)
	}
	i64 := Tensor{Name: "pos", DType: I64, Shape: []int{2}, Data: make([]byte, 16)}
	binary.LittleEndian.PutUint64(i64.Data, uint64(0xffffffffffffff85)) // -123
	binary.LittleEndian.PutUint64(i64.Data[8:], 7)
	if got, err := i64.Int32(); err != nil || got[0] != -123 || got[1] != 7 {
		t.Errorf("I64: %v, %v", got, err)
	}
	binary.LittleEndian.PutUint64(i64.Data[8:], 1<<31)
	if _, err := i64.Int32(); err == nil || !strings.Contains(err.Error(), `"pos"`) {
		t.Errorf("I64 out of range: err = %v", err)
	}
	u8 := Tensor{Name: "m", DType: U8, Shape: []int{2}, Data: []byte{255, 1}}
	if got, _ := u8.Int32(); got[0] != 255 {
		t.Errorf("U8: %v", got)
	}
	i8 := Tensor{Name: "m", DType: I8, Shape: []int{2}, Data: []byte{255, 1}}
	if got, _ := i8.Int32(); got[0] != -1 {
		t.Errorf("I8: %v", got)
	}
	if _, err := it.Float32(); err == nil {
		t.Error("I32.Float32() should fail")
	}
	if _, err := NewTensor("f", F32, []int{1}, []float32{1}).Int32(); err == nil {
		t.Error("F32.Int32() should fail")
	}
}

func TestDTypeTensorShapeChecks(t *testing.T) {
	for _, tn := range []Tensor{
		{Name: "short", DType: F32, Shape: []int{2, 2}, Data: make([]byte, 15)},
		{Name: "long", DType: BF16, Shape: []int{3}, Data: make([]byte, 8)},
		{Name: "neg", DType: F16, Shape: []int{-1}, Data: nil},
		{Name: "unknown", DType: "F8_E5M2", Shape: []int{1}, Data: make([]byte, 1)},
		{Name: "huge", DType: F32, Shape: []int{1 << 40, 1 << 40}, Data: nil},
	} {
		_, err := tn.Float32()
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(tn.Name)) {
			t.Errorf("%s: Float32() err = %v, want an error naming it", tn.Name, err)
		}
		_, err = tn.Int32()
		if err == nil {
			t.Errorf("%s: Int32() should fail", tn.Name)
		}
	}
}

func TestDTypeNewTensorPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"len":   func() { NewTensor("x", F32, []int{2}, []float32{1}) },
		"dtype": func() { NewTensor("x", I32, []int{1}, []float32{1}) },
		"int":   func() { NewInt32Tensor("x", []int{2, 2}, []int32{1}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func benchmarkDTypeToFloat32(b *testing.B, dt DType) {
	const n = 1 << 24
	vals := make([]float32, n)
	r := rand.New(rand.NewSource(3))
	for i := range vals {
		vals[i] = float32(r.NormFloat64())
	}
	tn := NewTensor("w", dt, []int{n}, vals)
	b.SetBytes(int64(len(tn.Data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tn.Float32(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
}

func BenchmarkDTypeBF16ToFloat32(b *testing.B) { benchmarkDTypeToFloat32(b, BF16) }
func BenchmarkDTypeF16ToFloat32(b *testing.B)  { benchmarkDTypeToFloat32(b, F16) }
func BenchmarkDTypeF32ToFloat32(b *testing.B)  { benchmarkDTypeToFloat32(b, F32) }
