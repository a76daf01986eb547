package recipes

import (
	"fmt"
	"math"
	"strings"
)

// validate runs the checks that involve more than one field. Each section
// that gains such rules adds them here.
func validate(r *Recipe, d *decoder) {
	t := r.Task
	switch t.Kind {
	case "classification":
		if len(t.Labels) < 2 {
			d.errPath("task.labels", "classification needs at least two labels", "")
		}
		seen := map[string]bool{}
		for i, l := range t.Labels {
			p := fmt.Sprintf("task.labels[%d]", i)
			if strings.TrimSpace(l) == "" {
				d.errPath("task.labels", p+" is empty", "")
			} else if seen[l] {
				d.errPath("task.labels", fmt.Sprintf("label %q appears twice", l), "")
			}
			seen[l] = true
		}
		if r.Eval.Metric != "" && !contains([]string{"accuracy", "macro_f1"}, r.Eval.Metric) {
			d.errPath("eval.metric", r.Eval.Metric+" is a generation metric; classification uses accuracy or macro_f1", "")
		}
	case "generation":
		if len(t.Labels) > 0 {
			d.errPath("task.labels", "labels are only for classification tasks", "")
		}
		if r.Eval.Metric != "" && contains([]string{"accuracy", "macro_f1"}, r.Eval.Metric) {
			d.errPath("eval.metric", r.Eval.Metric+" is a classification metric; generation uses exact_match, token_f1 or rouge_l", "")
		}
	case "lm":
		if len(t.Labels) > 0 {
			d.errPath("task.labels", "labels are only for classification tasks", "")
		}
	}
	if _, ok := d.keys["teacher"]; !ok && t.Kind != "lm" {
		d.errPath("teacher", "missing required field (only task.kind lm trains without a teacher)", "")
	}
	if !strings.Contains(t.PromptTemplate, "{text}") {
		d.errPath("task.prompt_template", "must contain the {text} placeholder", "")
	}

	if len(r.Data.Source) == 0 {
		d.errPath("data.source", "needs at least one file", "")
	}
	s := r.Data.Split
	if sum := s.Train + s.Val + s.Test; math.Abs(sum-1) > 1e-9 {
		d.errPath("data.split", fmt.Sprintf("train + val + test must be 1, got %g", sum), "")
	}

	switch {
	case t.Kind == "lm":
	case r.Teacher.Kind == "labels":
		if r.Data.LabelField == "" {
			d.errPath("data.label_field", "teacher.kind labels needs data.label_field (the gold labels stand in for the teacher)", "")
		}
	default:
		if r.Teacher.Model == "" {
			d.errPath("teacher.model", "missing required field (the model name sent to the "+r.Teacher.Kind+" API)", "")
		}
	}
	if r.Teacher.Mode == "batch" && r.Teacher.Kind != "openai" {
		d.errPath("teacher.mode", "batch mode needs an OpenAI-compatible teacher", "")
	}

	for i, m := range r.LoRA.TargetModules {
		if m == "all-linear" && len(r.LoRA.TargetModules) > 1 {
			d.errPath("lora.target_modules", fmt.Sprintf("all-linear (item %d) already covers every linear layer: list it alone", i), "")
		}
	}

	band := r.Routing.ComplexityBand
	if len(band) == 0 {
		d.errPath("routing.complexity_band", "needs at least one complexity score", "")
	}
	for i := 1; i < len(band); i++ {
		if band[i] <= band[i-1] {
			d.errPath("routing.complexity_band", "scores must be increasing, without repeats", "")
			break
		}
	}
}
