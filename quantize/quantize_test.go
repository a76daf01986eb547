package quantize

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/distillery/distillery/model"
)

// TestSizes checks the INT4 linear layers take at most 0.3x the bytes of a
// 16-bit copy, in memory and on disk, at every group size, with the
// embeddings (16-bit) counted apart.
func TestSizes(t *testing.T) {
	cfg := testConfig("llama", 128, 256)
	cfg.TieWordEmbeddings = false
	w := randomWeights(cfg, 2)
	w["lm_head.weight"] = slices.Clone(w["model.embed_tokens.weight"])
	fp := newModel(t, cfg, w)
	fpSizes := MemorySizes(fp)
	if fpSizes.LinearRatio != 2 {
		t.Errorf("f32 model: linear ratio %.3f, want 2", fpSizes.LinearRatio)
	}
	for _, g := range []int{32, 64, 128} {
		res, err := Quantize(context.Background(), fp, nil, Options{Method: MethodRTN, GroupSize: g})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := res.Save(dir); err != nil {
			t.Fatal(err)
		}
		m, err := Load(dir, fpOpts(t))
		if err != nil {
			t.Fatal(err)
		}
		mem := MemorySizes(m)
		disk, err := CheckpointSizes(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("g%d: linear %d bytes vs %d 16-bit (ratio %.3f), embeddings %d, other %d; disk %d (ratio %.3f); model.safetensors %d bytes; RSS %.1f MB",
			g, mem.LinearBytes, mem.Linear16Bytes, mem.LinearRatio, mem.EmbeddingBytes, mem.OtherBytes, disk.TotalBytes, disk.LinearRatio, DiskBytes(dir), float64(ResidentBytes())/(1<<20))
		if mem.LinearRatio > 0.3 || disk.LinearRatio > 0.3 {
			t.Errorf("g%d: linear bytes ratio memory %.3f, disk %.3f, want <= 0.3", g, mem.LinearRatio, disk.LinearRatio)
		}
		if mem != disk {
			t.Errorf("g%d: memory %+v != disk %+v", g, mem, disk)
		}
		if mem.EmbeddingBytes != 2*2*int64(cfg.VocabSize*cfg.HiddenSize) || mem.Linear16Bytes != fpSizes.Linear16Bytes || mem.Total16Bytes != fpSizes.Total16Bytes {
			t.Errorf("g%d: embeddings %d, 16-bit linear %d (fp %d), total %d (fp %d)", g, mem.EmbeddingBytes, mem.Linear16Bytes, fpSizes.Linear16Bytes, mem.Total16Bytes, fpSizes.Total16Bytes)
		}
		for name, tt := range m.Tensors() {
			if tt.DType() == dtypes.Float32 {
				t.Errorf("g%d: %s is f32 in memory, want 16-bit or packed", g, name)
			}
		}
	}
	if ResidentBytes() <= 0 {
		t.Error("ResidentBytes: no VmRSS")
	}
}

// TestModulesToNotConvert keeps listed layers and layers that do not fit
// the group size in 16-bit, lists them in config.json, and loads back.
func TestModulesToNotConvert(t *testing.T) {
	cfg := testConfig("llama", 64, 96) // down_proj has 96 inputs: not a multiple of 64
	fp := newModel(t, cfg, randomWeights(cfg, 4))
	res, err := Quantize(context.Background(), fp, randomSeqs(8, 32, cfg.VocabSize, 4), Options{GroupSize: 64,
		ModulesToNotConvert: []string{"layers.1.self_attn.o_proj", "layers.0.mlp.up_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	// gate_proj follows up_proj (vLLM fuses them); down_proj's 96 inputs do not fit group 64
	want := []string{"layers.1.self_attn.o_proj", "layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj", "model.layers.1.mlp.down_proj"}
	if !slices.Equal(res.Quant.ModulesToNotConvert, want) {
		t.Errorf("modules_to_not_convert %v, want %v", res.Quant.ModulesToNotConvert, want)
	}
	if len(res.Skipped) != 5 {
		t.Errorf("skipped %v", res.Skipped)
	}
	dir := t.TempDir()
	if err := res.Save(dir); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	var doc map[string]any
	json.Unmarshal(raw, &doc)
	qc, _ := doc["quantization_config"].(map[string]any)
	if qc["quant_method"] != "awq" || qc["bits"] != 4.0 || qc["group_size"] != 64.0 || qc["zero_point"] != true || qc["version"] != "gemm" || len(qc["modules_to_not_convert"].([]any)) != 5 {
		t.Errorf("quantization_config %v", qc)
	}
	if doc["torch_dtype"] != "float16" {
		t.Errorf("torch_dtype %v", doc["torch_dtype"])
	}
	m, err := Load(dir, fpOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := m.Tensors()
	for _, name := range []string{"model.layers.1.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.gate_proj.weight"} {
		if tt, ok := ts[name]; !ok || tt.DType() != dtypes.Float16 {
			t.Errorf("%s should stay float16", name)
		}
	}
	if _, ok := ts["model.layers.0.self_attn.o_proj.qweight"]; !ok {
		t.Error("layer 0's o_proj should be packed")
	}
	seqs := randomSeqs(2, 20, cfg.VocabSize, 8)
	if _, rel := gap(logits(t, m, seqs), logits(t, fp, seqs)); rel > 0.5 {
		t.Errorf("relative logit gap to fp %.3f", rel)
	}
}

// TestINT8 round-trips the INT8 layout and checks its logits are close to fp.
func TestINT8(t *testing.T) {
	cfg := testConfig("qwen2", 64, 128)
	fp := newModel(t, cfg, randomWeights(cfg, 6))
	res, err := Quantize(context.Background(), fp, nil, Options{Method: MethodINT8})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := res.Save(dir); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, fpOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if tt := m.Tensors()["model.layers.0.mlp.up_proj.weight"]; tt.DType() != dtypes.Int8 {
		t.Errorf("up_proj is %s in memory, want int8", tt.DType())
	}
	seqs := randomSeqs(2, 20, cfg.VocabSize, 8)
	_, rel := gap(logits(t, m, seqs), logits(t, fp, seqs))
	t.Logf("INT8 vs fp: relative logit gap %.4f; linear bytes ratio %.3f", rel, MemorySizes(m).LinearRatio)
	if rel > 0.05 {
		t.Errorf("INT8 relative logit gap %.4f", rel)
	}
	if r := MemorySizes(m).LinearRatio; r > 0.52 {
		t.Errorf("INT8 linear bytes ratio %.3f", r)
	}
}

// TestGenerateINT4 runs the KV-cache generation on a packed INT4 model
// (also in bf16) and checks each greedy token against a full forward pass.
func TestGenerateINT4(t *testing.T) {
	cfg := testConfig("qwen3", 64, 128)
	fp := newModel(t, cfg, randomWeights(cfg, 7))
	res, err := Quantize(context.Background(), fp, randomSeqs(8, 32, cfg.VocabSize, 7), Options{GroupSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []string{"f32", "bf16"} {
		m, err := res.Model(model.LoadOptions{Backend: testBackend(t), DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		prompts := [][]int{{1, 2, 3, 4, 5}, {9, 8}}
		seqs, err := m.Generate(context.Background(), prompts, model.GenerateOptions{MaxNewTokens: 6}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range seqs {
			full := append(slices.Clone(prompts[i]), s.IDs()...)
			lg := logits(t, m, [][]int{full})[0]
			for j, id := range s.IDs() {
				row := lg[len(prompts[i])+j-1]
				best := 0
				for k := range row {
					if row[k] > row[best] {
						best = k
					}
				}
				if dt == "f32" && best != id {
					t.Errorf("%s seq %d step %d: generated %d, forward argmax %d", dt, i, j, id, best)
				}
				if row[id] < row[best]-0.05 {
					t.Errorf("%s seq %d step %d: generated %d (%.4f) far below argmax %d (%.4f)", dt, i, j, id, row[id], best, row[best])
				}
			}
		}
	}
}

// TestLoadPlain loads an unquantized checkpoint through Load.
func TestLoadPlain(t *testing.T) {
	cfg := testConfig("llama", 64, 128)
	w := randomWeights(cfg, 8)
	dir := t.TempDir()
	if err := model.SaveCheckpoint(dir, cfg, w, model.F32, 0); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, fpOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	seqs := randomSeqs(1, 10, cfg.VocabSize, 1)
	if abs, _ := gap(logits(t, m, seqs), logits(t, newModel(t, cfg, w), seqs)); abs != 0 {
		t.Errorf("plain checkpoint through Load differs by %g", abs)
	}
	if _, err := Quantize(context.Background(), m, nil, Options{Method: "gptq"}); err == nil || !strings.Contains(err.Error(), "method") {
		t.Errorf("bad method: %v", err)
	}
	if _, err := Quantize(context.Background(), m, nil, Options{GroupSize: 48}); err == nil {
		t.Error("group size 48 accepted")
	}
	if _, err := Quantize(context.Background(), m, nil, Options{}); err == nil {
		t.Error("AWQ without calibration accepted")
	}
}

// TestLoadErrors rejects checkpoints whose packed tensors do not match.
func TestLoadErrors(t *testing.T) {
	cfg := testConfig("llama", 64, 128)
	res, err := Quantize(context.Background(), newModel(t, cfg, randomWeights(cfg, 9)), nil, Options{Method: MethodRTN, GroupSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	drop := res.tensors[:0:0]
	for _, tt := range res.tensors {
		if tt.Name != "model.layers.1.mlp.up_proj.qzeros" {
			drop = append(drop, tt)
		}
	}
	bad := *res
	bad.tensors = drop
	if _, err := bad.Model(fpOpts(t)); err == nil || !strings.Contains(err.Error(), "up_proj.qzeros: missing") {
		t.Errorf("missing qzeros: %v", err)
	}
	wrong := *res
	wrong.Quant.GroupSize = 64
	if _, err := wrong.Model(fpOpts(t)); err == nil || !strings.Contains(err.Error(), "group size 64") {
		t.Errorf("wrong group size: %v", err)
	}
	if _, err := res.Model(model.LoadOptions{Backend: testBackend(t), Params: func(p model.PlainParams) model.Params { return p }}); err == nil {
		t.Error("Params on a quantized checkpoint accepted")
	}
}

// TestPerplexityOutliers compares perplexity on a random model with
// activation outliers, on evaluation text disjoint from calibration: AWQ
// must lose less than RTN. Both texts are sampled from the fp model: on
// uniformly random tokens a random model is worse than uniform, and
// quantization noise raises or lowers its perplexity by chance, whereas on
// the model's own samples the expected increase of the NLL is
// KL(fp || quantized).
func TestPerplexityOutliers(t *testing.T) {
	cfg := testConfig("llama", 128, 256)
	w, _ := outlierWeights(cfg, 21)
	fp := newModel(t, cfg, w)
	rep, err := Compare(context.Background(), fp, sampledSeqs(t, fp, 16, 64, 22), sampledSeqs(t, fp, 32, 64, 23),
		CompareOptions{GroupSizes: []int{64}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Table())
	v := map[string]Variant{}
	for _, x := range rep.Variants {
		v[x.Name] = x
	}
	if !(v["awq-g64"].PerplexityIncrease < v["rtn-g64"].PerplexityIncrease) {
		t.Errorf("perplexity increase AWQ %.4f, RTN %.4f", v["awq-g64"].PerplexityIncrease, v["rtn-g64"].PerplexityIncrease)
	}
	if v["awq-g64"].Disk == nil || v["awq-g64"].Disk.LinearRatio > 0.3 {
		t.Errorf("disk sizes %+v", v["awq-g64"].Disk)
	}
}
