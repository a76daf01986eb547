package routes

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Reference renders docs/routes.md from the schema's struct tags and
// Example, so the reference cannot drift from what Parse accepts.
func Reference() string {
	var b strings.Builder
	b.WriteString("# routes.json reference\n\n")
	b.WriteString("<!-- Generated from routes/routes.go by `go test ./routes -run TestReference -update`. Do not edit. -->\n\n")
	b.WriteString(`The eval stage writes ` + "`routes.json`" + ` next to its reports; publish ships it with the student, and the
gateway reads it (package ` + "`routes`" + `: ` + "`routes.Read`, `routes.Parse`" + `) to decide which requests the student serves
and how to talk to it. Reading is strict: unknown keys (matched exactly, case included), missing required keys
(` + "`null`" + ` counts as missing), wrong types, trailing data and any ` + "`schema_version`" + ` other than 1 are errors
that name the field, e.g. ` + "`routes: latency.p50_ms: missing (required)`" + `.

How the gateway uses it:

1. A request whose complexity score is outside ` + "`complexity_band`" + ` goes to the teacher.
2. Otherwise the prompt is rendered as in training (` + "`(*Routes).Render`" + `): in ` + "`prompt.instruction`" + `, ` + "`{labels}`" + `
   becomes the labels joined with ` + "`\", \"`" + `; in ` + "`prompt.template`" + `, ` + "`{instruction}`" + ` and ` + "`{labels}`" + ` are
   replaced, then ` + "`{text}`" + ` last, so braces inside the input stay as they are. ` + "`prompt.system`" + `, when set, is the
   system message.
3. The student generates at most ` + "`parser.max_tokens`" + ` tokens, stopping at any of ` + "`parser.stop`" + `.
4. ` + "`(*Routes).ParseAnswer`" + ` reads the answer. Label mode matches the trainer's rule: compare lower-cased, without
   surrounding spaces and punctuation; the label equal to the answer wins, else the longest label the answer
   starts with; no match means the student did not answer, and the request goes to the teacher.
5. The confidence is the student's largest label probability (at the first answer token, over the label set).
   Below ` + "`confidence_threshold`" + ` the request goes to the teacher. The threshold is the lowest one at which the
   student's answers on the val split reach ` + "`calibration.target_precision`" + ` (` + "`eval.CalibrateThreshold`" + `); ` + "`1.01`" + `
   means no threshold reached it, so every request escalates. Generation tasks have no label confidence; their
   threshold is 0.
`)
	b.WriteString("\nTypes: `string`, `int`, `number` (JSON number), `[]T` (array), `map[string]T` (object), `number|null`.\n")
	writeSection(&b, typeOf[Routes](), "", "Top level")
	b.WriteString("\n## Example\n\n```json\n")
	data, err := json.MarshalIndent(Example(), "", "  ")
	if err != nil {
		panic(err)
	}
	b.Write(data)
	b.WriteString("\n```\n")
	return b.String()
}

func writeSection(b *strings.Builder, t reflect.Type, path, title string) {
	fmt.Fprintf(b, "\n## %s\n\n", title)
	b.WriteString("| key | type | required | allowed | description |\n|---|---|---|---|---|\n")
	type sub struct {
		t    reflect.Type
		path string
	}
	var subs []sub
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		key := join(path, name)
		req := ""
		if f.Tag.Get("required") == "true" {
			req = "yes"
		}
		allowed := f.Tag.Get("allowed")
		if allowed != "" {
			allowed = "`" + strings.ReplaceAll(allowed, "|", "`, `") + "`"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", key, typeName(f.Type), req, allowed, strings.ReplaceAll(f.Tag.Get("doc"), "|", `\|`))
		ft := f.Type
		switch ft.Kind() {
		case reflect.Struct:
			subs = append(subs, sub{ft, key})
		case reflect.Map:
			if ft.Elem().Kind() == reflect.Struct {
				subs = append(subs, sub{ft.Elem(), key + ".<metric>"})
			}
		}
	}
	for _, s := range subs {
		writeSection(b, s.t, s.path, "`"+s.path+"`")
	}
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int:
		return "int"
	case reflect.Float64:
		return "number"
	case reflect.Pointer:
		return typeName(t.Elem()) + "\\|null"
	case reflect.Slice:
		return "[]" + typeName(t.Elem())
	case reflect.Map:
		return "map[string]" + typeName(t.Elem())
	case reflect.Struct:
		return "object"
	}
	return t.String()
}

// Example is a complete, valid Routes for the quickstart recipe, used in the
// reference and in tests.
func Example() *Routes {
	int4, f1int4 := 0.912, 0.897
	labels := []string{"great", "other"}
	return &Routes{
		SchemaVersion:       SchemaVersion,
		Model:               "fine-foods-sentiment",
		Version:             "20261127-081753-b69857",
		Task:                TaskClassification,
		Labels:              labels,
		ComplexityBand:      []int{1, 2},
		ConfidenceThreshold: 0.82,
		Calibration:         Calibration{TargetPrecision: 0.95, ValExamples: 480, Precision: 0.953, Coverage: 0.71},
		Quality: map[string]Scores{
			"accuracy": {Student: 0.921, Int4: &int4, Teacher: 0.94},
			"macro_f1": {Student: 0.904, Int4: &f1int4, Teacher: 0.93},
		},
		Latency: Latency{P50MS: 38.5, P95MS: 61.2, TokensPerSec: 2150},
		Prices:  Prices{StudentUSDPerMTok: 0.13, Teacher: Price{InputPerMTok: 0.15, OutputPerMTok: 0.6}},
		Prompt: Prompt{
			Template:    "{instruction}\n\nReview: {text}\nAnswer:",
			Instruction: "Does this review give the product five stars? Answer great or other.",
		},
		Parser:    Parser{Mode: ParseLabelMode, Labels: labels, Stop: []string{"\n"}, MaxTokens: 4},
		Artifacts: Artifacts{Model: "model-int4", Adapter: "", Tokenizer: "tokenizer.json"},
	}
}
