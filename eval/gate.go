package eval

import (
	"fmt"
	"math"
	"strings"

	"github.com/distillery/distillery/routes"
)

// Scores are one metric's values for the full-precision student, its INT4
// quantization (nil when not quantized) and the teacher.
type Scores = routes.Scores

// Gate is the parity gate of recipe section eval.
type Gate struct {
	// Metric is the gated metric (accuracy, macro_f1, exact_match,
	// token_f1, rouge_l); it names the metric in results and messages.
	Metric string
	// MinParity: student metric / teacher metric must be >= MinParity.
	MinParity float64
	// MaxInt4Drop: student metric − INT4 metric must be <= MaxInt4Drop.
	MaxInt4Drop float64
	// NoRegression: the served model (INT4 when quantized) must score at
	// least what the currently published version scored (Input.Previous).
	NoRegression bool
}

// GateResult is one checked threshold.
type GateResult struct {
	Name      string  `json:"name" doc:"parity (student/teacher) or int4_drop (student − INT4)."`
	Metric    string  `json:"metric" doc:"The gated metric."`
	Value     float64 `json:"value" doc:"The measured ratio or drop."`
	Threshold float64 `json:"threshold" doc:"min_parity or max_int4_drop."`
	Pass      bool    `json:"pass" doc:"Whether the threshold holds."`
	// Margin is how far inside the threshold the value is: positive passes,
	// negative fails by that much.
	Margin float64 `json:"margin" doc:"Distance inside the threshold: >= 0 passes, < 0 is the shortfall."`
}

// String describes the result, e.g.
// "student/teacher accuracy 0.912 < 0.95 (short by 0.038)".
func (r GateResult) String() string {
	switch r.Name {
	case "parity":
		if r.Pass {
			return fmt.Sprintf("student/teacher %s %.3f >= %.3g (margin %.3f)", r.Metric, r.Value, r.Threshold, r.Margin)
		}
		return fmt.Sprintf("student/teacher %s %.3f < %.3g (short by %.3f)", r.Metric, r.Value, r.Threshold, -r.Margin)
	case "regression":
		if r.Pass {
			return fmt.Sprintf("%s change vs the published version %+.3f >= 0", r.Metric, r.Value)
		}
		return fmt.Sprintf("%s regressed %.3f below the published version", r.Metric, -r.Value)
	case "int4_drop":
		if r.Pass {
			return fmt.Sprintf("int4 %s drop %.3f <= %.3g (margin %.3f)", r.Metric, r.Value, r.Threshold, r.Margin)
		}
		return fmt.Sprintf("int4 %s drop %.3f > %.3g (over by %.3f)", r.Metric, r.Value, r.Threshold, -r.Margin)
	}
	return fmt.Sprintf("%s %s %.3f threshold %.3g pass %v", r.Name, r.Metric, r.Value, r.Threshold, r.Pass)
}

// gateSlack absorbs rounding: a value within 1e-9 of its threshold passes
// (0.893/0.94 is 0.95 on paper but may not be in floating point).
const gateSlack = 1e-9

// GateError lists the thresholds the gate missed.
type GateError struct {
	Failed []GateResult
}

func (e *GateError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, r := range e.Failed {
		parts[i] = r.String()
	}
	return "quality gate failed: " + strings.Join(parts, "; ")
}

// Check compares the scores of the gated metric with the thresholds and
// returns one result per threshold: "parity" always, "int4_drop" when the
// student was quantized (s.Int4 != nil). The error is a *GateError when a
// threshold is missed, or another error when a score is not a finite
// number >= 0.
//
// Parity is student / teacher, where both are measured against the same
// reference: the gold labels (or texts) when the data has them, else the
// teacher's own answers. Against its own answers the teacher scores 1, so
// parity is then simply the student's score against the teacher; the same
// holds when the teacher is the gold source (teacher.kind labels). A
// teacher score of 0 gives parity 1 (the student cannot do worse).
func (g Gate) Check(s Scores) ([]GateResult, error) {
	vals := []struct {
		name string
		x    *float64
	}{{"student", &s.Student}, {"teacher", &s.Teacher}, {"int4", s.Int4}}
	for _, v := range vals {
		if v.x != nil && (math.IsNaN(*v.x) || math.IsInf(*v.x, 0) || *v.x < 0) {
			return nil, fmt.Errorf("eval: gate: %s %s score %v is not a finite number >= 0", v.name, g.Metric, *v.x)
		}
	}
	parity := 1.0
	if s.Teacher > 0 {
		parity = s.Student / s.Teacher
	}
	res := []GateResult{{Name: "parity", Metric: g.Metric, Value: parity, Threshold: g.MinParity, Pass: parity >= g.MinParity-gateSlack, Margin: parity - g.MinParity}}
	if s.Int4 != nil {
		drop := s.Student - *s.Int4
		res = append(res, GateResult{Name: "int4_drop", Metric: g.Metric, Value: drop, Threshold: g.MaxInt4Drop, Pass: drop <= g.MaxInt4Drop+gateSlack, Margin: g.MaxInt4Drop - drop})
	}
	var failed []GateResult
	for _, r := range res {
		if !r.Pass {
			failed = append(failed, r)
		}
	}
	if failed != nil {
		return res, &GateError{Failed: failed}
	}
	return res, nil
}
