package eval

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/distillery/distillery/routes"
)

// ReportVersion is the schema version of report.json.
const ReportVersion = 1

// Answers are one model's outputs on the evaluation examples, each slice
// parallel to the examples. Only Texts is required.
type Answers struct {
	// Texts are the raw answers; classification parses them with
	// routes.ParseLabel, as the gateway does.
	Texts []string
	// Dists (classification, optional) are the label probabilities at the
	// first answer token, laid out as ClassInput.PredDist: the labels in
	// order, optionally followed by the mass on no label.
	Dists [][]float64
	// LogProbs (generation, optional) are the model's log-probabilities of
	// the reference tokens (for the teacher: of its own answer).
	LogProbs [][]float64
	// Latencies (optional) are the request durations.
	Latencies []time.Duration
	// InputTokens and OutputTokens (optional) are each request's prompt and
	// completion tokens, in the model's own tokenizer.
	InputTokens, OutputTokens []int
}

// ValSet is the val split, used to calibrate the confidence threshold.
type ValSet struct {
	Gold    []string // reference labels; nil: the teacher's parsed answers
	Teacher []string // the teacher's raw answers (needed when Gold is nil)
	Student Answers  // the served student's Texts and Dists
}

// Input is everything the eval stage measured.
type Input struct {
	Model   string   // model id, as in routes.json
	Version string   // artifact version (run id)
	Task    string   // classification or generation
	Labels  []string // the label set (classification)
	// TeacherKind is the recipe's teacher.kind; "labels" means the teacher's
	// answers are the gold labels (see Gate.Check for what parity means).
	TeacherKind string
	// Gold (optional) is the gold label or text of each test example; when
	// nil, the teacher's answers are the reference.
	Gold    []string
	Teacher Answers
	Student Answers  // the full-precision student
	Int4    *Answers // the INT4 student; nil when not quantized
	Gate    Gate
	// TargetPrecision is the recipe's routing.target_precision.
	TargetPrecision float64
	// Val (optional, classification) calibrates the threshold.
	Val *ValSet
	// TeacherPrice is the recipe's teacher.price; HardwareUSDPerHour its
	// eval.hardware_usd_per_hour.
	TeacherPrice       routes.Price
	HardwareUSDPerHour float64
	// TrainLog (optional) is the trainer's metrics.jsonl, for the loss curve.
	TrainLog string
	// Before (optional) is the student base's score on the gated metric
	// before distillation.
	Before *float64
	// Previous (optional) is the currently published version's report.
	Previous *Previous
}

// Previous is the currently published version's score on the gated metric.
type Previous struct {
	Version string   `json:"version" doc:"The published version compared with."`
	Student float64  `json:"student" doc:"Its full-precision student's score."`
	Int4    *float64 `json:"int4" doc:"Its INT4 student's score; null when it was not quantized."`
	// Change is this run's served score minus the published one's.
	Change float64 `json:"change" doc:"This run's served model (INT4 when quantized) minus the published version's served model."`
}

// Report is report.json. Field names are stable; fields that do not apply
// are null, never absent. See ReportReference for every field.
type Report struct {
	SchemaVersion int      `json:"schema_version" doc:"Version of this schema: 1."`
	Model         string   `json:"model" doc:"Model id."`
	Version       string   `json:"version" doc:"Artifact version (run id)."`
	Task          string   `json:"task" doc:"classification or generation."`
	Labels        []string `json:"labels" doc:"The label set (empty for generation)."`
	// Reference is what the metrics are measured against: "gold" or
	// "teacher" (the teacher's own answers).
	Reference   string `json:"reference" doc:"What the metrics are measured against: gold (the data's labels or texts) or teacher (the teacher's answers, so the teacher scores 1)."`
	TeacherKind string `json:"teacher_kind" doc:"The recipe's teacher.kind; labels means the teacher is the gold source (teacher scores 1)."`
	Examples    int    `json:"examples" doc:"Test examples scored."`
	// Skipped counts examples left out because the teacher, as the
	// reference, gave no parseable label.
	Skipped     int                      `json:"skipped" doc:"Test examples left out: the teacher was the reference and its answer named no label."`
	Gate        GateReport               `json:"gate" doc:"The parity gate."`
	Quality     map[string]routes.Scores `json:"quality" doc:"Metric name (classification: accuracy, macro_f1, teacher_agreement; generation: exact_match, token_f1, rouge_l) to student/int4/teacher scores (as in routes.json)."`
	Class       *ClassReport             `json:"classification" doc:"Classification metrics per model; null for generation."`
	Gen         *GenReport               `json:"generation" doc:"Generation metrics per model; null for classification."`
	Latency     LatencyReport            `json:"latency" doc:"Request latency per model."`
	Cost        CostReport               `json:"cost" doc:"Serving cost of the student and the teacher."`
	Calibration routes.Calibration       `json:"calibration" doc:"How the threshold was calibrated on the val split (as in routes.json); val_examples 0: not calibrated."`
	Threshold   float64                  `json:"confidence_threshold" doc:"The gateway's confidence threshold (as in routes.json): calibrated; else 1.01 (always escalate) for classification, 0 for generation."`
	Training    *TrainingSummary         `json:"training" doc:"Summary of metrics.jsonl; null when no log was given."`
	Before      *float64                 `json:"student_before_distillation" doc:"The student base's score on the gated metric before training; null when not measured."`
	Previous    *Previous                `json:"previous" doc:"The currently published version on the gated metric; null when none is published."`
	Notes       []string                 `json:"notes" doc:"Remarks on how to read the numbers."`
	curve       []TrainPoint             // the loss curve, for report.html
}

// GateReport is the gate's configuration and outcome.
type GateReport struct {
	Metric      string       `json:"metric" doc:"The gated metric."`
	MinParity   float64      `json:"min_parity" doc:"Required student/teacher ratio."`
	MaxInt4Drop float64      `json:"max_int4_drop" doc:"Largest allowed student − INT4 drop."`
	Pass        bool         `json:"pass" doc:"Whether every threshold holds."`
	Results     []GateResult `json:"results" doc:"One per threshold."`
}

// ClassReport holds each model's classification metrics.
type ClassReport struct {
	Student ClassMetrics  `json:"student" doc:"Full-precision student."`
	Int4    *ClassMetrics `json:"int4" doc:"INT4 student; null when not quantized."`
	Teacher ClassMetrics  `json:"teacher" doc:"Teacher (against itself when it is the reference)."`
}

// GenReport holds each model's generation metrics.
type GenReport struct {
	Student GenMetrics  `json:"student" doc:"Full-precision student."`
	Int4    *GenMetrics `json:"int4" doc:"INT4 student; null when not quantized."`
	Teacher GenMetrics  `json:"teacher" doc:"Teacher (against itself when it is the reference)."`
}

// LatencyReport holds each model's latency; null where not timed.
type LatencyReport struct {
	Student *LatencyStats `json:"student" doc:"Full-precision student."`
	Int4    *LatencyStats `json:"int4" doc:"INT4 student."`
	Teacher *LatencyStats `json:"teacher" doc:"Teacher (from the harvest)."`
}

// CostReport compares serving costs. The served student is the INT4 one
// when quantized. Its cost assumes one request at a time on hardware
// billed per hour: a request of t tokens costs t / tokens_per_s seconds.
type CostReport struct {
	Served                  string       `json:"served" doc:"The student whose cost is shown: int4 when quantized, else student."`
	HardwareUSDPerHour      float64      `json:"hardware_usd_per_hour" doc:"Serving hardware price (recipe eval.hardware_usd_per_hour)."`
	StudentTokensPerSec     float64      `json:"student_tokens_per_s" doc:"The served student's throughput."`
	StudentUSDPerMTok       *float64     `json:"student_usd_per_mtok" doc:"Hardware cost of a million tokens; null without a hardware price or throughput."`
	StudentTokensPerRequest float64      `json:"student_tokens_per_request" doc:"Mean prompt + completion tokens per request (student tokenizer)."`
	StudentUSDPer1MRequests *float64     `json:"student_usd_per_1m_requests" doc:"student_usd_per_mtok × student_tokens_per_request; null when the cost per token is."`
	TeacherPrice            routes.Price `json:"teacher_price" doc:"Recipe teacher.price."`
	TeacherInputTokens      float64      `json:"teacher_input_tokens_per_request" doc:"Mean teacher prompt tokens per request."`
	TeacherOutputTokens     float64      `json:"teacher_output_tokens_per_request" doc:"Mean teacher completion tokens per request."`
	TeacherUSDPer1MRequests *float64     `json:"teacher_usd_per_1m_requests" doc:"input tokens × input price + output tokens × output price (per million requests); null without token counts."`
	// Savings is teacher cost / student cost per request.
	Savings *float64 `json:"savings" doc:"teacher_usd_per_1m_requests / student_usd_per_1m_requests; null when either is null or the student's is 0."`
}

// Evaluate computes the report. It fails on inconsistent input (lengths,
// labels, probabilities); a missed gate is not an error here: see
// Report.Gate and Report.GateError.
func Evaluate(in Input) (*Report, error) {
	n := len(in.Student.Texts)
	if err := checkAnswers("student", in.Student, n); err != nil {
		return nil, err
	}
	if err := checkAnswers("teacher", in.Teacher, n); err != nil {
		return nil, err
	}
	if in.Int4 != nil {
		if err := checkAnswers("int4", *in.Int4, n); err != nil {
			return nil, err
		}
	}
	if in.Gold != nil && len(in.Gold) != n {
		return nil, fmt.Errorf("eval: %d gold entries for %d examples", len(in.Gold), n)
	}
	if !(in.TargetPrecision > 0 && in.TargetPrecision <= 1) {
		return nil, fmt.Errorf("eval: target precision %v is not in (0,1]", in.TargetPrecision)
	}
	r := &Report{
		SchemaVersion: ReportVersion, Model: in.Model, Version: in.Version, Task: in.Task,
		Labels: append([]string{}, in.Labels...), TeacherKind: in.TeacherKind, Notes: []string{},
		Gate:        GateReport{Metric: in.Gate.Metric, MinParity: in.Gate.MinParity, MaxInt4Drop: in.Gate.MaxInt4Drop},
		Calibration: routes.Calibration{TargetPrecision: in.TargetPrecision},
	}
	r.Reference = "teacher"
	if in.Gold != nil {
		r.Reference = "gold"
	}
	switch in.Task {
	case routes.TaskClassification:
		if r.Gate.Metric == "" {
			r.Gate.Metric = "accuracy"
		}
		if err := r.classify(in); err != nil {
			return nil, err
		}
	case routes.TaskGeneration:
		if r.Gate.Metric == "" {
			r.Gate.Metric = "rouge_l"
		}
		if err := r.generate(in); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("eval: task %q is not classification or generation", in.Task)
	}
	switch {
	case in.TeacherKind == "labels":
		r.Notes = append(r.Notes, "The teacher is the gold source (teacher.kind labels): it scores 1, and parity is the student's score against the gold labels.")
	case r.Reference == "teacher":
		r.Notes = append(r.Notes, "The data has no gold references: metrics are measured against the teacher's answers, so the teacher scores 1 and parity is the student's score against the teacher.")
	default:
		r.Notes = append(r.Notes, "Metrics are measured against the gold references; parity is the student's score over the teacher's.")
	}

	scores, ok := r.Quality[r.Gate.Metric]
	if !ok {
		return nil, fmt.Errorf("eval: gate metric %q is not measured for %s tasks", r.Gate.Metric, in.Task)
	}
	g := in.Gate
	g.Metric = r.Gate.Metric
	res, err := g.Check(scores)
	var ge *GateError
	if err != nil && !errors.As(err, &ge) {
		return nil, err
	}
	r.Gate.Results, r.Gate.Pass = res, err == nil
	r.Before = in.Before
	if in.Before != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("Before distillation the student base scored %s %.4f; after, %.4f.", r.Gate.Metric, *in.Before, scores.Student))
	}
	if p := in.Previous; p != nil {
		served, was := scores.Student, p.Student
		if scores.Int4 != nil {
			served = *scores.Int4
		}
		if p.Int4 != nil {
			was = *p.Int4
		}
		prev := *p
		prev.Change = served - was
		r.Previous = &prev
		r.Notes = append(r.Notes, fmt.Sprintf("The published version %s served %s %.4f; this run serves %.4f (%+.4f).", p.Version, r.Gate.Metric, was, served, prev.Change))
		if in.Gate.NoRegression {
			reg := GateResult{Name: "regression", Metric: r.Gate.Metric, Value: prev.Change, Threshold: 0, Pass: prev.Change >= -gateSlack, Margin: prev.Change}
			r.Gate.Results = append(r.Gate.Results, reg)
			r.Gate.Pass = r.Gate.Pass && reg.Pass
		}
	}

	if err := r.latencyAndCost(in); err != nil {
		return nil, err
	}
	if err := r.calibrate(in); err != nil {
		return nil, err
	}
	defer func(th float64) { roundFloats(reflect.ValueOf(r).Elem()); r.Threshold = th }(r.Threshold)
	if in.TrainLog != "" {
		pts, err := ReadTrainLog(in.TrainLog)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.Notes = append(r.Notes, "No training log (metrics.jsonl): the loss curve is omitted.")
		case err != nil:
			return nil, err
		default:
			r.curve = pts
			r.Training = summarize(pts)
		}
	}
	return r, nil
}

// GateError returns the gate's failure as a *GateError, or nil when it
// passed.
func (r *Report) GateError() error {
	var failed []GateResult
	for _, g := range r.Gate.Results {
		if !g.Pass {
			failed = append(failed, g)
		}
	}
	if failed == nil {
		return nil
	}
	return &GateError{Failed: failed}
}

// LossCurve returns the training log points read from Input.TrainLog.
func (r *Report) LossCurve() []TrainPoint { return r.curve }

func checkAnswers(name string, a Answers, n int) error {
	for what, l := range map[string]int{"answers": len(a.Texts), "distributions": len(a.Dists), "log-probability rows": len(a.LogProbs),
		"latencies": len(a.Latencies), "input token counts": len(a.InputTokens), "output token counts": len(a.OutputTokens)} {
		if l != n && (l != 0 || what == "answers") {
			return fmt.Errorf("eval: %s has %d %s for %d examples", name, l, what, n)
		}
	}
	return nil
}

func parseAll(texts, labels []string) []string {
	out := make([]string, len(texts))
	for i, t := range texts {
		out[i] = routes.ParseLabel(t, labels)
	}
	return out
}

func pick[T any](xs []T, keep []int) []T {
	if xs == nil {
		return nil
	}
	out := make([]T, len(keep))
	for i, k := range keep {
		out[i] = xs[k]
	}
	return out
}

func (r *Report) classify(in Input) error {
	L := in.Labels
	teacher := parseAll(in.Teacher.Texts, L)
	var ref []string
	keep := make([]int, 0, len(teacher))
	if in.Gold != nil {
		for i, g := range in.Gold {
			if g == "" {
				return fmt.Errorf("eval: gold label of example %d is empty; give gold for every example or none", i)
			}
			keep = append(keep, i)
		}
		ref = in.Gold
	} else {
		for i, t := range teacher {
			if t != "" {
				keep = append(keep, i)
			}
		}
		ref = pick(teacher, keep)
		r.Skipped = len(teacher) - len(keep)
	}
	teacher = pick(teacher, keep)
	r.Examples = len(keep)
	model := func(a Answers, teacherDist [][]float64) (ClassMetrics, error) {
		return Classify(ClassInput{Labels: L, Gold: ref, Pred: pick(parseAll(a.Texts, L), keep), PredDist: pick(a.Dists, keep),
			Teacher: teacher, TeacherDist: teacherDist})
	}
	tdist := pick(in.Teacher.Dists, keep)
	c := &ClassReport{}
	var err error
	if c.Student, err = model(in.Student, tdist); err != nil {
		return fmt.Errorf("student: %w", err)
	}
	if in.Int4 != nil {
		m, err := model(*in.Int4, tdist)
		if err != nil {
			return fmt.Errorf("int4: %w", err)
		}
		c.Int4 = &m
	}
	if c.Teacher, err = Classify(ClassInput{Labels: L, Gold: ref, Pred: teacher, PredDist: tdist}); err != nil {
		return fmt.Errorf("teacher: %w", err)
	}
	r.Class = c
	q := map[string]routes.Scores{}
	for _, m := range []struct {
		name string
		get  func(ClassMetrics) float64
	}{
		{"accuracy", func(m ClassMetrics) float64 { return m.Accuracy }},
		{"macro_f1", func(m ClassMetrics) float64 { return m.MacroF1 }},
		{"teacher_agreement", func(m ClassMetrics) float64 {
			if m.TeacherAgreement == nil {
				return 1 // the teacher agrees with itself
			}
			return *m.TeacherAgreement
		}},
	} {
		s := routes.Scores{Student: m.get(c.Student), Teacher: m.get(c.Teacher)}
		if c.Int4 != nil {
			s.Int4 = ptr(m.get(*c.Int4))
		}
		q[m.name] = s
	}
	r.Quality = q
	return nil
}

func (r *Report) generate(in Input) error {
	ref := in.Teacher.Texts
	if in.Gold != nil {
		ref = in.Gold
	}
	r.Examples = len(ref)
	g := &GenReport{}
	var err error
	if g.Student, err = ScoreGeneration(GenInput{Ref: ref, Pred: in.Student.Texts, LogProbs: in.Student.LogProbs}); err != nil {
		return fmt.Errorf("student: %w", err)
	}
	if in.Int4 != nil {
		m, err := ScoreGeneration(GenInput{Ref: ref, Pred: in.Int4.Texts, LogProbs: in.Int4.LogProbs})
		if err != nil {
			return fmt.Errorf("int4: %w", err)
		}
		g.Int4 = &m
	}
	// The teacher's log-probabilities are of its own answer: a perplexity
	// of the reference only when the teacher is the reference.
	var tlp [][]float64
	if in.Gold == nil {
		tlp = in.Teacher.LogProbs
	}
	if g.Teacher, err = ScoreGeneration(GenInput{Ref: ref, Pred: in.Teacher.Texts, LogProbs: tlp}); err != nil {
		return fmt.Errorf("teacher: %w", err)
	}
	r.Gen = g
	q := map[string]routes.Scores{}
	for _, m := range []struct {
		name string
		get  func(GenMetrics) float64
	}{
		{"exact_match", func(m GenMetrics) float64 { return m.ExactMatch }},
		{"token_f1", func(m GenMetrics) float64 { return m.TokenF1 }},
		{"rouge_l", func(m GenMetrics) float64 { return m.RougeL }},
	} {
		s := routes.Scores{Student: m.get(g.Student), Teacher: m.get(g.Teacher)}
		if g.Int4 != nil {
			s.Int4 = ptr(m.get(*g.Int4))
		}
		q[m.name] = s
	}
	r.Quality = q
	return nil
}

func sumTokens(a Answers) []int {
	if a.InputTokens == nil && a.OutputTokens == nil {
		return nil
	}
	out := make([]int, len(a.Texts))
	for i := range out {
		if a.InputTokens != nil {
			out[i] += a.InputTokens[i]
		}
		if a.OutputTokens != nil {
			out[i] += a.OutputTokens[i]
		}
	}
	return out
}

func mean(xs []int) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += float64(x)
	}
	return s / float64(len(xs))
}

func (r *Report) latencyAndCost(in Input) error {
	lat := func(name string, a Answers) (*LatencyStats, error) {
		if a.Latencies == nil {
			return nil, nil
		}
		s, err := Latency(a.Latencies, sumTokens(a))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return &s, nil
	}
	var err error
	if r.Latency.Student, err = lat("student", in.Student); err != nil {
		return err
	}
	if in.Int4 != nil {
		if r.Latency.Int4, err = lat("int4", *in.Int4); err != nil {
			return err
		}
	}
	if r.Latency.Teacher, err = lat("teacher", in.Teacher); err != nil {
		return err
	}

	c := CostReport{Served: "student", HardwareUSDPerHour: in.HardwareUSDPerHour, TeacherPrice: in.TeacherPrice}
	served, servedLat := in.Student, r.Latency.Student
	if in.Int4 != nil {
		c.Served, served, servedLat = "int4", *in.Int4, r.Latency.Int4
	}
	if t := sumTokens(served); t != nil {
		c.StudentTokensPerRequest = mean(t)
	}
	if servedLat != nil {
		c.StudentTokensPerSec = servedLat.TokensPerSec
	}
	if usd := USDPerMTok(in.HardwareUSDPerHour, c.StudentTokensPerSec); usd > 0 {
		c.StudentUSDPerMTok = ptr(usd)
		c.StudentUSDPer1MRequests = ptr(StudentUSDPer1MRequests(c.StudentTokensPerRequest, usd))
	}
	if in.Teacher.InputTokens != nil || in.Teacher.OutputTokens != nil {
		c.TeacherInputTokens, c.TeacherOutputTokens = mean(in.Teacher.InputTokens), mean(in.Teacher.OutputTokens)
		c.TeacherUSDPer1MRequests = ptr(TeacherUSDPer1MRequests(c.TeacherInputTokens, c.TeacherOutputTokens, in.TeacherPrice))
	}
	if c.TeacherUSDPer1MRequests != nil && c.StudentUSDPer1MRequests != nil && *c.StudentUSDPer1MRequests > 0 {
		c.Savings = ptr(*c.TeacherUSDPer1MRequests / *c.StudentUSDPer1MRequests)
	}
	r.Cost = c
	return nil
}

// Confidence is the gateway's confidence of a classification answer: the
// largest label probability of a distribution laid out as
// ClassInput.PredDist, after renormalising it (mass on no label lowers
// it).
func Confidence(dist []float64, labels int) (float64, error) {
	rows, err := normRows([][]float64{dist}, labels, "label distribution")
	if err != nil {
		return 0, err
	}
	return maxOf(rows[0][:labels]), nil
}

func (r *Report) calibrate(in Input) error {
	v := in.Val
	if in.Task != routes.TaskClassification {
		return nil // no label confidence: threshold 0, never escalate
	}
	if v == nil {
		r.Threshold = routes.Escalate
		r.Notes = append(r.Notes, "No val split to calibrate the confidence threshold on: the gateway escalates every request.")
		return nil
	}
	L := in.Labels
	n := len(v.Student.Texts)
	if len(v.Student.Dists) != n {
		return fmt.Errorf("eval: val set has %d student distributions for %d answers", len(v.Student.Dists), n)
	}
	ref := v.Gold
	if ref == nil {
		if len(v.Teacher) != n {
			return fmt.Errorf("eval: val set has %d teacher answers for %d examples", len(v.Teacher), n)
		}
		ref = parseAll(v.Teacher, L)
	} else if len(ref) != n {
		return fmt.Errorf("eval: val set has %d gold labels for %d examples", len(ref), n)
	}
	var conf []float64
	var correct []bool
	for i, t := range v.Student.Texts {
		if ref[i] == "" {
			continue // the teacher named no label: no reference
		}
		c, err := Confidence(v.Student.Dists[i], len(L))
		if err != nil {
			return fmt.Errorf("val example %d: %w", i, err)
		}
		conf = append(conf, c)
		correct = append(correct, routes.ParseLabel(t, L) == ref[i])
	}
	th, prec, cov := CalibrateThreshold(conf, correct, in.TargetPrecision)
	r.Threshold = th
	r.Calibration = routes.Calibration{TargetPrecision: in.TargetPrecision, ValExamples: len(conf), Precision: prec, Coverage: cov}
	if th == routes.Escalate {
		r.Notes = append(r.Notes, fmt.Sprintf("No confidence threshold reaches precision %.3g on the val split: the gateway escalates every request.", in.TargetPrecision))
	}
	return nil
}

// FillRoutes copies the measured fields into rt: schema version, model,
// version, task, labels, quality, latency and throughput of the served
// student (INT4 when quantized), prices, the confidence threshold with its
// calibration, and the parser's mode and labels (label mode with the label
// set for classification, text mode for generation). The prompt, the
// parser's stop sequences and max tokens, the complexity band and the
// artifacts are left to the caller.
func (r *Report) FillRoutes(rt *routes.Routes) {
	rt.SchemaVersion = routes.SchemaVersion
	rt.Model, rt.Version, rt.Task = r.Model, r.Version, r.Task
	rt.Labels = nil
	if len(r.Labels) > 0 {
		rt.Labels = append([]string{}, r.Labels...)
	}
	rt.Quality = map[string]routes.Scores{}
	for k, v := range r.Quality {
		rt.Quality[k] = v
	}
	lat := r.Latency.Student
	if r.Cost.Served == "int4" {
		lat = r.Latency.Int4
	}
	rt.Latency = routes.Latency{}
	if lat != nil {
		rt.Latency = routes.Latency{P50MS: lat.P50MS, P95MS: lat.P95MS, TokensPerSec: lat.TokensPerSec}
	}
	rt.Prices.Teacher = r.Cost.TeacherPrice
	rt.Prices.StudentUSDPerMTok = 0
	if r.Cost.StudentUSDPerMTok != nil {
		rt.Prices.StudentUSDPerMTok = *r.Cost.StudentUSDPerMTok
	}
	rt.ConfidenceThreshold, rt.Calibration = r.Threshold, r.Calibration
	rt.Parser.Mode, rt.Parser.Labels = routes.ParseTextMode, nil
	if r.Task == routes.TaskClassification {
		rt.Parser.Mode, rt.Parser.Labels = routes.ParseLabelMode, append([]string{}, r.Labels...)
	}
}

// roundFloats rounds every float64 reachable from v to 12 significant
// digits, so report.json shows 0.9 rather than 0.8999999999999999 and does
// not change with the platform's floating-point contraction. (The
// confidence threshold is restored afterwards: it must stay an observed
// confidence.)
func roundFloats(v reflect.Value) {
	switch v.Kind() {
	case reflect.Float64:
		if x := v.Float(); !math.IsNaN(x) && !math.IsInf(x, 0) && v.CanSet() {
			r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 12, 64), 64)
			v.SetFloat(r)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			roundFloats(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				roundFloats(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			roundFloats(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			roundFloats(e)
			v.SetMapIndex(k, e)
		}
	}
}
