package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// stFile assembles a safetensors file by hand from the spec: u64
// little-endian header length, the JSON header, then the data section.
func stFile(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func TestHeaderParse(t *testing.T) {
	// Gaps are allowed, empty tensors may share an offset, key order is
	// irrelevant, trailing spaces are padding.
	header := `{"b.weight":{"dtype":"F16","shape":[2,2],"data_offsets":[16,24]},` +
		`"__metadata__":{"format":"pt","note":"x"},` +
		`"a.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"empty":{"dtype":"BF16","shape":[0,5],"data_offsets":[8,8]},` +
		`"scalar":{"dtype":"I64","shape":[],"data_offsets":[24,32]},` +
		`"also_empty":{"dtype":"F32","shape":[3,0],"data_offsets":[8,8]}}   `
	file := stFile(header, make([]byte, 40))
	h, err := ParseHeader(file, int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	if h.DataStart != int64(8+len(header)) {
		t.Errorf("DataStart = %d", h.DataStart)
	}
	wantNames := []string{"a.bias", "also_empty", "empty", "b.weight", "scalar"}
	if !reflect.DeepEqual(h.Names, wantNames) {
		t.Errorf("Names = %v, want %v", h.Names, wantNames)
	}
	if got := h.Tensors["b.weight"]; !reflect.DeepEqual(got, TensorInfo{DType: F16, Shape: []int{2, 2}, Begin: 16, End: 24}) {
		t.Errorf("b.weight = %+v", got)
	}
	if got := h.Tensors["scalar"]; got.Shape == nil || len(got.Shape) != 0 {
		t.Errorf("scalar shape = %#v, want empty non-nil", got.Shape)
	}
	if !reflect.DeepEqual(h.Metadata, map[string]string{"format": "pt", "note": "x"}) {
		t.Errorf("Metadata = %v", h.Metadata)
	}
	// Only the header region is needed when fileSize is given.
	if _, err := ParseHeader(file[:8+len(header)], int64(len(file))); err != nil {
		t.Errorf("header region only: %v", err)
	}
	// No metadata, null metadata, no tensors.
	for _, hd := range []string{`{}`, `{"__metadata__":null}`, `{"__metadata__":{}}`} {
		if h, err := ParseHeader(stFile(hd, nil), int64(8+len(hd))); err != nil || len(h.Tensors) != 0 {
			t.Errorf("%s: %v", hd, err)
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	entry := func(name, dtype, shape string, b, e int64) string {
		return fmt.Sprintf(`%q:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, name, dtype, shape, b, e)
	}
	obj := func(entries ...string) string { return "{" + strings.Join(entries, ",") + "}" }
	hugePrefix := binary.LittleEndian.AppendUint64(nil, 1<<40)
	shortPrefix := binary.LittleEndian.AppendUint64(nil, 100)
	cases := []struct {
		name string
		file []byte
		size int64 // file size; 0 means len(file)
		want []string
	}{
		{"tiny file", []byte{1, 0, 0}, 0, []string{"too small"}},
		{"bad length prefix", append(hugePrefix, `{}`...), 0, []string{"exceeds", "limit"}},
		{"just over the limit", append(binary.LittleEndian.AppendUint64(nil, 100_000_001), `{}`...), 200_000_000, []string{"exceeds"}},
		{"length beyond file", append(shortPrefix, `{}`...), 0, []string{"past the end", "truncated"}},
		{"header region cut", stFile(`{"__metadata__":{}}`, nil)[:12], 1000, []string{"header bytes given"}},
		{"empty header", stFile(``, nil), 0, []string{"invalid JSON"}},
		{"invalid JSON", stFile(`{"a":{"dtype":`, nil), 0, []string{"invalid JSON"}},
		{"garbage", stFile(`\x00\x01 nope`, nil), 0, []string{"invalid JSON"}},
		{"non-object", stFile(`[1,2,3]`, nil), 0, []string{"not a JSON object"}},
		{"string", stFile(`"hi"`, nil), 0, []string{"not a JSON object"}},
		{"trailing data", stFile(`{} {}`, nil), 0, []string{"trailing data"}},
		{"duplicate tensor", stFile(obj(entry("w", "F32", "[1]", 0, 4), entry("w", "F32", "[1]", 4, 8)), make([]byte, 8)), 0, []string{"duplicate", `"w"`}},
		{"entry not an object", stFile(`{"w":[1,2]}`, nil), 0, []string{`tensor "w"`, "must be an object"}},
		{"unknown dtype", stFile(obj(entry("layer.0.w", "F8_E4M3", "[2]", 0, 2)), make([]byte, 2)), 0, []string{`tensor "layer.0.w"`, `unknown dtype "F8_E4M3"`}},
		{"lowercase dtype", stFile(obj(entry("w", "f32", "[1]", 0, 4)), make([]byte, 4)), 0, []string{`tensor "w"`, "unknown dtype"}},
		{"missing dtype", stFile(`{"w":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), 0, []string{`tensor "w"`, "missing dtype"}},
		{"missing shape", stFile(`{"w":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), 0, []string{`tensor "w"`, "missing shape"}},
		{"missing offsets", stFile(`{"w":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), 0, []string{`tensor "w"`, "missing data_offsets"}},
		{"negative shape", stFile(obj(entry("neg", "F32", "[2,-1]", 0, 0)), nil), 0, []string{`tensor "neg"`, "negative dimension"}},
		{"overflowing shape", stFile(obj(entry("big", "F32", "[4294967296,4294967296,4]", 0, 0)), nil), 0, []string{`tensor "big"`, "overflows"}},
		{"shape beyond int64", stFile(obj(entry("big", "F32", "[1e30]", 0, 0)), nil), 0, []string{`tensor "big"`}},
		{"fractional shape", stFile(obj(entry("frac", "F32", "[1.5]", 0, 0)), nil), 0, []string{`tensor "frac"`}},
		{"offsets out of range", stFile(obj(entry("w", "F32", "[2]", 0, 8)), make([]byte, 4)), 0, []string{`tensor "w"`, "past the 4-byte data section"}},
		{"truncated data section", stFile(obj(entry("a", "F32", "[1]", 0, 4), entry("b", "F32", "[4]", 4, 20)), make([]byte, 10)), 0, []string{`tensor "b"`, "truncated"}},
		{"negative offset", stFile(obj(entry("w", "F32", "[0]", -4, -4)), nil), 0, []string{`tensor "w"`, "negative data_offsets"}},
		{"end before begin", stFile(obj(entry("w", "F32", "[1]", 8, 4)), make([]byte, 8)), 0, []string{`tensor "w"`, "end before begin"}},
		{"three offsets", stFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 8)), 0, []string{`tensor "w"`, "want [begin, end]"}},
		{"size mismatch", stFile(obj(entry("w.q", "BF16", "[2,3]", 0, 8)), make([]byte, 8)), 0, []string{`tensor "w.q"`, "hold 8 bytes", "needs 12"}},
		{"overlap", stFile(obj(entry("first", "F32", "[2]", 0, 8), entry("second", "F32", "[2]", 4, 12)), make([]byte, 12)), 0, []string{`"second"`, `"first"`, "overlap"}},
		{"contained overlap", stFile(obj(entry("outer", "F32", "[4]", 0, 16), entry("inner", "F32", "[1]", 4, 8), entry("after", "F32", "[1]", 8, 12)), make([]byte, 16)), 0, []string{"overlap", `"outer"`}},
		{"same range", stFile(obj(entry("x", "F32", "[1]", 0, 4), entry("y", "I32", "[1]", 0, 4)), make([]byte, 4)), 0, []string{"overlap", `"x"`, `"y"`}},
		{"metadata not strings", stFile(`{"__metadata__":{"total_size":5}}`, nil), 0, []string{"__metadata__", "object of strings"}},
		{"metadata not an object", stFile(`{"__metadata__":"pt"}`, nil), 0, []string{"__metadata__"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			size := c.size
			if size == 0 {
				size = int64(len(c.file))
			}
			h, err := ParseHeader(c.file, size)
			if err == nil {
				t.Fatalf("accepted: %+v", h)
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestHeaderLengthAllocation checks that a length prefix near the limit
// with a short input is rejected without allocating anything like it.
func TestHeaderLengthAllocation(t *testing.T) {
	file := append(binary.LittleEndian.AppendUint64(nil, 99_000_000), `{}`...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ParseHeader(file, 99_000_008); err == nil {
			t.Fatal("accepted a header region shorter than its length prefix")
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("allocated %d bytes rejecting a short header", d)
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(stFile(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(stFile(`{"a":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"b":{"dtype":"F16","shape":[0],"data_offsets":[2,2]}}`, make([]byte, 2)))
	f.Add(stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, make([]byte, 8)))
	f.Add(stFile(`{"a":{"dtype":"I64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil))
	f.Add(stFile(`[]`, nil))
	f.Add(binary.LittleEndian.AppendUint64(nil, math.MaxUint64))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data, int64(len(data)))
		if err != nil {
			return
		}
		dataSize := int64(len(data)) - h.DataStart
		if h.DataStart < 8 || dataSize < 0 {
			t.Fatalf("DataStart %d outside a %d-byte file", h.DataStart, len(data))
		}
		if len(h.Names) != len(h.Tensors) {
			t.Fatalf("%d names for %d tensors", len(h.Names), len(h.Tensors))
		}
		var prev TensorInfo
		var maxEnd int64
		for i, name := range h.Names {
			info, ok := h.Tensors[name]
			if !ok {
				t.Fatalf("name %q has no entry", name)
			}
			size := int64(info.DType.Size())
			if size == 0 {
				t.Fatalf("%q: unknown dtype %q accepted", name, info.DType)
			}
			elems := int64(1)
			for _, d := range info.Shape {
				if d < 0 {
					t.Fatalf("%q: negative dim", name)
				}
				elems *= int64(d)
			}
			if info.Begin < 0 || info.End < info.Begin || info.End > dataSize || info.End-info.Begin != elems*size {
				t.Fatalf("%q: inconsistent %+v in %d data bytes", name, info, dataSize)
			}
			if i > 0 && info.Begin < prev.Begin {
				t.Fatalf("Names not in file order at %q", name)
			}
			if info.End > info.Begin {
				if info.Begin < maxEnd {
					t.Fatalf("%q overlaps", name)
				}
				maxEnd = info.End
			}
			prev = info
			// A tensor view over the accepted offsets must decode.
			b, e := h.DataStart+info.Begin, h.DataStart+info.End
			tn := Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: data[b:e]}
			if _, err := tn.checkData(); err != nil {
				t.Fatalf("accepted tensor fails checkData: %v", err)
			}
		}
	})
}
