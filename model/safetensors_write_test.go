package model

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testTensors covers every writable dtype, dotted names, a scalar and
// empty tensors, in a deliberately unsorted order.
func testTensors(r *rand.Rand) []Tensor {
	vals := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	return []Tensor{
		NewTensor("model.layers.1.mlp.up_proj.weight", BF16, []int{4, 3}, vals(12)),
		NewTensor("model.layers.0.self_attn.q_proj.weight", F16, []int{3, 5}, vals(15)),
		NewTensor("model.embed_tokens.weight", F32, []int{6, 4}, vals(24)),
		NewTensor("model.norm.weight", BF16, []int{4}, vals(4)),
		NewTensor("lm_head.weight", F32, []int{6, 4}, vals(24)),
		NewTensor("scalar.f32", F32, []int{}, []float32{-3.5}),
		NewTensor("scalar.bf16", BF16, nil, []float32{0.1}),
		NewTensor("empty.f16", F16, []int{0}, nil),
		NewTensor("empty.bf16", BF16, []int{2, 0, 3}, nil),
		NewInt32Tensor("position_ids", []int{1, 3}, []int32{0, 1, -2}),
	}
}

// checkTensorsEqual compares what was read against what was written.
func checkTensorsEqual(t *testing.T, get func(string) (Tensor, error), want []Tensor) {
	t.Helper()
	for _, w := range want {
		got, err := get(w.Name)
		if err != nil {
			t.Errorf("%s: %v", w.Name, err)
			continue
		}
		if got.Name != w.Name || got.DType != w.DType || got.NumElements() != w.NumElements() || len(got.Shape) != len(w.Shape) ||
			(len(w.Shape) > 0 && !reflect.DeepEqual(got.Shape, w.Shape)) || string(got.Data) != string(w.Data) {
			t.Errorf("%s: read %s%v (%d bytes), wrote %s%v (%d bytes)", w.Name, got.DType, got.Shape, len(got.Data), w.DType, w.Shape, len(w.Data))
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	tensors := testTensors(rand.New(rand.NewSource(1)))
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	if err := WriteSafetensors(path, tensors, map[string]string{"step": "100"}); err != nil {
		t.Fatal(err)
	}
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkTensorsEqual(t, f.Tensor, tensors)
	if len(f.Header.Tensors) != len(tensors) {
		t.Errorf("%d tensors read, %d written", len(f.Header.Tensors), len(tensors))
	}
	if !reflect.DeepEqual(f.Header.Metadata, map[string]string{"format": "pt", "step": "100"}) {
		t.Errorf("metadata = %v", f.Header.Metadata)
	}
	// Name order, contiguous, 8-byte aligned data section.
	var names []string
	var end int64
	for _, name := range f.Header.Names {
		info := f.Header.Tensors[name]
		if info.Begin != end {
			t.Errorf("%s starts at %d, previous ended at %d", name, info.Begin, end)
		}
		end = info.End
		names = append(names, name)
	}
	if !sortedStrings(names) {
		t.Errorf("file order %v is not by name", names)
	}
	if f.Header.DataStart%8 != 0 {
		t.Errorf("data section starts at %d", f.Header.DataStart)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	// A value check through the conversions too.
	got, _ := f.Tensor("scalar.bf16")
	if v, _ := got.Float32(); v[0] != BF16ToFloat32(Float32ToBF16(0.1)) {
		t.Errorf("scalar.bf16 = %v", v)
	}
}

func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] > s[i] {
			return false
		}
	}
	return true
}

// TestSafetensorsWriteExactBytes pins the layout the reference Rust
// writer produces: compact JSON, __metadata__ first, dtype/shape/
// data_offsets key order, space padding to a multiple of 8.
func TestSafetensorsWriteExactBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	b := NewTensor("b", F16, []int{1}, []float32{1})
	a := NewTensor("a.x", F32, []int{2}, []float32{1, -2})
	if err := WriteSafetensors(path, []Tensor{b, a}, nil); err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"format":"pt"},"a.x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1],"data_offsets":[8,10]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	want := stFile(header, append(append([]byte{}, a.Data...), b.Data...))
	got, _ := os.ReadFile(path)
	if string(got) != string(want) {
		t.Errorf("wrote\n%q\nwant\n%q", got, want)
	}
	// No HTML escaping of names, as serde_json does not escape them.
	if err := WriteSafetensors(path, []Tensor{NewTensor("a<b>&c", F32, nil, []float32{1})}, map[string]string{"format": "np"}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(path)
	if !strings.Contains(string(got), `{"__metadata__":{"format":"np"},"a<b>&c":{`) {
		t.Errorf("header %q", got)
	}
}

func TestSafetensorsWriteErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	ok := NewTensor("w", F32, []int{1}, []float32{1})
	for name, tc := range map[string]struct {
		tensors []Tensor
		want    string
	}{
		"duplicate":     {[]Tensor{ok, ok}, `tensor "w": duplicate`},
		"empty name":    {[]Tensor{{DType: F32, Shape: []int{}, Data: make([]byte, 4)}}, "empty name"},
		"metadata name": {[]Tensor{{Name: "__metadata__", DType: F32, Shape: []int{}, Data: make([]byte, 4)}}, "__metadata__"},
		"short data":    {[]Tensor{{Name: "s", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}, `tensor "s"`},
		"bad dtype":     {[]Tensor{{Name: "d", DType: "F8", Shape: []int{1}, Data: make([]byte, 1)}}, `tensor "d": unknown dtype`},
		"bad utf8":      {[]Tensor{{Name: "\xff", DType: U8, Shape: []int{}, Data: make([]byte, 1)}}, "UTF-8"},
	} {
		err := WriteSafetensors(path, tc.tensors, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want it to mention %q and the path", name, err, tc.want)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a failed write left %s behind", path)
	}
}

// TestSafetensorsReadPythonWritten reads a file that numpy and torch wrote
// through a hand-written spec encoder, with random values and the float32
// values Python expects us to decode.
func TestSafetensorsReadPythonWritten(t *testing.T) {
	t.Parallel()
	py := safetensorsTestPython(t, "numpy", "torch")
	dir := t.TempDir()
	script := `
import json, struct, sys
import numpy as np, torch
rng = np.random.default_rng(7)
out, expect = sys.argv[1], {}
tensors = []
def add(name, dtype, arr, raw, f32):
    tensors.append((name, dtype, list(arr.shape), raw))
    expect[name] = {"dtype": dtype, "shape": list(arr.shape), "bits": [int(x) for x in np.asarray(f32, dtype=np.float32).reshape(-1).view(np.uint32)]}
x = (rng.standard_normal((5, 7)) * 10).astype(np.float32)
add("a.f32", "F32", x, x.astype("<f4").tobytes(), x)
h = rng.standard_normal((3, 4, 2)).astype(np.float16)
h.reshape(-1)[:4] = [np.float16(6e-8), np.float16(-65504), np.inf, np.float16(1e-5)]
add("b.f16", "F16", h, h.astype("<f2").tobytes(), h.astype(np.float32))
b = torch.from_numpy(rng.standard_normal((9,)).astype(np.float32) * 1e20).to(torch.bfloat16)
add("c.layers.0.bf16", "BF16", b, b.view(torch.int16).numpy().astype("<i2").tobytes(), b.float().numpy())
d = rng.standard_normal((2, 2))
add("d.f64", "F64", d, d.astype("<f8").tobytes(), d.astype(np.float32))
s = np.array(3.0, dtype=np.float32)
add("e.scalar", "F32", s, s.tobytes(), s)
e = np.zeros((0, 3), dtype=np.float16)
add("f.empty", "F16", e, b"", e.astype(np.float32))
hdr, data = {"__metadata__": {"format": "pt"}}, b""
for name, dt, shape, raw in reversed(tensors):
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
hb = json.dumps(hdr).encode()
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + data)
print(json.dumps(expect))
`
	path := filepath.Join(dir, "py.safetensors")
	out, err := exec.Command(py, "-c", script, path).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var expect map[string]struct {
		DType DType
		Shape []int
		Bits  []uint32
	}
	if err := json.Unmarshal(out, &expect); err != nil {
		t.Fatal(err)
	}
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Header.Tensors) != len(expect) {
		t.Errorf("read %d tensors, python wrote %d", len(f.Header.Tensors), len(expect))
	}
	for name, e := range expect {
		tn, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if tn.DType != e.DType || !reflect.DeepEqual(tn.Shape, e.Shape) {
			t.Errorf("%s: %s%v, python wrote %s%v", name, tn.DType, tn.Shape, e.DType, e.Shape)
		}
		v, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != len(e.Bits) {
			t.Fatalf("%s: %d values, want %d", name, len(v), len(e.Bits))
		}
		for i := range v {
			if math.Float32bits(v[i]) != e.Bits[i] {
				t.Errorf("%s[%d] = %v, python decodes %v", name, i, v[i], math.Float32frombits(e.Bits[i]))
			}
		}
	}
}

// TestSafetensorsPythonReadsOurs decodes our file with an independent
// numpy reader that also checks the layout rules of the spec.
func TestSafetensorsPythonReadsOurs(t *testing.T) {
	t.Parallel()
	py := safetensorsTestPython(t, "numpy")
	tensors := testTensors(rand.New(rand.NewSource(2)))
	path := filepath.Join(t.TempDir(), "go.safetensors")
	if err := WriteSafetensors(path, tensors, map[string]string{"writer": "go"}); err != nil {
		t.Fatal(err)
	}
	script := `
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
assert (8 + n) % 8 == 0, "data section not 8-byte aligned"
hb = raw[8:8 + n]
assert hb.rstrip(b" ") == hb.rstrip(), "padding is not spaces"
hdr = json.loads(hb)
meta = hdr.pop("__metadata__")
data = raw[8 + n:]
order = sorted(hdr, key=lambda k: hdr[k]["data_offsets"][0])
assert order == sorted(hdr), "not in name order"
pos, out = 0, {"__metadata__": meta}
for name in order:
    info = hdr[name]
    b, e = info["data_offsets"]
    assert b == pos, (name, b, pos)
    pos = e
    buf = data[b:e]
    dt = info["dtype"]
    if dt == "BF16":
        v = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
    elif dt == "F16":
        v = np.frombuffer(buf, "<f2").astype(np.float32)
    elif dt == "F32":
        v = np.frombuffer(buf, "<f4")
    elif dt == "I32":
        v = np.frombuffer(buf, "<i4")
    assert v.size == int(np.prod(info["shape"])), name
    out[name] = {"shape": info["shape"], "dtype": dt, "values": [float(x) for x in v]}
assert pos == len(data), "trailing data"
print(json.dumps(out))
`
	out, err := exec.Command(py, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var meta map[string]string
	json.Unmarshal(got["__metadata__"], &meta)
	if !reflect.DeepEqual(meta, map[string]string{"format": "pt", "writer": "go"}) {
		t.Errorf("python read metadata %v", meta)
	}
	for _, w := range tensors {
		var g struct {
			Shape  []int
			DType  DType
			Values []float64
		}
		if err := json.Unmarshal(got[w.Name], &g); err != nil {
			t.Fatalf("%s: %v", w.Name, err)
		}
		if g.DType != w.DType || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			t.Errorf("%s: python read %s%v, wrote %s%v", w.Name, g.DType, g.Shape, w.DType, w.Shape)
		}
		var want []float64
		if w.DType == I32 {
			v, _ := w.Int32()
			for _, x := range v {
				want = append(want, float64(x))
			}
		} else {
			v, _ := w.Float32()
			for _, x := range v {
				want = append(want, float64(x))
			}
		}
		if fmt.Sprint(g.Values) != fmt.Sprint(want) {
			t.Errorf("%s: python read %v, wrote %v", w.Name, g.Values, want)
		}
	}
	if len(got) != len(tensors)+1 {
		t.Errorf("python read %d entries", len(got))
	}
}

// TestSafetensorsReadHandEncoded reads a file from an independent Go
// encoder that, unlike ours, pads nothing and orders by dtype.
func TestSafetensorsReadHandEncoded(t *testing.T) {
	var data []byte
	data = binary.LittleEndian.AppendUint16(data, 0x3f80) // BF16 1
	data = binary.LittleEndian.AppendUint16(data, 0xbfc0) // BF16 -1.5
	data = binary.LittleEndian.AppendUint16(data, 0x3c00) // F16 1
	data = binary.LittleEndian.AppendUint16(data, 0x0001) // F16 2^-24
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(math.Pi)))
	header := `{"z":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"y":{"dtype":"F16","shape":[1,2],"data_offsets":[4,8]},"x.y.z":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}`
	path := writeTestFile(t, "hand.safetensors", stFile(header, data))
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, want := range map[string][]float32{"z": {1, -1.5}, "y": {1, 0x1p-24}, "x.y.z": {float32(math.Pi)}} {
		tn, _ := f.Tensor(name)
		if got, err := tn.Float32(); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, %v; want %v", name, got, err, want)
		}
	}
	if len(f.Header.Metadata) != 0 {
		t.Errorf("metadata = %v", f.Header.Metadata)
	}
}
