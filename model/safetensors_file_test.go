package model

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestSafetensorsGolden reads the committed file written by
// testdata/safetensors/make_golden.py (numpy/torch conversions, a
// hand-written encoder), so CI checks the real format without Python.
func TestSafetensorsGolden(t *testing.T) {
	path := filepath.Join("testdata", "safetensors", "golden.safetensors")
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !reflect.DeepEqual(f.Header.Metadata, map[string]string{"format": "pt", "source": "make_golden.py"}) {
		t.Errorf("metadata = %v", f.Header.Metadata)
	}
	wantNames := []string{"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "lm_head.weight",
		"model.norm.eps", "position_ids", "mask", "empty.weight", "scalar"}
	if !reflect.DeepEqual(f.Header.Names, wantNames) {
		t.Errorf("Names = %v", f.Header.Names)
	}
	floats := func(name string, shape []int, want []float32) {
		t.Helper()
		tn, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(tn.Shape, shape) {
			t.Errorf("%s shape = %v, want %v", name, tn.Shape, shape)
		}
		got, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	floats("model.embed_tokens.weight", []int{2, 3}, []float32{0, 1, -1.5, 3.25, 1e-3, -65504})
	// torch's bfloat16 of 1, -2, 0.1 (0x3dcccccd rounds up), 3e38.
	floats("model.layers.0.self_attn.q_proj.weight", []int{2, 2}, []float32{
		math.Float32frombits(0x3f800000), math.Float32frombits(0xc0000000),
		math.Float32frombits(0x3dcd0000), math.Float32frombits(0x7f620000)})
	// numpy's float16 of 0.5, -0.1 (0xae66), 65504.
	floats("lm_head.weight", []int{3}, []float32{0.5, float32(-0.0999755859375), 65504})
	floats("model.norm.eps", []int{}, []float32{float32(1e-5)})
	floats("empty.weight", []int{0, 4}, []float32{})
	floats("scalar", []int{}, []float32{2.5})
	ids, err := f.Tensor("position_ids")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ids.Int32(); err != nil || !reflect.DeepEqual(got, []int32{0, 1, 2, -3}) {
		t.Errorf("position_ids = %v, %v", got, err)
	}
	mask, _ := f.Tensor("mask")
	if got, err := mask.Int32(); err != nil || !reflect.DeepEqual(got, []int32{1, 0}) {
		t.Errorf("mask = %v, %v", got, err)
	}

	// The committed file is what the committed script produces.
	if testing.Short() {
		return
	}
	py := safetensorsTestPython(t, "numpy", "torch")
	out := filepath.Join(t.TempDir(), "golden.safetensors")
	if msg, err := exec.Command(py, filepath.Join("testdata", "safetensors", "make_golden.py"), out).CombinedOutput(); err != nil {
		t.Fatalf("make_golden.py: %v\n%s", err, msg)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(out)
	if string(a) != string(b) {
		t.Error("testdata/safetensors/golden.safetensors differs from make_golden.py's output; regenerate it")
	}
}

func writeTestFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSafetensorsOpenZeroCopy(t *testing.T) {
	data := make([]byte, 16)
	for i := range data {
		data[i] = byte(i)
	}
	path := writeTestFile(t, "m.safetensors", stFile(`{"a":{"dtype":"U8","shape":[2,4],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]}} `, data))
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	if !f.mapped {
		t.Error("file was read, not memory-mapped")
	}
	a1, _ := f.Tensor("a")
	a2, _ := f.Tensor("a")
	b, _ := f.Tensor("b")
	if &a1.Data[0] != &a2.Data[0] {
		t.Error("Tensor copied the data instead of returning a view")
	}
	if cap(a1.Data) != 8 || string(a1.Data) != string(data[:8]) || string(b.Data) != string(data[8:]) {
		t.Errorf("views: cap %d, a %v, b %v", cap(a1.Data), a1.Data, b.Data)
	}
	if uintptr(unsafe.Pointer(&b.Data[0]))-uintptr(unsafe.Pointer(&a1.Data[0])) != 8 {
		t.Error("views are not into one mapping")
	}
	a1.Shape[0] = 99
	if a2, _ := f.Tensor("a"); a2.Shape[0] != 2 {
		t.Error("Tensor shares Shape with the header")
	}
	_, err = f.Tensor("nope")
	if !errors.Is(err, ErrMissingTensor) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing tensor error = %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.Tensor("a"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Tensor after Close: %v", err)
	}
}

func TestSafetensorsOpenFallbackWithoutMmap(t *testing.T) {
	old := safetensorsMmap
	safetensorsMmap = func(int, int64, int, int, int) ([]byte, error) { return nil, syscall.ENODEV }
	defer func() { safetensorsMmap = old }()
	path := writeTestFile(t, "m.safetensors", stFile(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, binary.LittleEndian.AppendUint32(nil, math.Float32bits(7))))
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.mapped {
		t.Error("mapped despite mmap failing")
	}
	x, _ := f.Tensor("x")
	if v, err := x.Float32(); err != nil || v[0] != 7 {
		t.Errorf("x = %v, %v", v, err)
	}
}

func TestSafetensorsOpenErrors(t *testing.T) {
	good := stFile(`{"w.q":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 16))
	dir := t.TempDir()
	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"empty", nil, []string{"too small"}},
		{"truncated header", good[:20], []string{"past the end", "truncated"}},
		{"truncated data", good[:len(good)-3], []string{`tensor "w.q"`, "truncated"}},
		{"corrupt header", append(good[:8:8], []byte(strings.Repeat("x", len(good)-8))...), []string{"invalid JSON"}},
	}
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".safetensors")
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := OpenSafetensors(path)
		if err == nil {
			f.Close()
			t.Errorf("%s: opened", c.name)
			continue
		}
		t.Log(err)
		for _, w := range append(c.want, path) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
	if _, err := OpenSafetensors(filepath.Join(dir, "absent.safetensors")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "absent.safetensors") {
		t.Errorf("absent file: %v", err)
	}
	if _, err := OpenSafetensors(dir); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("directory: %v", err)
	}
}
