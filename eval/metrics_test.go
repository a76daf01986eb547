package eval

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/distillery/distillery/routes"
)

func near(t *testing.T, name string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-4 {
		t.Errorf("%s = %.6f, want %.6f", name, got, want)
	}
}

func TestClassify(t *testing.T) {
	in := ClassInput{
		Labels:  []string{"a", "b", "c"},
		Gold:    []string{"a", "a", "a", "b", "b", "c"},
		Pred:    []string{"a", "a", "b", "b", "", "c"},
		Teacher: []string{"a", "a", "b", "b", "b", ""},
	}
	m, err := Classify(in)
	if err != nil {
		t.Fatal(err)
	}
	// Hand-computed: confusion a→{a:2,b:1}, b→{b:1,unparsed:1}, c→{c:1}.
	near(t, "accuracy", m.Accuracy, 4.0/6)
	// F1: a: P 1, R 2/3 → 0.8; b: P 1/2, R 1/2 → 0.5; c: 1.
	near(t, "macro_f1", m.MacroF1, (0.8+0.5+1)/3)
	wantPL := []LabelMetrics{{"a", 3, 2, 1, 2.0 / 3, 0.8}, {"b", 2, 2, 0.5, 0.5, 0.5}, {"c", 1, 1, 1, 1, 1}}
	for i, w := range wantPL {
		g := m.PerLabel[i]
		if g.Label != w.Label || g.Support != w.Support || g.Predicted != w.Predicted {
			t.Errorf("per_label[%d] = %+v, want %+v", i, g, w)
		}
		near(t, w.Label+" precision", g.Precision, w.Precision)
		near(t, w.Label+" recall", g.Recall, w.Recall)
		near(t, w.Label+" f1", g.F1, w.F1)
	}
	wantCM := [][]int{{2, 1, 0, 0}, {0, 1, 0, 1}, {0, 0, 1, 0}}
	for i := range wantCM {
		for j := range wantCM[i] {
			if m.Confusion.Counts[i][j] != wantCM[i][j] {
				t.Fatalf("confusion %v, want %v", m.Confusion.Counts, wantCM)
			}
		}
	}
	if m.Confusion.Columns[3] != UnparsedColumn || m.Unparsed != 1 || m.N != 6 {
		t.Errorf("columns %v unparsed %d n %d", m.Confusion.Columns, m.Unparsed, m.N)
	}
	// Agreement: examples 0-3 agree, 4 ("" vs b) and 5 (c vs "") do not.
	near(t, "agreement", *m.TeacherAgreement, 4.0/6)
	if m.ECE != nil || m.KL != nil || m.Reliability != nil {
		t.Errorf("no distributions, yet ECE %v KL %v", m.ECE, m.KL)
	}

	// A label that never occurs stays out of the macro average.
	in.Labels = append(in.Labels, "d")
	m2, err := Classify(in)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "macro_f1 with an absent label", m2.MacroF1, m.MacroF1)
	// Both unparsed counts as agreement.
	m3, _ := Classify(ClassInput{Labels: []string{"a", "b"}, Gold: []string{"a"}, Pred: []string{"zzz"}, Teacher: []string{""}})
	near(t, "unparsed agreement", *m3.TeacherAgreement, 1)
}

func TestClassifyDistributions(t *testing.T) {
	in := ClassInput{
		Labels: []string{"x", "y"},
		Gold:   []string{"x", "x", "y", "y"},
		Pred:   []string{"x", "y", "y", ""},
		// Row 3 has mass on no label; row 2 is unnormalised (sums to 2).
		PredDist:    [][]float64{{0.9, 0.1}, {0.3, 0.7}, {0.4, 1.6}, {0.2, 0.2, 0.6}},
		TeacherDist: [][]float64{{0.9, 0.1}, {0.5, 0.5, 0}, {0, 1}, {0.5, 0.5}},
	}
	m, err := Classify(in)
	if err != nil {
		t.Fatal(err)
	}
	// Confidences 0.9 (right), 0.7 (wrong), 0.8 (right), 0.2 (wrong):
	// bins 9, 7, 8, 2; ECE = (0.1 + 0.7 + 0.2 + 0.2)/4 = 0.3.
	near(t, "ece", *m.ECE, 0.3)
	if b := m.Reliability[7]; b.Count != 1 || b.Accuracy != 0 || math.Abs(b.Confidence-0.7) > 1e-12 {
		t.Errorf("bin 7 = %+v", b)
	}
	// KL: 0 for row 0; row 1 KL([.5,.5,0]‖[.3,.7,0]); row 2 KL([0,1,0]‖[.2,.8,0]);
	// row 3 KL([.5,.5,0]‖[.2,.2,.6]).
	k1 := 0.5*math.Log(0.5/0.3) + 0.5*math.Log(0.5/0.7)
	k2 := math.Log(1 / 0.8)
	k3 := 2 * 0.5 * math.Log(0.5/0.2)
	near(t, "kl", *m.KL, (k1+k2+k3)/4)
}

func TestClassifyErrors(t *testing.T) {
	base := func() ClassInput {
		return ClassInput{Labels: []string{"a", "b"}, Gold: []string{"a", "b"}, Pred: []string{"a", "b"}}
	}
	for _, tc := range []struct {
		name string
		mod  func(*ClassInput)
		want string
	}{
		{"no labels", func(in *ClassInput) { in.Labels = nil }, "empty label set"},
		{"lengths", func(in *ClassInput) { in.Pred = in.Pred[:1] }, "1 answers for 2"},
		{"gold outside", func(in *ClassInput) { in.Gold[1] = "c" }, `"c" of example 1`},
		{"dup label", func(in *ClassInput) { in.Labels = []string{"a", "a"} }, "twice"},
		{"dist width", func(in *ClassInput) { in.PredDist = [][]float64{{1}, {1, 0}} }, "example 0 has 1 entries"},
		{"dist nan", func(in *ClassInput) { in.PredDist = [][]float64{{math.NaN(), 1}, {1, 0}} }, "NaN"},
		{"dist zero", func(in *ClassInput) { in.PredDist = [][]float64{{0, 0}, {1, 0}} }, "sums to 0"},
		{"teacher dists", func(in *ClassInput) { in.TeacherDist = [][]float64{{1, 0}} }, "1 teacher distributions"},
	} {
		in := base()
		tc.mod(&in)
		if _, err := Classify(in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestKL(t *testing.T) {
	for _, tc := range []struct {
		p, q []float64
		want float64
	}{
		{[]float64{0.5, 0.5}, []float64{0.5, 0.5}, 0},
		{[]float64{1, 0}, []float64{0.5, 0.5}, math.Ln2},
		{[]float64{1, 0}, []float64{0, 1}, math.Log(1e6)}, // the smoothing bounds it
		{[]float64{0.25, 0.75}, []float64{0.5, 0.5}, 0.25*math.Log(0.5) + 0.75*math.Log(1.5)},
	} {
		near(t, "KL", KL(tc.p, tc.q), tc.want)
	}
}

func TestCalibration(t *testing.T) {
	conf := []float64{0.95, 0.85, 0.85, 0.55, 0.25, 1.0, 0}
	ok := []bool{true, true, false, true, false, true, false}
	ece, bins := Calibration(conf, ok)
	// bins: 9 {0.95 ✓, 1.0 ✓}, 8 {0.85 ✓, 0.85 ✗}, 5 {0.55 ✓}, 2 {0.25 ✗}, 0 {0 ✗}.
	// |acc-conf|·count: 9: 0.025·2, 8: 0.35·2, 5: 0.45, 2: 0.25, 0: 0.
	near(t, "ece", ece, (0.05+0.7+0.45+0.25)/7)
	if len(bins) != Bins || bins[9].Count != 2 || bins[0].Count != 1 || bins[3].Count != 0 {
		t.Errorf("bins %+v", bins)
	}
	near(t, "bin 9 confidence", bins[9].Confidence, 0.975)
	near(t, "bin 8 accuracy", bins[8].Accuracy, 0.5)
	if bins[3].Lo != 0.3 || bins[3].Hi != 0.4 {
		t.Errorf("bin 3 edges %v %v", bins[3].Lo, bins[3].Hi)
	}
	if e, _ := Calibration(nil, nil); e != 0 {
		t.Errorf("empty ECE %v", e)
	}
}

func TestCalibrateThreshold(t *testing.T) {
	conf := []float64{0.9, 0.8, 0.8, 0.7, 0.6, 0.5}
	ok := []bool{true, true, false, true, true, false}
	// Kept from the top: 0.9 → 1/1; 0.8 → 2/3; 0.7 → 3/4; 0.6 → 4/5; 0.5 → 4/6.
	for _, tc := range []struct {
		name          string
		conf          []float64
		ok            []bool
		target        float64
		th, prec, cov float64
	}{
		{"lowest qualifying", conf, ok, 0.75, 0.6, 0.8, 5.0 / 6},
		{"exact target", conf, ok, 0.8, 0.6, 0.8, 5.0 / 6},
		{"strict", conf, ok, 0.81, 0.9, 1, 1.0 / 6},
		{"everything", conf, ok, 0.5, 0.5, 4.0 / 6, 1},
		{"zero target keeps all", conf, ok, 0, 0.5, 4.0 / 6, 1},
		{"unreachable", []float64{0.9, 0.5}, []bool{false, false}, 0.5, routes.Escalate, 0, 0},
		{"tie cannot split", []float64{0.9, 0.9, 0.3}, []bool{true, false, true}, 0.9, routes.Escalate, 0, 0},
		{"empty", nil, nil, 0.9, routes.Escalate, 0, 0},
		{"nan never kept", []float64{math.NaN(), 0.7}, []bool{true, true}, 0.9, 0.7, 1, 0.5},
	} {
		th, prec, cov := CalibrateThreshold(tc.conf, tc.ok, tc.target)
		if math.Abs(th-tc.th) > 1e-12 || math.Abs(prec-tc.prec) > 1e-12 || math.Abs(cov-tc.cov) > 1e-12 {
			t.Errorf("%s: got (%v, %v, %v), want (%v, %v, %v)", tc.name, th, prec, cov, tc.th, tc.prec, tc.cov)
		}
	}
}

func TestGenerationMetrics(t *testing.T) {
	for _, tc := range []struct {
		pred, ref string
		em        bool
		f1, rouge float64
	}{
		{" Hello   world\n", "Hello world", true, 1, 1},
		{"hello world", "Hello world", false, 1, 0.5}, // F1 lower-cases, ROUGE-L does not
		// SQuAD: articles and punctuation go: [cat sat] vs [cat sat on mat] → P 1, R 1/2.
		// ROUGE-L: [The cat sat.] vs [a cat sat on the mat]: LCS "cat" → P 1/3, R 1/6.
		{"The cat sat.", "a cat sat on the mat", false, 2.0 / 3, 2 * (1.0 / 3) * (1.0 / 6) / (1.0/3 + 1.0/6)},
		// LCS the cat on the mat = 5 of 6 each.
		// SQuAD: [cat sat on mat] vs [cat is on mat] → 3 of 4 each.
		{"the cat sat on the mat", "the cat is on the mat", false, 0.75, 5.0 / 6},
		{"x x y", "x y y", false, 2.0 / 3, 2.0 / 3},
		// SQuAD drops the article "a": [b c d] vs [b d] → P 2/3, R 1; ROUGE-L keeps it: P 1/2, R 1.
		{"a b c d", "b d", false, 0.8, 2.0 / 3},
		{"don't", "dont", false, 1, 0},
		{"", "", true, 1, 1},
		{"the", "", false, 1, 0}, // nothing left after normalisation on either side
		{"x", "", false, 0, 0},
		// SQuAD: [1] ("a" is an article) vs [a1].
		{`{"a": 1}`, `{"a":1}`, false, 0, 0},
	} {
		if got := ExactMatch(tc.pred, tc.ref); got != tc.em {
			t.Errorf("ExactMatch(%q, %q) = %v", tc.pred, tc.ref, got)
		}
		near(t, "TokenF1("+tc.pred+", "+tc.ref+")", TokenF1(tc.pred, tc.ref), tc.f1)
		near(t, "RougeL("+tc.pred+", "+tc.ref+")", RougeL(tc.pred, tc.ref), tc.rouge)
	}
	// Articles inside words stay; articles next to non-ASCII punctuation go.
	if got := squadTokens("Theatre an—the ANd"); strings.Join(got, "|") != "theatre|—|and" {
		t.Errorf("squadTokens = %q", got)
	}
	near(t, "perplexity", Perplexity([]float64{math.Log(0.5), math.Log(0.25)}), math.Sqrt(8))

	m, err := ScoreGeneration(GenInput{Ref: []string{"a b", "c"}, Pred: []string{"a b", "d"}, LogProbs: [][]float64{{math.Log(0.5)}, {math.Log(0.25)}}})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "mean exact match", m.ExactMatch, 0.5)
	near(t, "mean rouge", m.RougeL, 0.5)
	near(t, "pooled perplexity", *m.Perplexity, math.Sqrt(8))
	if m.Tokens != 2 || m.N != 2 {
		t.Errorf("tokens %d n %d", m.Tokens, m.N)
	}
	if _, err := ScoreGeneration(GenInput{Ref: []string{"a"}, Pred: []string{"a"}, LogProbs: [][]float64{{0.5}}}); err == nil {
		t.Error("positive log-probability accepted")
	}
	if m, _ := ScoreGeneration(GenInput{Ref: []string{"a"}, Pred: []string{"a"}, LogProbs: [][]float64{{-1000}}}); m.Perplexity != nil {
		t.Errorf("overflowing perplexity %v, want null", *m.Perplexity)
	}
}

func TestLatencyAndCost(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	s, err := Latency(ms(40, 10, 100, 30, 20), []int{10, 10, 10, 10, 10})
	if err != nil {
		t.Fatal(err)
	}
	// Sorted 10 20 30 40 100: p95 rank 3.8 → 40 + 0.8·60.
	near(t, "mean", s.MeanMS, 40)
	near(t, "p50", s.P50MS, 30)
	near(t, "p95", s.P95MS, 88)
	near(t, "max", s.MaxMS, 100)
	near(t, "tokens/s", s.TokensPerSec, 250) // 50 tokens in 0.2 s
	if one, _ := Latency(ms(7), nil); one.P50MS != 7 || one.P95MS != 7 || one.TokensPerSec != 0 {
		t.Errorf("one request: %+v", one)
	}
	if _, err := Latency(ms(1, 2), []int{1}); err == nil {
		t.Error("mismatched token counts accepted")
	}
	near(t, "usd/Mtok", USDPerMTok(3.6, 1000), 1) // $3.60/h at 1000 tok/s = 3.6M tok/h
	near(t, "usd/Mtok unknown", USDPerMTok(0, 1000), 0)
	near(t, "teacher/1M req", TeacherUSDPer1MRequests(200, 5, routes.Price{InputPerMTok: 0.15, OutputPerMTok: 0.6}), 33)
	near(t, "student/1M req", StudentUSDPer1MRequests(205, 1), 205)
}

func TestGate(t *testing.T) {
	g := Gate{Metric: "accuracy", MinParity: 0.95, MaxInt4Drop: 0.01}
	int4 := 0.89
	res, err := g.Check(Scores{Student: 0.912, Teacher: 1, Int4: &int4})
	var ge *GateError
	if !errors.As(err, &ge) || len(ge.Failed) != 2 || len(res) != 2 {
		t.Fatalf("got %v %+v", err, res)
	}
	want := "quality gate failed: student/teacher accuracy 0.912 < 0.95 (short by 0.038); int4 accuracy drop 0.022 > 0.01 (over by 0.012)"
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	near(t, "margin", res[0].Margin, -0.038)
	near(t, "drop", res[1].Value, 0.022)

	// 0.893/0.94 is 0.95 on paper: it passes despite rounding.
	res, err = g.Check(Scores{Student: 0.893, Teacher: 0.94})
	if err != nil || len(res) != 1 || !res[0].Pass {
		t.Errorf("at the threshold: %v %+v", err, res)
	}
	if res, err := g.Check(Scores{Student: 0, Teacher: 0}); err != nil || res[0].Value != 1 {
		t.Errorf("teacher 0: %v %+v", err, res)
	}
	if _, err := g.Check(Scores{Student: math.NaN(), Teacher: 1}); err == nil || errors.As(err, &ge) {
		t.Errorf("NaN score: %v", err)
	}
}
