package lora

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distillery/distillery/model"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

var testIDs = [][]int{{1, 5, 9, 2, 33}, {63, 0, 7}}

func logits(t *testing.T, m *model.Model) [][][]float32 {
	t.Helper()
	out, err := m.Logits(testIDs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// maxDiff is the largest absolute difference between two logit sets.
func maxDiff(a, b [][][]float32) float64 {
	var d float64
	for i := range a {
		for j := range a[i] {
			for k := range a[i][j] {
				d = max(d, math.Abs(float64(a[i][j][k]-b[i][j][k])))
			}
		}
	}
	return d
}

func baseModel(t *testing.T, mc *model.Config, w map[string][]float32) *model.Model {
	t.Helper()
	m, err := model.New(mc, w, model.WeightShapes(mc), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func adapterModel(t *testing.T, a *Adapter, mc *model.Config, w map[string][]float32, opts model.LoadOptions) *model.Model {
	t.Helper()
	m, err := a.Model(mc, w, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A fresh adapter (lora_B zero, modules to save copied) leaves the model's
// logits exactly as they were.
func TestFreshAdapterIsIdentity(t *testing.T) {
	mc := tinyConfig(true)
	base := model.RandomWeights(mc, 1, 0.1)
	a, err := New(Config{Rank: 4, Alpha: 8, TargetModules: []string{AllLinear}, ModulesToSave: []string{"lm_head"}}, mc, 2, base)
	if err != nil {
		t.Fatal(err)
	}
	want := logits(t, baseModel(t, mc, base))
	if d := maxDiff(logits(t, adapterModel(t, a, mc, base, model.LoadOptions{})), want); d != 0 {
		t.Fatalf("fresh adapter changes logits by %g", d)
	}
}

// The merged weights give the logits of base + adapter, and unmerging
// gives the base back.
func TestMergeMatchesAdapter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tied   bool
		cfg    Config
		export bool // check through ExportMerged and model.Load
	}{
		{"q_v", false, Config{Rank: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj"}}, false},
		{"all-linear rslora lm_head tied", true, Config{Rank: 3, Alpha: 6, RSLoRA: true, TargetModules: []string{AllLinear}, ModulesToSave: []string{"lm_head"}}, true},
		{"embed_tokens tied", true, Config{Rank: 2, Alpha: 2, TargetModules: []string{"o_proj", "down_proj"}, ModulesToSave: []string{"embed_tokens"}}, false},
		{"both untied", false, Config{Rank: 2, Alpha: 4, TargetModules: []string{"k_proj", "gate_proj", "up_proj"}, ModulesToSave: []string{"embed_tokens", "lm_head"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := tinyConfig(tc.tied)
			base := model.RandomWeights(mc, 5, 0.1)
			keep := map[string][]float32{}
			for n, v := range base {
				keep[n] = slices.Clone(v)
			}
			a, err := New(tc.cfg, mc, 9, base)
			if err != nil {
				t.Fatal(err)
			}
			perturb(t, a, 11)
			want := logits(t, adapterModel(t, a, mc, base, model.LoadOptions{}))
			if d := maxDiff(want, logits(t, baseModel(t, mc, base))); d < 1e-3 {
				t.Fatalf("the perturbed adapter hardly changes the logits (%g): the test would prove nothing", d)
			}

			merged, err := a.Merge(base)
			if err != nil {
				t.Fatal(err)
			}
			var got [][][]float32
			if tc.export {
				dir := filepath.Join(t.TempDir(), "merged")
				if err := a.ExportMerged(dir, base, model.F32); err != nil {
					t.Fatal(err)
				}
				m, err := model.Load(dir, model.LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if m.Config.TieWordEmbeddings {
					t.Error("exported config is still tied")
				}
				got = logits(t, m)
			} else {
				mmc := a.MergedConfig()
				got = logits(t, baseModel(t, mmc, merged))
			}
			if d := maxDiff(got, want); d > 1e-4 {
				t.Fatalf("merged logits differ from base+adapter by %g", d)
			}

			for n, v := range base {
				if !slices.Equal(v, keep[n]) {
					t.Fatalf("Merge modified base %s", n)
				}
			}
			back, err := a.Unmerge(merged, base)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != len(base) {
				t.Fatalf("unmerged has %d weights, base %d", len(back), len(base))
			}
			for n, v := range base {
				for i := range v {
					if d := math.Abs(float64(back[n][i] - v[i])); d > 1e-6 {
						t.Fatalf("unmerge %s[%d]: off by %g", n, i, d)
					}
				}
			}
			// A tied model's lm_head copy is dropped; any other module to
			// save needs its original.
			needsOriginal := slices.ContainsFunc(a.Saved(), func(n string) bool { return n != "lm_head.weight" || !tc.tied })
			if _, err := a.Unmerge(merged, nil); needsOriginal != (err != nil) {
				t.Errorf("Unmerge without originals: error %v, want one: %v", err, needsOriginal)
			}
		})
	}
}

// Params calls dropout on the input of each adapter, and the gradients
// follow PEFT's: with lora_B zero, lora_A gets none and lora_B some.
func TestParamsDropoutAndGradients(t *testing.T) {
	mc := tinyConfig(false)
	base := model.RandomWeights(mc, 1, 0.1)
	a, err := New(Config{Rank: 2, Alpha: 4, Dropout: 0.1, TargetModules: []string{"v_proj", "up_proj"}, ModulesToSave: []string{"lm_head"}}, mc, 3, base)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := model.NewBackend("")
	if err != nil {
		t.Fatal(err)
	}
	baseNames := slices.Sorted(func(yield func(string) bool) {
		for n := range base {
			if !yield(n) {
				return
			}
		}
	})
	names := a.Names()
	ws := model.WeightShapes(mc)
	var args []any
	for _, n := range baseNames {
		args = append(args, tensors.FromFlatDataAndDimensions(base[n], ws[n]...))
	}
	for _, n := range names {
		args = append(args, tensors.FromFlatDataAndDimensions(a.Values()[n], a.Shapes()[n]...))
	}
	ids := []int32{1, 2, 3, 4}
	args = append(args, tensors.FromFlatDataAndDimensions(ids, 1, 4), tensors.FromFlatDataAndDimensions([]int32{0, 1, 2, 3}, 1, 4))
	var calls int
	var rates []float64
	exec, err := graph.NewExec(backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
		calls = 0
		p := model.PlainParams{}
		for i, n := range baseNames {
			p[n] = in[i]
		}
		tr := map[string]*graph.Node{}
		for i, n := range names {
			tr[n] = in[len(baseNames)+i]
		}
		drop := func(x *graph.Node, rate float64) *graph.Node {
			calls++
			rates = append(rates, rate)
			return graph.MulScalar(x, 1) // a stand-in: the trainer brings the real dropout
		}
		k := len(baseNames) + len(names)
		out, _ := model.Forward(mc, a.Params(p, tr, drop), model.Inputs{IDs: in[k], Positions: in[k+1]})
		loss := graph.ReduceAllSum(graph.Square(out))
		grads := graph.Gradient(loss, in[len(baseNames):k]...)
		return append([]*graph.Node{loss}, grads...)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(a.Modules()) || rates[0] != 0.1 {
		t.Fatalf("dropout called %d times with %v, want %d times with 0.1", calls, rates, len(a.Modules()))
	}
	for i, n := range names {
		g := tensors.MustCopyFlatData[float32](out[1+i])
		var norm float64
		for _, v := range g {
			norm += float64(v) * float64(v)
		}
		if wantZero := strings.HasSuffix(n, ".lora_A.weight"); wantZero != (norm == 0) {
			t.Errorf("%s: gradient norm² %g", n, norm)
		}
	}
}

// The adapter runs in a bf16 model: adapter nodes follow x's dtype.
func TestBF16(t *testing.T) {
	mc := tinyConfig(true)
	base := model.RandomWeights(mc, 1, 0.1)
	a, err := New(Config{Rank: 2, Alpha: 4, TargetModules: []string{"q_proj", "down_proj"}, ModulesToSave: []string{"embed_tokens"}}, mc, 3, base)
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, a, 4)
	f32 := logits(t, adapterModel(t, a, mc, base, model.LoadOptions{}))
	bf16 := logits(t, adapterModel(t, a, mc, base, model.LoadOptions{DType: "bf16"}))
	if d := maxDiff(f32, bf16); d > 0.1 {
		t.Fatalf("bf16 logits differ from f32 by %g", d)
	}
}
