package quantize

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillery/distillery/model"
)

// TestPackOrder checks the packing against AutoAWQ's from_linear by hand:
// nibble j of a packed word holds output column awq_order[j] =
// [0 2 4 6 1 3 5 7][j], so output k holding value k packs to 0x75316420.
func TestPackOrder(t *testing.T) {
	l := &int4Linear{out: 8, in: 32, group: 32, codes: make([]uint8, 8*32), zeros: make([]uint8, 8), scales: make([]float32, 8)}
	for o := range 8 {
		for i := range 32 {
			l.codes[o*32+i] = uint8((o + i) % 16)
		}
		l.zeros[o] = uint8(15 - o)
		l.scales[o] = float32(o + 1)
	}
	ts := l.awqTensors("m")
	qw, _ := ts[0].Int32()
	qz, _ := ts[1].Int32()
	if got := uint32(qw[0]); got != 0x75316420 {
		t.Errorf("qweight[0][0] = %#08x, want 0x75316420", got)
	}
	// row i holds (k+i)%16 for output k: i=1 -> values 1..8 -> nibbles 1,3,5,7,2,4,6,8
	if got := uint32(qw[1]); got != 0x86427531 {
		t.Errorf("qweight[1][0] = %#08x, want 0x86427531", got)
	}
	// zeros 15-k: nibbles 15,13,11,9,14,12,10,8
	if got := uint32(qz[0]); got != 0x8ace9bdf {
		t.Errorf("qzeros[0][0] = %#08x, want 0x8ace9bdf", got)
	}
	if ts[0].DType != model.I32 || ts[1].DType != model.I32 || ts[2].DType != model.F16 {
		t.Errorf("dtypes %s %s %s, want I32 I32 F16", ts[0].DType, ts[1].DType, ts[2].DType)
	}
	if s, _ := ts[2].Float32(); s[3] != 4 || len(s) != 8 {
		t.Errorf("scales %v", s)
	}
}

// independentDequant rebuilds a float checkpoint from an AutoAWQ GEMM one
// using only the published layout (config.json's quantization_config and
// the qweight/qzeros/scales tensors), written from AutoAWQ's
// dequantize_gemm: shift each int32 right by 0, 4, ..., 28, mask 4 bits,
// undo the [0 2 4 6 1 3 5 7] interleave with AWQ_REVERSE_ORDER
// [0 4 1 5 2 6 3 7], and w = (q - z) * s, transposed to HF's [out, in].
func independentDequant(t *testing.T, dir string) (*model.Config, map[string][]float32) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		QC struct {
			QuantMethod string `json:"quant_method"`
			Bits        int    `json:"bits"`
			GroupSize   int    `json:"group_size"`
			ZeroPoint   bool   `json:"zero_point"`
			Version     string `json:"version"`
		} `json:"quantization_config"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	qc := doc.QC
	if qc.QuantMethod != "awq" || qc.Bits != 4 || !qc.ZeroPoint || qc.Version != "gemm" {
		t.Fatalf("quantization_config %+v", qc)
	}
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := model.OpenSafetensors(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	get := func(name string) model.Tensor {
		tt, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	reverse := []int{0, 4, 1, 5, 2, 6, 3, 7}
	unpack := func(tt model.Tensor) [][]int { // [rows][cols*8], natural column order
		if tt.DType != "I32" {
			t.Fatalf("%s: dtype %s", tt.Name, tt.DType)
		}
		v, _ := tt.Int32()
		rows, cols := tt.Shape[0], tt.Shape[1]
		out := make([][]int, rows)
		for r := range rows {
			packedOrder := make([]int, cols*8)
			for c := range cols {
				for j := range 8 {
					packedOrder[c*8+j] = int(uint32(v[r*cols+c])>>(4*j)) & 15
				}
			}
			out[r] = make([]int, cols*8)
			for c := range cols {
				for k := range 8 {
					out[r][c*8+k] = packedOrder[c*8+reverse[k]]
				}
			}
		}
		return out
	}
	host := map[string][]float32{}
	for _, name := range f.Header.Names {
		module, ok := strings.CutSuffix(name, ".qweight")
		if !ok {
			if strings.HasSuffix(name, ".qzeros") || strings.HasSuffix(name, ".scales") {
				continue
			}
			v, err := get(name).Float32()
			if err != nil {
				t.Fatal(err)
			}
			host[name] = v
			continue
		}
		q := unpack(get(name))
		z := unpack(get(module + ".qzeros"))
		s, err := get(module + ".scales").Float32()
		if err != nil {
			t.Fatal(err)
		}
		in, out := len(q), len(q[0])
		g := qc.GroupSize
		if in%g != 0 || len(z) != in/g || len(s) != in/g*out {
			t.Fatalf("%s: shapes in %d out %d zeros %d scales %d, group %d", module, in, out, len(z), len(s), g)
		}
		w := make([]float32, out*in)
		for i := range in {
			for o := range out {
				w[o*in+i] = float32(q[i][o]-z[i/g][o]) * s[(i/g)*out+o]
			}
		}
		host[module+".weight"] = w
	}
	return cfg, host
}

// TestINT4MatchesIndependentDequant quantizes a random GQA model with AWQ
// (clip search on), saves it, and checks that the runtime's packed INT4
// inference gives the logits of a float model rebuilt by an independent
// dequantizer; it also reports the gap to the full-precision model.
func TestINT4MatchesIndependentDequant(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		group int
	}{{"llama", 32}, {"qwen2", 64}} {
		t.Run(tc.kind, func(t *testing.T) {
			cfg := testConfig(tc.kind, 64, 128)
			fp := newModel(t, cfg, randomWeights(cfg, 1))
			res, err := Quantize(context.Background(), fp, randomSeqs(16, 48, cfg.VocabSize, 1), Options{GroupSize: tc.group, ClipSearch: true})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := res.Save(dir); err != nil {
				t.Fatal(err)
			}
			q, err := Load(dir, model.LoadOptions{Backend: testBackend(t)})
			if err != nil {
				t.Fatal(err)
			}
			for name, tt := range q.Tensors() {
				if strings.HasSuffix(name, "proj.weight") {
					t.Errorf("%s is in memory as %s: the linear layers should stay packed", name, tt.DType())
				}
			}
			rcfg, host := independentDequant(t, dir)
			ref := newModel(t, rcfg, host)
			seqs := randomSeqs(3, 40, cfg.VocabSize, 99)
			lq, lr, lf := logits(t, q, seqs), logits(t, ref, seqs), logits(t, fp, seqs)
			abs, rel := gap(lq, lr)
			if abs > 1e-3 {
				t.Errorf("INT4 runtime vs independent dequantization: max |Δlogit| %.3g (relative %.3g), want <= 1e-3", abs, rel)
			}
			fabs, frel := gap(lq, lf)
			t.Logf("%s g%d: INT4 vs independent dequant max |Δ| %.2g (rel %.2g); INT4 vs fp max |Δ| %.4f (rel %.4f), KL(fp||INT4) %.5f per token",
				tc.kind, tc.group, abs, rel, fabs, frel, meanKL(lf, lq))
			// random weights quantize worst (no structure): the gap is large
			// relative to their small logits, yet far from a different model.
			if frel > 0.5 {
				t.Errorf("INT4 logits are far from fp: relative %.3f", frel)
			}
		})
	}
}
