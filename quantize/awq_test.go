package quantize

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
)

// TestLosses checks the backend's quadratic forms against host loops.
func TestLosses(t *testing.T) {
	l, err := newLosses(testBackend(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.finalize()
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, n, g = 5, 12, 4
	e := make([]float32, rows*n)
	gr := make([]float32, n*n)
	for i := range e {
		e[i] = float32(rng.NormFloat64())
	}
	for i := range gr {
		gr[i] = float32(rng.NormFloat64())
	}
	var want float64
	for r := range rows {
		for a := range n {
			for b := range n {
				want += float64(e[r*n+a]) * float64(gr[a*n+b]) * float64(e[r*n+b])
			}
		}
	}
	got, err := l.quadSum(e, rows, n, tensors.FromFlatDataAndDimensions(gr, n, n))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want) > 1e-3*math.Abs(want)+1e-4 {
		t.Errorf("quadSum %v, want %v", got, want)
	}
	st := &inputStat{dim: n, gram: gr}
	errs, err := l.blockErrs(e, rows, n/g, g, gramBlocks(st, nil, g))
	if err != nil {
		t.Fatal(err)
	}
	for gi := range n / g {
		for r := range rows {
			var w float64
			for a := range g {
				for b := range g {
					ca, cb := gi*g+a, gi*g+b
					w += float64(e[r*n+ca]) * float64(gr[ca*n+cb]) * float64(e[r*n+cb])
				}
			}
			if got := float64(errs[gi*rows+r]); math.Abs(got-w) > 1e-4*(1+math.Abs(w)) {
				t.Errorf("block (%d, %d) = %v, want %v", gi, r, got, w)
			}
		}
	}
}

// TestCalibrationStats compares the statistics of layer 0's q/k/v input
// (RMSNorm of the embeddings, computable on the host) with calibrate's,
// on sequences of different lengths (padding must not count).
func TestCalibrationStats(t *testing.T) {
	cfg := testConfig("llama", 64, 128)
	w := randomWeights(cfg, 3)
	m := newModel(t, cfg, w)
	seqs := [][]int{{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, {7}}
	stats, err := calibrate(context.Background(), m, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.HiddenSize
	abs := make([]float64, d)
	gram := make([]float64, d*d)
	tokens := 0
	for _, s := range seqs {
		for _, id := range s {
			x := w["model.embed_tokens.weight"][id*d : (id+1)*d]
			var ms float64
			for _, v := range x {
				ms += float64(v) * float64(v)
			}
			r := math.Sqrt(ms/float64(d) + cfg.RMSNormEps)
			h := make([]float64, d)
			for i, v := range x {
				h[i] = float64(v) / r * float64(w["model.layers.0.input_layernorm.weight"][i])
				abs[i] += math.Abs(h[i])
			}
			for a := range d {
				for b := range d {
					gram[a*d+b] += h[a] * h[b]
				}
			}
			tokens++
		}
	}
	st := stats[0][inAttn]
	if st.tokens != tokens {
		t.Fatalf("tokens %d, want %d", st.tokens, tokens)
	}
	for i := range abs {
		if math.Abs(st.absSum[i]-abs[i]) > 1e-4*(1+abs[i]) {
			t.Fatalf("absSum[%d] = %v, want %v", i, st.absSum[i], abs[i])
		}
	}
	for i := range gram {
		if math.Abs(float64(st.gram[i])-gram[i]) > 1e-4*(1+math.Abs(gram[i])) {
			t.Fatalf("gram[%d] = %v, want %v", i, st.gram[i], gram[i])
		}
	}
	if stats[1][inDown].dim != cfg.IntermediateSize || stats[1][inO].dim != cfg.NumAttentionHeads*cfg.HeadDim {
		t.Errorf("dims %d %d", stats[1][inDown].dim, stats[1][inO].dim)
	}
}

// TestFoldScalesPreservesFunction folds random scales into every group of
// every layer (GQA v_proj -> o_proj included, q/k/v biases, QK-norm) and
// checks the model computes the same logits.
func TestFoldScalesPreservesFunction(t *testing.T) {
	for _, kind := range []string{"llama", "qwen2", "qwen3"} {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(kind, 64, 128)
			w := randomWeights(cfg, 5)
			ref := logits(t, newModel(t, cfg, w), randomSeqs(2, 24, cfg.VocabSize, 5))
			rng := rand.New(rand.NewPCG(9, 9))
			draw := func(n int) []float32 {
				s := make([]float32, n)
				for i := range s {
					s[i] = float32(math.Exp(rng.NormFloat64()))
				}
				return s
			}
			for l := range cfg.NumHiddenLayers {
				// o_proj's scales must be equal across the query heads of a KV head.
				sv := draw(cfg.NumKeyValueHeads * cfg.HeadDim)
				sO := make([]float32, cfg.NumAttentionHeads*cfg.HeadDim)
				for c, t := range headTie(cfg) {
					sO[c] = sv[t]
				}
				foldScales(cfg, w, l, draw(cfg.HiddenSize), sO, draw(cfg.HiddenSize), draw(cfg.IntermediateSize))
			}
			got := logits(t, newModel(t, cfg, w), randomSeqs(2, 24, cfg.VocabSize, 5))
			if _, rel := gap(got, ref); rel > 1e-4 {
				t.Errorf("folding scales changed the logits: relative %.3g", rel)
			}
		})
	}
}

// outlierWeights is a random model whose RMSNorm weights blow up a few
// input channels (×40) of q/k/v and gate/up in every layer, the
// activation outliers AWQ is designed for.
func outlierWeights(cfg *model.Config, seed uint64) (map[string][]float32, []int) {
	w := randomWeights(cfg, seed)
	channels := []int{5, 77}
	for l := range cfg.NumHiddenLayers {
		for _, n := range []string{"input_layernorm", "post_attention_layernorm"} {
			for _, c := range channels {
				w[fmt.Sprintf("model.layers.%d.%s.weight", l, n)][c] *= 40
			}
		}
	}
	return w, channels
}

// TestOutlierChannel injects large activations in two input channels and
// checks AWQ protects their weights where RTN does not: the error of the
// effective q/k/gate weights on those columns (v and up are left out: their
// rows also carry the scales of o_proj and down_proj), the layer output MSE,
// and the divergence of the logits from the fp model.
func TestOutlierChannel(t *testing.T) {
	cfg := testConfig("llama", 128, 256)
	w, outliers := outlierWeights(cfg, 11)
	fp := newModel(t, cfg, w)
	calib := randomSeqs(16, 64, cfg.VocabSize, 12)
	eval := randomSeqs(4, 64, cfg.VocabSize, 13)
	lf := logits(t, fp, eval)
	type outcome struct {
		colErr, otherErr float64 // relative error of outlier / other columns of the effective weights
		kl               float64
		res              *Result
	}
	run := func(method string) outcome {
		res, err := Quantize(context.Background(), fp, calib, Options{Method: method, GroupSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := res.Save(dir); err != nil {
			t.Fatal(err)
		}
		_, qw := independentDequant(t, dir)
		var o outcome
		o.res = res
		var num, den, onum, oden float64
		for l := range cfg.NumHiddenLayers {
			for norm, mods := range map[string][]string{"input_layernorm": {"self_attn.q_proj", "self_attn.k_proj"}, "post_attention_layernorm": {"mlp.gate_proj"}} {
				nname := fmt.Sprintf("model.layers.%d.%s.weight", l, norm)
				for _, mod := range mods {
					name := fmt.Sprintf("model.layers.%d.%s.weight", l, mod)
					orig, q := w[name], qw[name]
					in := cfg.HiddenSize
					for r := range len(orig) / in {
						for c := range in {
							// the function's weight on the normalised input: W·diag(norm)
							want := float64(orig[r*in+c]) * float64(w[nname][c])
							got := float64(q[r*in+c]) * float64(qw[nname][c])
							isOut := c == outliers[0] || c == outliers[1]
							if isOut {
								num += (got - want) * (got - want)
								den += want * want
							} else {
								onum += (got - want) * (got - want)
								oden += want * want
							}
						}
					}
				}
			}
		}
		o.colErr, o.otherErr = math.Sqrt(num/den), math.Sqrt(onum/oden)
		m, err := res.Model(fpOpts(t))
		if err != nil {
			t.Fatal(err)
		}
		o.kl = meanKL(lf, logits(t, m, eval))
		return o
	}
	rtn, awq := run(MethodRTN), run(MethodAWQ)
	t.Logf("outlier columns: relative weight error RTN %.4f, AWQ %.4f; other columns RTN %.4f, AWQ %.4f", rtn.colErr, awq.colErr, rtn.otherErr, awq.otherErr)
	t.Logf("KL(fp || quantized) per token: RTN %.5f, AWQ %.5f", rtn.kl, awq.kl)
	for _, g := range awq.res.Groups {
		t.Logf("  %-42s alpha %.2f  output MSE RTN %.4g -> AWQ %.4g", g.Prev, g.Alpha, g.MSERTN, g.MSEAWQ)
	}
	if awq.colErr*2 > rtn.colErr {
		t.Errorf("AWQ does not protect the outlier channels: relative error %.4f vs RTN %.4f", awq.colErr, rtn.colErr)
	}
	if awq.kl >= rtn.kl {
		t.Errorf("AWQ's KL to fp %.5f is not below RTN's %.5f", awq.kl, rtn.kl)
	}
	for _, g := range awq.res.Groups {
		if g.MSEAWQ > g.MSERTN {
			t.Errorf("%s: AWQ's output MSE %.4g exceeds RTN's %.4g", g.Prev, g.MSEAWQ, g.MSERTN)
		}
	}
}

// meanKL is the mean over positions of KL(softmax(p) || softmax(q)).
func meanKL(p, q [][][]float32) float64 {
	var sum float64
	n := 0
	for i := range p {
		for j := range p[i] {
			lp, lq := model.LogProbs(p[i][j]), model.LogProbs(q[i][j])
			for k := range lp {
				sum += math.Exp(float64(lp[k])) * float64(lp[k]-lq[k])
			}
			n++
		}
	}
	return sum / float64(n)
}

// TestScaleSearchCandidates runs the scale search on synthetic groups and
// checks it beats RTN's output MSE by half. With flat activations (every
// |x| = 1) the plain candidates x^α are all RTN, so only AutoAWQ's duo
// candidates x^α / w^(1-α), which shrink a heavy weight column that sets
// its groups' ranges, can win: those cases fail if duo is not searched.
func TestScaleSearchCandidates(t *testing.T) {
	l, err := newLosses(testBackend(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.finalize()
	const n, out, tokens, g = 64, 32, 256, 32
	cases := []struct {
		name    string
		xBig    map[int]float32 // input channel -> |x| (others 1)
		wBig    map[int]float32 // weight column -> factor
		tie     bool            // GQA: channel c shares the scale of c mod n/2
		wantDuo bool
	}{
		{name: "activation outlier", xBig: map[int]float32{5: 30}},
		{name: "heavy weight column, flat activations", wBig: map[int]float32{3: 20, 40: 20}, wantDuo: true},
		{name: "heavy weight column, GQA-tied scales", wBig: map[int]float32{3: 20, 3 + n/2: 20}, tie: true, wantDuo: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, 22))
			st := &inputStat{dim: n, absSum: make([]float64, n), gram: make([]float32, n*n), tokens: tokens}
			x := make([]float32, n)
			for range tokens {
				for c := range x {
					m := float32(1)
					if v, ok := tc.xBig[c]; ok {
						m = v
					}
					if rng.IntN(2) == 0 {
						m = -m
					}
					x[c] = m
					st.absSum[c] += math.Abs(float64(m))
				}
				for a := range n {
					for b := range n {
						st.gram[a*n+b] += x[a] * x[b]
					}
				}
			}
			w := make([]float32, out*n)
			for i := range w {
				w[i] = float32(rng.NormFloat64())
				if f, ok := tc.wBig[i%n]; ok {
					w[i] *= f
				}
			}
			var tie []int
			if tc.tie {
				tie = make([]int, n)
				for c := range tie {
					tie[c] = c % (n / 2)
				}
			}
			q := &quantizer{opts: Options{GroupSize: g, Grid: 20}, loss: l}
			s, rep, err := q.scaleSearch([]member{{name: "m", w: w, out: out, in: n, quantize: true}}, st, tie)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("alpha %.2f duo %v: output MSE RTN %.4g -> AWQ %.4g", rep.Alpha, rep.Duo, rep.MSERTN, rep.MSEAWQ)
			if !(rep.MSEAWQ < 0.5*rep.MSERTN) {
				t.Errorf("AWQ's output MSE %.4g is not below half of RTN's %.4g", rep.MSEAWQ, rep.MSERTN)
			}
			if tc.wantDuo && !rep.Duo {
				t.Errorf("chose the plain scales at alpha %.2f, want duo scaling", rep.Alpha)
			}
			for c, k := range tie {
				if s[c] != s[k] {
					t.Errorf("tied channels %d and %d have scales %v and %v", c, k, s[c], s[k])
				}
			}
		})
	}
}
