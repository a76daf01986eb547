package eval

import (
	"fmt"
	"math"
)

// UnparsedColumn names the confusion-matrix column of answers that parse to
// no label.
const UnparsedColumn = "(unparsed)"

// KLEps is the smoothing of KL(teacher‖student): both distributions are
// renormalised, then each entry p becomes (p + KLEps) / (1 + K·KLEps) over
// their K entries, so a zero in the student's distribution costs at most
// log(1/KLEps) ≈ 13.8 nats instead of infinity.
const KLEps = 1e-6

// Bins is the number of equal-width confidence bins of ECE and the
// reliability diagram.
const Bins = 10

// ClassInput holds parallel slices, one entry per example.
type ClassInput struct {
	// Labels is the label set, in recipe order.
	Labels []string
	// Gold is the reference label of each example; each must be in Labels.
	Gold []string
	// Pred is the model's parsed answer; a value outside Labels (such as
	// "") is an answer that parsed to no label.
	Pred []string
	// PredDist (optional) is the model's probability of each label, in the
	// order of Labels, optionally followed by one entry for the mass on no
	// label (datasets.OtherLabel). Rows are renormalised to sum to 1.
	PredDist [][]float64
	// Teacher (optional) is the teacher's parsed answer, for agreement.
	Teacher []string
	// TeacherDist (optional) is the teacher's distribution, laid out as
	// PredDist, for KL(teacher‖model).
	TeacherDist [][]float64
}

// ClassMetrics are a model's classification metrics against a reference.
type ClassMetrics struct {
	N        int     `json:"n" doc:"Examples scored."`
	Accuracy float64 `json:"accuracy" doc:"Share of examples whose answer is the reference label (unparsed answers are wrong)."`
	// MacroF1 is the mean F1 over the labels that occur in the reference or
	// the answers (as scikit-learn's default); a label with a zero
	// denominator scores 0.
	MacroF1   float64        `json:"macro_f1" doc:"Mean per-label F1 over the labels present in the reference or the answers."`
	Unparsed  int            `json:"unparsed" doc:"Answers that parse to no label."`
	PerLabel  []LabelMetrics `json:"per_label" doc:"Per label, in label-set order."`
	Confusion Confusion      `json:"confusion" doc:"Reference labels (rows) by answers (columns, plus unparsed)."`
	// TeacherAgreement is the share of examples where the answer equals the
	// teacher's (two unparsed answers agree); null without teacher answers.
	TeacherAgreement *float64 `json:"teacher_agreement" doc:"Share of answers equal to the teacher's (both unparsed counts as equal); null without teacher answers."`
	// KL is the mean KL(teacher‖model) in nats over the examples, with
	// KLEps smoothing; null without both distributions.
	KL *float64 `json:"kl_teacher_model" doc:"Mean KL(teacher‖model) in nats over the label distributions, smoothed with eps 1e-6; null without both distributions."`
	// ECE is the expected calibration error of the max-probability
	// confidence over Bins equal-width bins; null without PredDist.
	ECE         *float64 `json:"ece" doc:"Expected calibration error: sum over 10 equal-width bins of (count/n)·|accuracy - mean confidence|; null without distributions."`
	Reliability []Bin    `json:"reliability" doc:"The 10 bins of the reliability diagram; empty without distributions."`
}

// LabelMetrics are one label's counts and scores.
type LabelMetrics struct {
	Label     string  `json:"label" doc:"The label."`
	Support   int     `json:"support" doc:"Examples whose reference is the label."`
	Predicted int     `json:"predicted" doc:"Answers naming the label."`
	Precision float64 `json:"precision" doc:"Correct / predicted (0 when never predicted)."`
	Recall    float64 `json:"recall" doc:"Correct / support (0 when no support)."`
	F1        float64 `json:"f1" doc:"Harmonic mean of precision and recall (0 when both are 0)."`
}

// Confusion counts reference labels (rows) against answers (columns: the
// labels, then UnparsedColumn).
type Confusion struct {
	Rows    []string `json:"rows" doc:"Reference labels."`
	Columns []string `json:"columns" doc:"Answer labels, then \"(unparsed)\"."`
	Counts  [][]int  `json:"counts" doc:"counts[row][column]."`
}

// Bin is one confidence bin of the reliability diagram: confidences in
// [Lo, Hi), the last bin including 1.
type Bin struct {
	Lo         float64 `json:"lo" doc:"Lower edge (inclusive)."`
	Hi         float64 `json:"hi" doc:"Upper edge (exclusive; the last bin includes 1)."`
	Count      int     `json:"count" doc:"Examples whose confidence falls in the bin."`
	Confidence float64 `json:"confidence" doc:"Their mean confidence (0 when empty)."`
	Accuracy   float64 `json:"accuracy" doc:"Their accuracy (0 when empty)."`
}

// Classify computes the classification metrics. The confidence of an
// example is its largest label probability (after renormalising the row,
// so mass on no label lowers it); it is correct when Pred equals Gold.
func Classify(in ClassInput) (ClassMetrics, error) {
	n := len(in.Gold)
	L := len(in.Labels)
	if L == 0 {
		return ClassMetrics{}, fmt.Errorf("eval: empty label set")
	}
	if len(in.Pred) != n {
		return ClassMetrics{}, fmt.Errorf("eval: %d answers for %d reference labels", len(in.Pred), n)
	}
	for name, l := range map[string]int{"label distributions": len(in.PredDist), "teacher answers": len(in.Teacher), "teacher distributions": len(in.TeacherDist)} {
		if l != 0 && l != n {
			return ClassMetrics{}, fmt.Errorf("eval: %d %s for %d examples", l, name, n)
		}
	}
	index := make(map[string]int, L)
	for i, l := range in.Labels {
		if _, dup := index[l]; dup {
			return ClassMetrics{}, fmt.Errorf("eval: label %q appears twice", l)
		}
		index[l] = i
	}
	col := func(pred string) int {
		if j, ok := index[pred]; ok {
			return j
		}
		return L
	}
	m := ClassMetrics{N: n, Confusion: Confusion{Rows: append([]string{}, in.Labels...), Columns: append(append([]string{}, in.Labels...), UnparsedColumn)}}
	m.Confusion.Counts = make([][]int, L)
	for i := range m.Confusion.Counts {
		m.Confusion.Counts[i] = make([]int, L+1)
	}
	correct := 0
	for i, g := range in.Gold {
		r, ok := index[g]
		if !ok {
			return ClassMetrics{}, fmt.Errorf("eval: reference label %q of example %d is not in the label set", g, i)
		}
		c := col(in.Pred[i])
		m.Confusion.Counts[r][c]++
		if c == r {
			correct++
		}
		if c == L {
			m.Unparsed++
		}
	}
	if n > 0 {
		m.Accuracy = float64(correct) / float64(n)
	}
	var f1sum float64
	present := 0
	for j, l := range in.Labels {
		lm := LabelMetrics{Label: l}
		tp := m.Confusion.Counts[j][j]
		for r := 0; r < L; r++ {
			lm.Predicted += m.Confusion.Counts[r][j]
		}
		for c := 0; c <= L; c++ {
			lm.Support += m.Confusion.Counts[j][c]
		}
		lm.Precision = ratio(tp, lm.Predicted)
		lm.Recall = ratio(tp, lm.Support)
		if lm.Precision+lm.Recall > 0 {
			lm.F1 = 2 * lm.Precision * lm.Recall / (lm.Precision + lm.Recall)
		}
		if lm.Support > 0 || lm.Predicted > 0 {
			f1sum += lm.F1
			present++
		}
		m.PerLabel = append(m.PerLabel, lm)
	}
	if present > 0 {
		m.MacroF1 = f1sum / float64(present)
	}

	if in.Teacher != nil {
		agree := 0
		for i, t := range in.Teacher {
			if col(t) == col(in.Pred[i]) {
				agree++
			}
		}
		m.TeacherAgreement = ptr(ratio(agree, n))
	}

	var pred [][]float64
	if in.PredDist != nil {
		var err error
		if pred, err = normRows(in.PredDist, L, "label distribution"); err != nil {
			return ClassMetrics{}, err
		}
		conf := make([]float64, n)
		ok := make([]bool, n)
		for i, row := range pred {
			conf[i] = maxOf(row[:L])
			ok[i] = col(in.Pred[i]) == index[in.Gold[i]]
		}
		ece, bins := Calibration(conf, ok)
		m.ECE, m.Reliability = &ece, bins
	}
	if in.TeacherDist != nil && pred != nil {
		teacher, err := normRows(in.TeacherDist, L, "teacher distribution")
		if err != nil {
			return ClassMetrics{}, err
		}
		var sum float64
		for i := range teacher {
			sum += KL(teacher[i], pred[i])
		}
		m.KL = ptr(0)
		if n > 0 {
			*m.KL = sum / float64(n)
		}
	}
	return m, nil
}

// normRows checks that each row holds L or L+1 finite non-negative
// probabilities with a positive sum, and returns copies of L+1 entries
// (the last: mass on no label) that sum to 1.
func normRows(rows [][]float64, L int, what string) ([][]float64, error) {
	out := make([][]float64, len(rows))
	for i, row := range rows {
		if len(row) != L && len(row) != L+1 {
			return nil, fmt.Errorf("eval: %s of example %d has %d entries, want %d labels (+1 for no label)", what, i, len(row), L)
		}
		r := make([]float64, L+1)
		copy(r, row)
		var sum float64
		for _, p := range r {
			if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 {
				return nil, fmt.Errorf("eval: %s of example %d holds %v", what, i, p)
			}
			sum += p
		}
		if sum <= 0 {
			return nil, fmt.Errorf("eval: %s of example %d sums to 0", what, i)
		}
		for j := range r {
			r[j] /= sum
		}
		out[i] = r
	}
	return out, nil
}

// KL returns KL(p‖q) = Σ p_i log(p_i/q_i) in nats, after smoothing both
// distributions with KLEps (see KLEps). p and q must have the same length
// and each sum to 1.
func KL(p, q []float64) float64 {
	k := float64(len(p))
	var kl float64
	for i := range p {
		ps := (p[i] + KLEps) / (1 + k*KLEps)
		qs := (q[i] + KLEps) / (1 + k*KLEps)
		kl += ps * math.Log(ps/qs)
	}
	return math.Max(0, kl)
}

// Calibration returns the expected calibration error and the reliability
// bins of confidences against correctness: Bins equal-width bins over
// [0,1] (bin i holds [i/10, (i+1)/10), the last also 1; confidences
// outside [0,1] are clamped into the end bins), and
// ECE = Σ_bins (count/n)·|accuracy − mean confidence|. With no examples
// the ECE is 0.
func Calibration(confidence []float64, correct []bool) (ece float64, bins []Bin) {
	if len(confidence) != len(correct) {
		panic(fmt.Sprintf("eval.Calibration: %d confidences, %d outcomes", len(confidence), len(correct)))
	}
	bins = make([]Bin, Bins)
	hits := make([]int, Bins)
	sums := make([]float64, Bins)
	for i := range bins {
		bins[i].Lo = float64(i) / Bins
		bins[i].Hi = float64(i+1) / Bins
	}
	for i, c := range confidence {
		b := binOf(c)
		bins[b].Count++
		sums[b] += c
		if correct[i] {
			hits[b]++
		}
	}
	n := float64(len(confidence))
	for i := range bins {
		if bins[i].Count == 0 {
			continue
		}
		cnt := float64(bins[i].Count)
		bins[i].Confidence = sums[i] / cnt
		bins[i].Accuracy = float64(hits[i]) / cnt
		ece += cnt / n * math.Abs(bins[i].Accuracy-bins[i].Confidence)
	}
	return ece, bins
}

func binOf(c float64) int {
	if math.IsNaN(c) || c <= 0 {
		return 0
	}
	b := int(math.Floor(c * Bins))
	if b >= Bins {
		b = Bins - 1
	}
	return b
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func maxOf(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

func ptr(x float64) *float64 { return &x }
