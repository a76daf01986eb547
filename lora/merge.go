package lora

import (
	"fmt"
	"slices"

	"github.com/distillery/distillery/model"
)

// delta returns scale·B·A [out, in] of a targeted module, accumulated in
// float64.
func (a *Adapter) delta(module string) []float32 {
	A, B := a.tensors[module+".lora_A.weight"], a.tensors[module+".lora_B.weight"]
	r, in := a.shapes[module+".lora_A.weight"][0], a.shapes[module+".lora_A.weight"][1]
	out := a.shapes[module+".lora_B.weight"][0]
	scale := a.Scale()
	d := make([]float32, out*in)
	row := make([]float64, in)
	for o := range out {
		clear(row)
		for k := range r {
			b := float64(B[o*r+k])
			if b == 0 {
				continue
			}
			for i, v := range A[k*in : (k+1)*in] {
				row[i] += b * float64(v)
			}
		}
		for i, v := range row {
			d[o*in+i] = float32(scale * v)
		}
	}
	return d
}

// Merge returns the weights of the merged model, as PEFT's
// merge_and_unload computes them: W + scale·B·A for every targeted module,
// and the trained copies of the modules to save in place of the originals.
// base is not modified; the result shares the unchanged weights' slices
// with it. When the adapter unties tied embeddings (see MergedConfig) the
// result has an lm_head.weight of its own (the trained copy, or the
// original embedding when only embed_tokens was trained); load it with
// MergedConfig.
func (a *Adapter) Merge(base map[string][]float32) (map[string][]float32, error) {
	shapes := model.WeightShapes(a.ModelConfig)
	out := make(map[string][]float32, len(base)+1)
	for n, v := range base {
		out[n] = v
	}
	for _, m := range a.modules {
		w := m + ".weight"
		if err := checkLen(base, w, shapes[w]); err != nil {
			return nil, fmt.Errorf("lora: merge: %w", err)
		}
		merged := slices.Clone(base[w])
		for i, d := range a.delta(m) {
			merged[i] += d
		}
		out[w] = merged
	}
	if a.unties() && !a.saves(lmHeadWeight) {
		if err := checkLen(base, embedWeight, shapes[embedWeight]); err != nil {
			return nil, fmt.Errorf("lora: merge: %w", err)
		}
		out[lmHeadWeight] = base[embedWeight] // the output layer keeps the original embedding
	}
	for _, n := range a.saved {
		out[n] = slices.Clone(a.tensors[n])
	}
	return out, nil
}

// Unmerge inverts Merge: W - scale·B·A for every targeted module (equal to
// the base weights up to float32 rounding). A merged module to save cannot
// be recovered from the adapter, so original supplies it: the base weights,
// or at least those of the modules to save (model.embed_tokens.weight, and
// lm_head.weight unless the base model's embeddings are tied). The
// lm_head.weight that Merge adds to untie a tied model is dropped. merged
// is not modified.
func (a *Adapter) Unmerge(merged, original map[string][]float32) (map[string][]float32, error) {
	shapes := model.WeightShapes(a.ModelConfig)
	out := make(map[string][]float32, len(merged))
	for n, v := range merged {
		out[n] = v
	}
	for _, m := range a.modules {
		w := m + ".weight"
		if err := checkLen(merged, w, shapes[w]); err != nil {
			return nil, fmt.Errorf("lora: unmerge: %w", err)
		}
		base := slices.Clone(merged[w])
		for i, d := range a.delta(m) {
			base[i] -= d
		}
		out[w] = base
	}
	if a.unties() {
		delete(out, lmHeadWeight)
	}
	for _, n := range a.saved {
		if n == lmHeadWeight && a.ModelConfig.TieWordEmbeddings {
			continue // dropped above: the base model has none
		}
		if err := checkLen(original, n, shapes[n]); err != nil {
			return nil, fmt.Errorf("lora: unmerge: the original of module to save: %w", err)
		}
		out[n] = original[n]
	}
	return out, nil
}

// ExportMerged writes the merged model as an HF checkpoint into dir
// (config.json from MergedConfig and model.safetensors in dtype F32, BF16
// or F16), loadable by model.Load and transformers. Tokenizer files are the
// caller's to copy.
func (a *Adapter) ExportMerged(dir string, base map[string][]float32, dtype model.DType) error {
	merged, err := a.Merge(base)
	if err != nil {
		return err
	}
	cfg := a.MergedConfig()
	want := model.WeightShapes(cfg)
	for n := range merged {
		if _, ok := want[n]; !ok {
			delete(merged, n) // e.g. the stored copy of a tied lm_head: not part of this config
		}
	}
	for n, shape := range want {
		if err := checkLen(merged, n, shape); err != nil {
			return fmt.Errorf("lora: export %s: %w", dir, err)
		}
	}
	if err := model.SaveCheckpoint(dir, cfg, merged, dtype, 0); err != nil {
		return fmt.Errorf("lora: export: %w", err)
	}
	return nil
}
