package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func pruneCalib(vocab, n, length int, seed uint64) [][]int {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([][]int, n)
	for i := range out {
		l := length - i%3 // varied lengths exercise the padding mask
		for range l {
			out[i] = append(out[i], rng.IntN(vocab))
		}
	}
	return out
}

func mustNew(t *testing.T, cfg *Config, w map[string][]float32) *Model {
	t.Helper()
	m, err := New(cfg, w, WeightShapes(cfg), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustLogits(t *testing.T, m *Model, ids [][]int) [][][]float32 {
	t.Helper()
	out, err := m.Logits(ids)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maxLogitDiff(a, b [][][]float32) float64 {
	d := 0.0
	for i := range a {
		for j := range a[i] {
			for k := range a[i][j] {
				d = max(d, math.Abs(float64(a[i][j][k]-b[i][j][k])))
			}
		}
	}
	return d
}

func cloneWeights(w map[string][]float32) map[string][]float32 {
	out := map[string][]float32{}
	for k, v := range w {
		out[k] = slices.Clone(v)
	}
	return out
}

// saveLoad writes the pruned checkpoint and reads it back with Load.
func saveLoad(t *testing.T, cfg *Config, w map[string][]float32) *Model {
	t.Helper()
	dir := t.TempDir()
	if err := SaveCheckpoint(dir, cfg, w, F32, 0); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPruneDepthAllIsIdentity(t *testing.T) {
	cfg := tinyConfig()
	w := RandomWeights(cfg, 3, 0.2)
	m := mustNew(t, cfg, w)
	pc, pw, rep, err := Prune(m, PruneOptions{MLPWidth: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Layers != 2 || rep.Intermediate != 64 || rep.Heads != 4 || rep.KVHeads != 2 || rep.ParamsBefore != rep.ParamsAfter {
		t.Fatalf("report %+v", rep)
	}
	ids := pruneCalib(cfg.VocabSize, 2, 7, 1)
	if d := maxLogitDiff(mustLogits(t, m, ids), mustLogits(t, saveLoad(t, pc, pw), ids)); d != 0 {
		t.Fatalf("identity prune changed logits by %g", d)
	}
}

func TestPruneDepthKeepFirstLayer(t *testing.T) {
	cfg := tinyConfig()
	cfg.NumHiddenLayers = 3
	w := RandomWeights(cfg, 4, 0.2)
	m := mustNew(t, cfg, w)
	pc, pw, rep, err := Prune(m, PruneOptions{KeepLayers: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	if pc.NumHiddenLayers != 1 || rep.Layers != 1 {
		t.Fatalf("layers %d", pc.NumHiddenLayers)
	}
	// By hand: a 1-layer config with layer 0's weights.
	hc := *tinyConfig()
	hc.NumHiddenLayers = 1
	hw := map[string][]float32{}
	for k, v := range w {
		if !strings.HasPrefix(k, "model.layers.") || strings.HasPrefix(k, "model.layers.0.") {
			hw[k] = v
		}
	}
	ids := pruneCalib(cfg.VocabSize, 2, 6, 2)
	if d := maxLogitDiff(mustLogits(t, mustNew(t, &hc, hw), ids), mustLogits(t, saveLoad(t, pc, pw), ids)); d != 0 {
		t.Fatalf("keep [0] differs from the hand-built model by %g", d)
	}
	// Renumbering: keeping [2] puts layer 2's weights at index 0.
	_, pw2, _, err := Prune(m, PruneOptions{KeepLayers: []int{2}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pw2["model.layers.0.mlp.up_proj.weight"], w["model.layers.2.mlp.up_proj.weight"]) {
		t.Fatal("layer 2 not renumbered to 0")
	}
	if _, _, _, err := Prune(m, PruneOptions{KeepLayers: []int{0, 3}}); err == nil {
		t.Fatal("out-of-range layer accepted")
	}
	if _, _, _, err := Prune(m, PruneOptions{MLPWidth: 0.5}); err == nil {
		t.Fatal("width pruning without calibration accepted")
	}
}

// Dropping channels (or head groups) must equal the original model with
// their contribution zeroed: down_proj columns (o_proj columns).
func TestPruneWidthMatchesZeroedOriginal(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts PruneOptions
		bias bool
	}{
		{"mlp", PruneOptions{MLPWidth: 0.5}, false},
		{"heads", PruneOptions{Heads: 0.5}, true},
		{"both+depth", PruneOptions{MLPWidth: 0.25, Heads: 0.5, KeepLayers: []int{1, 0}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig()
			cfg.AttentionBias = tc.bias
			w := RandomWeights(cfg, 5, 0.2)
			if tc.bias {
				rng := rand.New(rand.NewPCG(9, 9))
				for k, v := range w {
					if strings.HasSuffix(k, ".bias") {
						for i := range v {
							v[i] = float32(rng.NormFloat64() * 0.2)
						}
					}
				}
			}
			m := mustNew(t, cfg, w)
			tc.opts.Calibration = pruneCalib(cfg.VocabSize, 10, 12, 3)
			pc, pw, rep, plan, err := prune(m, tc.opts, topK)
			if err != nil {
				t.Fatal(err)
			}
			wantI := cfg.IntermediateSize
			if tc.opts.MLPWidth > 0 {
				wantI = int(float64(wantI) * tc.opts.MLPWidth)
			}
			wantKV := cfg.NumKeyValueHeads
			if tc.opts.Heads > 0 {
				wantKV = int(float64(wantKV) * tc.opts.Heads)
			}
			pm := saveLoad(t, pc, pw)
			if pm.Config.IntermediateSize != wantI || rep.Intermediate != wantI || pm.Config.NumKeyValueHeads != wantKV ||
				pm.Config.NumAttentionHeads != 2*wantKV || pm.Config.HeadDim != cfg.HeadDim {
				t.Fatalf("pruned config %+v, report %+v", pm.Config, rep)
			}
			// Reference: the original with the dropped contributions zeroed.
			rc := *cfg
			rc.NumHiddenLayers = len(plan.layers)
			rw := map[string][]float32{}
			for k, v := range w {
				if !strings.HasPrefix(k, "model.layers.") {
					rw[k] = slices.Clone(v)
				}
			}
			hd, group := cfg.HeadDim, cfg.NumAttentionHeads/cfg.NumKeyValueHeads
			for j, l := range plan.layers {
				for k, v := range w {
					if p := fmt.Sprintf("model.layers.%d.", l); strings.HasPrefix(k, p) {
						rw[fmt.Sprintf("model.layers.%d.", j)+strings.TrimPrefix(k, p)] = slices.Clone(v)
					}
				}
				pre := fmt.Sprintf("model.layers.%d.", j)
				down := rw[pre+"mlp.down_proj.weight"]
				for ch := range cfg.IntermediateSize {
					if !slices.Contains(plan.mlp[j], ch) {
						for r := range cfg.HiddenSize {
							down[r*cfg.IntermediateSize+ch] = 0
						}
					}
				}
				o := rw[pre+"self_attn.o_proj.weight"]
				cols := cfg.NumAttentionHeads * hd
				for g := range cfg.NumKeyValueHeads {
					if slices.Contains(plan.groups[j], g) {
						continue
					}
					for r := range cfg.HiddenSize {
						for c := g * group * hd; c < (g+1)*group*hd; c++ {
							o[r*cols+c] = 0
						}
					}
				}
			}
			ids := pruneCalib(cfg.VocabSize, 3, 9, 4)
			want := mustLogits(t, mustNew(t, &rc, rw), ids)
			got := mustLogits(t, pm, ids)
			if d := maxLogitDiff(want, got); d > 1e-4 {
				t.Fatalf("pruned logits differ from the zeroed original by %g", d)
			}
			// And pruning really changed the model.
			if d := maxLogitDiff(mustLogits(t, m, ids), got); d < 1e-3 && tc.opts.KeepLayers == nil {
				t.Fatalf("pruning left logits unchanged (%g)", d)
			}
		})
	}
}

// meanKL is the mean KL(p‖q) of next-token distributions over all positions.
func meanKL(p, q [][][]float32) float64 {
	sum, n := 0.0, 0
	for i := range p {
		for j := range p[i] {
			lp, lq := LogProbs(p[i][j]), LogProbs(q[i][j])
			for k := range lp {
				sum += math.Exp(float64(lp[k])) * float64(lp[k]-lq[k])
			}
			n++
		}
	}
	return sum / float64(n)
}

func bottomK(imp []float64, k int) []int {
	neg := make([]float64, len(imp))
	for i, v := range imp {
		neg[i] = -v
	}
	return topK(neg, k)
}

func TestPruneImportanceMatters(t *testing.T) {
	cfg := tinyConfig()
	w := RandomWeights(cfg, 6, 0.1)
	// A random half of the MLP channels, and KV group 1, get much larger
	// weights.
	rng := rand.New(rand.NewPCG(11, 0))
	big := map[int]bool{}
	for _, ch := range rng.Perm(cfg.IntermediateSize)[:cfg.IntermediateSize/2] {
		big[ch] = true
	}
	d, I, hd, group := cfg.HiddenSize, cfg.IntermediateSize, cfg.HeadDim, cfg.NumAttentionHeads/cfg.NumKeyValueHeads
	for l := range cfg.NumHiddenLayers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		for ch := range big {
			for _, n := range []string{"gate_proj", "up_proj"} {
				v := w[pre+"mlp."+n+".weight"]
				for i := range d {
					v[ch*d+i] *= 4
				}
			}
			v := w[pre+"mlp.down_proj.weight"]
			for r := range d {
				v[r*I+ch] *= 4
			}
		}
		v := w[pre+"self_attn.v_proj.weight"]
		for i := 1 * hd * d; i < 2*hd*d; i++ {
			v[i] *= 5
		}
		o := w[pre+"self_attn.o_proj.weight"]
		cols := cfg.NumAttentionHeads * hd
		for r := range d {
			for c := 1 * group * hd; c < 2*group*hd; c++ {
				o[r*cols+c] *= 5
			}
		}
	}
	m := mustNew(t, cfg, w)
	calib := pruneCalib(cfg.VocabSize, 12, 16, 8)
	ref := mustLogits(t, m, calib)
	for _, opts := range []PruneOptions{{MLPWidth: 0.5}, {Heads: 0.5}} {
		opts.Calibration = calib
		hc, hw, _, plan, err := prune(m, opts, topK)
		if err != nil {
			t.Fatal(err)
		}
		lc, lw, _, _, err := prune(m, opts, bottomK)
		if err != nil {
			t.Fatal(err)
		}
		for j := range plan.layers {
			if opts.MLPWidth > 0 {
				for _, ch := range plan.mlp[j] {
					if !big[ch] {
						t.Errorf("layer %d: importance kept small channel %d", j, ch)
					}
				}
			} else if !slices.Equal(plan.groups[j], []int{1}) {
				t.Errorf("layer %d: importance kept groups %v, want [1]", j, plan.groups[j])
			}
		}
		klHigh := meanKL(ref, mustLogits(t, mustNew(t, hc, hw), calib))
		klLow := meanKL(ref, mustLogits(t, mustNew(t, lc, lw), calib))
		t.Logf("width %v heads %v: KL keep-important %.4g, keep-unimportant %.4g", opts.MLPWidth, opts.Heads, klHigh, klLow)
		if !(klHigh*2 < klLow) {
			t.Errorf("importance does not help: KL %g vs %g", klHigh, klLow)
		}
	}
}

func TestPruneParamCounts(t *testing.T) {
	cfg := tinyConfig() // d 32, I 64, 2 layers, 4 heads, 2 kv, hd 8, vocab 50, untied
	m := mustNew(t, cfg, RandomWeights(cfg, 7, 0.2))
	_, pw, rep, err := Prune(m, PruneOptions{KeepLayers: []int{1}, MLPWidth: 0.5, Heads: 0.5, Calibration: pruneCalib(50, 4, 8, 1)})
	if err != nil {
		t.Fatal(err)
	}
	layer := func(I, nh, nkv int64) int64 {
		const d, hd = 32, 8
		return 2*d + nh*hd*d + 2*nkv*hd*d + d*nh*hd + 3*I*d
	}
	emb := int64(2 * 50 * 32)
	wantBefore := 32 + 2*layer(64, 4, 2)
	wantAfter := 32 + layer(32, 2, 1)
	if rep.NonEmbeddingBefore != wantBefore || rep.ParamsBefore != wantBefore+emb ||
		rep.NonEmbeddingAfter != wantAfter || rep.ParamsAfter != wantAfter+emb {
		t.Fatalf("report %+v, want before %d/%d after %d/%d", rep, wantBefore+emb, wantBefore, wantAfter+emb, wantAfter)
	}
	n := int64(0)
	for _, v := range pw {
		n += int64(len(v))
	}
	if n != rep.ParamsAfter || rep.Layers != 1 || rep.Intermediate != 32 || rep.Heads != 2 || rep.KVHeads != 1 {
		t.Fatalf("report %+v, weights hold %d", rep, n)
	}
}

// Importance is a per-token mean: batching and right-padding must not
// change it.
func TestPruneImportancePaddingInvariant(t *testing.T) {
	cfg := tinyConfig()
	m := mustNew(t, cfg, RandomWeights(cfg, 8, 0.2))
	calib := pruneCalib(cfg.VocabSize, 11, 10, 5) // lengths 10, 9, 8: padded within a batch, two batches
	mb, hb, err := pruneImportance(m, calib)
	if err != nil {
		t.Fatal(err)
	}
	// One sequence at a time, weighted by its length.
	ms := make([][]float64, cfg.NumHiddenLayers)
	hs := make([][]float64, cfg.NumHiddenLayers)
	total := 0
	for _, s := range calib {
		mi, hi, err := pruneImportance(m, [][]int{s})
		if err != nil {
			t.Fatal(err)
		}
		total += len(s)
		for l := range mi {
			if ms[l] == nil {
				ms[l], hs[l] = make([]float64, len(mi[l])), make([]float64, len(hi[l]))
			}
			for i, v := range mi[l] {
				ms[l][i] += v * float64(len(s))
			}
			for i, v := range hi[l] {
				hs[l][i] += v * float64(len(s))
			}
		}
	}
	for l := range ms {
		for i := range ms[l] {
			if d := math.Abs(ms[l][i]/float64(total) - mb[l][i]); d > 1e-5*max(1, math.Abs(mb[l][i])) {
				t.Fatalf("layer %d channel %d: batched %g, single %g", l, i, mb[l][i], ms[l][i]/float64(total))
			}
		}
		for i := range hs[l] {
			if d := math.Abs(hs[l][i]/float64(total) - hb[l][i]); d > 1e-5*max(1, math.Abs(hb[l][i])) || hb[l][i] <= 0 {
				t.Fatalf("layer %d group %d: batched %g, single %g", l, i, hb[l][i], hs[l][i]/float64(total))
			}
		}
	}
}
