package routes

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
)

func typeOf[T any]() reflect.Type { return reflect.TypeOf((*T)(nil)).Elem() }

// jsonName is a struct field's JSON key ("" for none).
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// checkKeys walks decoded JSON alongside the Go type: every object key must
// name a field (exactly, unlike encoding/json's case-insensitive match), and
// every required field must be present and not null.
func checkKeys(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil // a type error, reported by the decoder
		}
		known := map[string]reflect.StructField{}
		for i := 0; i < t.NumField(); i++ {
			if name := jsonName(t.Field(i)); name != "" {
				known[name] = t.Field(i)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if _, ok := known[k]; !ok {
				return &Error{Field: join(path, k), Msg: "unknown field"}
			}
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := jsonName(f)
			if name == "" {
				continue
			}
			val, present := obj[name]
			if f.Tag.Get("required") == "true" && (!present || val == nil) {
				return &Error{Field: join(path, name), Msg: "missing (required)"}
			}
			if present {
				if err := checkKeys(val, f.Type, join(path, name)); err != nil {
					return err
				}
			}
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		for i, e := range arr {
			if err := checkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := checkKeys(obj[k], t.Elem(), join(path, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Validate checks the values: the schema version, non-empty ids, the task
// and parser modes and their label sets, the complexity band, the threshold
// and calibration ranges, finite non-negative measurements and prices, and a
// template that contains {text}. The first problem is returned as an *Error.
func (r *Routes) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if r.SchemaVersion != SchemaVersion {
		return bad("schema_version", "version %d is not supported (this reader knows version %d)", r.SchemaVersion, SchemaVersion)
	}
	if strings.TrimSpace(r.Model) == "" {
		return bad("model", "empty")
	}
	if strings.TrimSpace(r.Version) == "" {
		return bad("version", "empty")
	}
	switch r.Task {
	case TaskClassification:
		if len(r.Labels) < 2 {
			return bad("labels", "a classification needs at least two labels, got %d", len(r.Labels))
		}
	case TaskGeneration:
		if len(r.Labels) != 0 {
			return bad("labels", "a generation task has no label set, got %d labels", len(r.Labels))
		}
	default:
		return bad("task", "%q is not one of classification, generation", r.Task)
	}
	if err := checkLabels("labels", r.Labels); err != nil {
		return err
	}
	if len(r.ComplexityBand) == 0 {
		return bad("complexity_band", "empty: the student would serve no request")
	}
	seen := map[int]bool{}
	for i, c := range r.ComplexityBand {
		if c < 1 || c > 5 {
			return bad(fmt.Sprintf("complexity_band[%d]", i), "%d is not in 1-5", c)
		}
		if seen[c] {
			return bad(fmt.Sprintf("complexity_band[%d]", i), "%d appears twice", c)
		}
		seen[c] = true
	}
	if err := inRange("confidence_threshold", r.ConfidenceThreshold, 0, Escalate); err != nil {
		return err
	}
	c := r.Calibration
	if !(c.TargetPrecision > 0 && c.TargetPrecision <= 1) {
		return bad("calibration.target_precision", "%v is not in (0,1]", c.TargetPrecision)
	}
	if c.ValExamples < 0 {
		return bad("calibration.val_examples", "%d is negative", c.ValExamples)
	}
	if err := inRange("calibration.precision", c.Precision, 0, 1); err != nil {
		return err
	}
	if err := inRange("calibration.coverage", c.Coverage, 0, 1); err != nil {
		return err
	}
	if len(r.Quality) == 0 {
		return bad("quality", "empty: no metric was measured")
	}
	names := make([]string, 0, len(r.Quality))
	for name := range r.Quality {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.TrimSpace(name) == "" {
			return bad("quality", "empty metric name")
		}
		s := r.Quality[name]
		for _, v := range []struct {
			field string
			x     *float64
		}{{"student", &s.Student}, {"int4", s.Int4}, {"teacher", &s.Teacher}} {
			if v.x != nil && (math.IsNaN(*v.x) || math.IsInf(*v.x, 0)) {
				return bad("quality."+name+"."+v.field, "%v is not a finite number", *v.x)
			}
		}
	}
	for _, v := range []struct {
		field string
		x     float64
	}{
		{"latency.p50_ms", r.Latency.P50MS}, {"latency.p95_ms", r.Latency.P95MS}, {"latency.tokens_per_s", r.Latency.TokensPerSec},
		{"prices.student_usd_per_mtok", r.Prices.StudentUSDPerMTok},
		{"prices.teacher.input_per_mtok", r.Prices.Teacher.InputPerMTok},
		{"prices.teacher.output_per_mtok", r.Prices.Teacher.OutputPerMTok},
	} {
		if math.IsNaN(v.x) || math.IsInf(v.x, 0) || v.x < 0 {
			return bad(v.field, "%v is not a finite number >= 0", v.x)
		}
	}
	if r.Latency.P95MS < r.Latency.P50MS {
		return bad("latency.p95_ms", "%v is below p50_ms %v", r.Latency.P95MS, r.Latency.P50MS)
	}
	if !strings.Contains(r.Prompt.Template, "{text}") {
		return bad("prompt.template", "does not contain {text}")
	}
	p := r.Parser
	switch p.Mode {
	case ParseLabelMode:
		if r.Task != TaskClassification {
			return bad("parser.mode", "label mode needs task classification, not %s", r.Task)
		}
		if !equalStrings(p.Labels, r.Labels) {
			return bad("parser.labels", "%q differ from labels %q", p.Labels, r.Labels)
		}
	case ParseTextMode:
		if len(p.Labels) != 0 {
			return bad("parser.labels", "text mode takes no labels, got %d", len(p.Labels))
		}
	default:
		return bad("parser.mode", "%q is not one of label, text", p.Mode)
	}
	for i, s := range p.Stop {
		if s == "" {
			return bad(fmt.Sprintf("parser.stop[%d]", i), "empty stop sequence")
		}
	}
	if p.MaxTokens < 1 {
		return bad("parser.max_tokens", "%d is below 1", p.MaxTokens)
	}
	if strings.TrimSpace(r.Artifacts.Model) == "" {
		return bad("artifacts.model", "empty")
	}
	return nil
}

func checkLabels(field string, labels []string) error {
	seen := map[string]int{}
	for i, l := range labels {
		if strings.TrimSpace(l) == "" {
			return &Error{Field: fmt.Sprintf("%s[%d]", field, i), Msg: "empty label"}
		}
		if j, ok := seen[l]; ok {
			return &Error{Field: fmt.Sprintf("%s[%d]", field, i), Msg: fmt.Sprintf("label %q repeats %s[%d]", l, field, j)}
		}
		seen[l] = i
	}
	return nil
}

func inRange(field string, x, lo, hi float64) error {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < lo || x > hi {
		return &Error{Field: field, Msg: fmt.Sprintf("%v is not in [%v,%v]", x, lo, hi)}
	}
	return nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
