package model

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func tensorNames(tensors []Tensor) []string {
	var names []string
	for _, t := range tensors {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	return names
}

func TestWeightsSingleRoundTrip(t *testing.T) {
	tensors := testTensors(rand.New(rand.NewSource(3)))
	for _, max := range []int64{0, -1, 272, 1 << 30} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
		if err := WriteWeights(dir, tensors, map[string]string{"k": "v"}, max); err != nil {
			t.Fatal(err)
		}
		if got := dirFiles(t, dir); !reflect.DeepEqual(got, []string{"config.json", "model.safetensors"}) {
			t.Errorf("max %d: files %v", max, got)
		}
		for _, open := range []string{dir, filepath.Join(dir, "model.safetensors")} {
			w, err := OpenWeights(open)
			if err != nil {
				t.Fatal(err)
			}
			checkTensorsEqual(t, w.Get, tensors)
			if !reflect.DeepEqual(w.Names(), tensorNames(tensors)) {
				t.Errorf("Names = %v", w.Names())
			}
			if !reflect.DeepEqual(w.Metadata(), map[string]string{"format": "pt", "k": "v"}) {
				t.Errorf("Metadata = %v", w.Metadata())
			}
			w.Close()
		}
	}
}

func TestWeightsShardedRoundTrip(t *testing.T) {
	tensors := testTensors(rand.New(rand.NewSource(4)))
	dir := t.TempDir()
	// 272 bytes in name order: empties (0), lm_head (96) | embed (96) | the rest (80).
	if err := WriteWeights(dir, tensors, map[string]string{"k": "v"}, 100); err != nil {
		t.Fatal(err)
	}
	want := []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"}
	if got := dirFiles(t, dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	// Byte for byte what transformers writes: json.dumps(index, indent=2, sort_keys=True) + "\n".
	wantIndex := `{
  "metadata": {
    "total_size": 272
  },
  "weight_map": {
    "empty.bf16": "model-00001-of-00003.safetensors",
    "empty.f16": "model-00001-of-00003.safetensors",
    "lm_head.weight": "model-00001-of-00003.safetensors",
    "model.embed_tokens.weight": "model-00002-of-00003.safetensors",
    "model.layers.0.self_attn.q_proj.weight": "model-00003-of-00003.safetensors",
    "model.layers.1.mlp.up_proj.weight": "model-00003-of-00003.safetensors",
    "model.norm.weight": "model-00003-of-00003.safetensors",
    "position_ids": "model-00003-of-00003.safetensors",
    "scalar.bf16": "model-00003-of-00003.safetensors",
    "scalar.f32": "model-00003-of-00003.safetensors"
  }
}
`
	if got, _ := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json")); string(got) != wantIndex {
		t.Errorf("index:\n%s\nwant:\n%s", got, wantIndex)
	}
	for _, open := range []string{dir, filepath.Join(dir, "model.safetensors.index.json")} {
		w, err := OpenWeights(open)
		if err != nil {
			t.Fatal(err)
		}
		checkTensorsEqual(t, w.Get, tensors)
		if !reflect.DeepEqual(w.Names(), tensorNames(tensors)) {
			t.Errorf("Names = %v", w.Names())
		}
		if !reflect.DeepEqual(w.Metadata(), map[string]string{"format": "pt", "k": "v", "total_size": "272"}) {
			t.Errorf("Metadata = %v", w.Metadata())
		}
		info, ok := w.Info("model.embed_tokens.weight")
		if !ok || !reflect.DeepEqual(info, TensorInfo{DType: F32, Shape: []int{6, 4}, Begin: 0, End: 96}) {
			t.Errorf("Info = %+v, %v", info, ok)
		}
		info.Shape[0] = 7
		if info, _ := w.Info("model.embed_tokens.weight"); info.Shape[0] != 6 {
			t.Error("Info shares Shape with the header")
		}
		if !w.Has("scalar.f32") || w.Has("scalar") {
			t.Error("Has")
		}
		if _, ok := w.Info("nope"); ok {
			t.Error("Info of a missing tensor")
		}
		_, err = w.Get("nope")
		if !errors.Is(err, ErrMissingTensor) || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("Get missing: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestWeightsShardingRule checks HF's split: a tensor bigger than the
// limit gets a shard of its own, the running shard continues after it.
func TestWeightsShardingRule(t *testing.T) {
	tensors := testTensors(rand.New(rand.NewSource(5)))
	dir := t.TempDir()
	if err := WriteWeights(dir, tensors, nil, 50); err != nil {
		t.Fatal(err)
	}
	wantShards := [][]string{
		{"lm_head.weight"},
		{"model.embed_tokens.weight"},
		{"empty.bf16", "empty.f16", "model.layers.0.self_attn.q_proj.weight"},
		{"model.layers.1.mlp.up_proj.weight", "model.norm.weight", "position_ids", "scalar.bf16", "scalar.f32"},
	}
	for i, want := range wantShards {
		f, err := OpenSafetensors(filepath.Join(dir, []string{"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}[i]))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.Header.Names, want) {
			t.Errorf("shard %d holds %v, want %v", i+1, f.Header.Names, want)
		}
		if f.Header.Metadata["format"] != "pt" {
			t.Errorf("shard %d metadata %v", i+1, f.Header.Metadata)
		}
		f.Close()
	}
}

func TestWeightsRemovesStaleLayout(t *testing.T) {
	tensors := testTensors(rand.New(rand.NewSource(6)))
	dir := t.TempDir()
	keep := []string{"config.json", "model-extra.safetensors", "model-1-of-2.safetensors"}
	for _, k := range keep {
		os.WriteFile(filepath.Join(dir, k), []byte("x"), 0o644)
	}
	files := func() []string {
		var out []string
		for _, f := range dirFiles(t, dir) {
			if !strings.HasPrefix(f, "config") && f != "model-extra.safetensors" && f != "model-1-of-2.safetensors" {
				out = append(out, f)
			}
		}
		return out
	}
	steps := []struct {
		max  int64
		want []string
	}{
		{50, []string{"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors", "model.safetensors.index.json"}},
		{100, []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"}},
		{0, []string{"model.safetensors"}},
		{100, []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"}},
	}
	for _, s := range steps {
		if err := WriteWeights(dir, tensors, nil, s.max); err != nil {
			t.Fatal(err)
		}
		if got := files(); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("after max %d: %v, want %v", s.max, got, s.want)
		}
		w, err := OpenWeights(dir)
		if err != nil {
			t.Fatal(err)
		}
		checkTensorsEqual(t, w.Get, tensors)
		w.Close()
	}
	for _, k := range keep {
		if _, err := os.Stat(filepath.Join(dir, k)); err != nil {
			t.Errorf("unrelated %s removed", k)
		}
	}
}

// TestWeightsPrefersSingleFile follows transformers: with both layouts
// present, model.safetensors wins.
func TestWeightsPrefersSingleFile(t *testing.T) {
	dir := t.TempDir()
	a := NewTensor("a", F32, []int{1}, []float32{1})
	if err := WriteWeights(dir, []Tensor{a, NewTensor("b", F32, []int{1}, []float32{2})}, nil, 4); err != nil {
		t.Fatal(err)
	}
	if err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), []Tensor{a}, nil); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !reflect.DeepEqual(w.Names(), []string{"a"}) {
		t.Errorf("Names = %v", w.Names())
	}
}

func TestWeightsErrors(t *testing.T) {
	mk := func(t *testing.T) string {
		dir := t.TempDir()
		if err := WriteWeights(dir, testTensors(rand.New(rand.NewSource(7))), nil, 100); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	index := func(dir string) string { return filepath.Join(dir, "model.safetensors.index.json") }
	setIndex := func(t *testing.T, dir, body string) {
		if err := os.WriteFile(index(dir), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, dir string, want ...string) error {
		t.Helper()
		w, err := OpenWeights(dir)
		if err == nil {
			w.Close()
			t.Fatal("opened")
		}
		t.Log(err)
		for _, s := range want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not mention %q", err, s)
			}
		}
		return err
	}
	t.Run("missing shard", func(t *testing.T) {
		dir := mk(t)
		os.Remove(filepath.Join(dir, "model-00002-of-00003.safetensors"))
		err := check(t, dir, index(dir), `tensor "model.embed_tokens.weight"`, "model-00002-of-00003.safetensors")
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error does not wrap ErrNotExist: %v", err)
		}
	})
	t.Run("tensor missing from its shard", func(t *testing.T) {
		dir := mk(t)
		setIndex(t, dir, `{"metadata":{},"weight_map":{"lm_head.weight":"model-00002-of-00003.safetensors"}}`)
		err := check(t, dir, `tensor "lm_head.weight"`, "not in its shard", "model-00002-of-00003.safetensors")
		if !errors.Is(err, ErrMissingTensor) {
			t.Errorf("error does not wrap ErrMissingTensor: %v", err)
		}
	})
	t.Run("corrupt shard", func(t *testing.T) {
		dir := mk(t)
		shard := filepath.Join(dir, "model-00003-of-00003.safetensors")
		data, _ := os.ReadFile(shard)
		os.WriteFile(shard, data[:len(data)-5], 0o644)
		check(t, dir, shard, "truncated")
	})
	t.Run("invalid index", func(t *testing.T) {
		dir := mk(t)
		setIndex(t, dir, `{"weight_map":`)
		check(t, dir, index(dir))
	})
	t.Run("empty weight_map", func(t *testing.T) {
		dir := mk(t)
		setIndex(t, dir, `{"metadata":{"total_size":0}}`)
		check(t, dir, index(dir), "weight_map")
	})
	t.Run("shard outside the folder", func(t *testing.T) {
		dir := mk(t)
		setIndex(t, dir, `{"weight_map":{"a":"../model-00001-of-00003.safetensors"}}`)
		check(t, dir, `tensor "a"`, "not a path inside")
	})
	t.Run("no weights", func(t *testing.T) {
		check(t, t.TempDir(), "model.safetensors", "model.safetensors.index.json")
	})
	t.Run("no such path", func(t *testing.T) {
		check(t, filepath.Join(t.TempDir(), "nope"), "nope")
	})
	t.Run("write errors", func(t *testing.T) {
		dir := t.TempDir()
		ok := NewTensor("w", F32, []int{1}, []float32{1})
		err := WriteWeights(dir, []Tensor{ok, ok}, nil, 2)
		if err == nil || !strings.Contains(err.Error(), `tensor "w": duplicate`) || !strings.Contains(err.Error(), dir) {
			t.Errorf("duplicate: %v", err)
		}
		if files := dirFiles(t, dir); len(files) != 0 {
			t.Errorf("failed write left %v", files)
		}
	})
}
