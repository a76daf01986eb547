// Package routes holds the schema of routes.json: what the eval stage
// learned about a distilled student and what the gateway needs to serve it
// (the prompt exactly as the student was trained, how to parse its answer,
// when to escalate to the teacher, and what each side costs).
//
// The package is pure Go with no dependency on the model runtime, so the
// gateway can read routes.json without linking the trainer. The field
// reference is docs/routes.md, generated from the struct tags below by
// `go test ./routes -run TestReference -update`.
package routes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SchemaVersion is the routes.json schema this package reads and writes.
const SchemaVersion = 1

// FileName is the conventional name of the file in a run or release folder.
const FileName = "routes.json"

// Escalate is the confidence threshold that sends every request to the
// teacher: confidences are probabilities, so none reaches it. Calibration
// returns it when no threshold reaches the target precision.
const Escalate = 1.01

// Task kinds and parser modes.
const (
	TaskClassification = "classification"
	TaskGeneration     = "generation"
	ParseLabelMode     = "label"
	ParseTextMode      = "text"
)

// Field tags: json is the key; doc the one-line description in
// docs/routes.md; required:"true" means the key must be present (even when
// its zero value is valid); allowed is shown in the reference and checked
// by Validate.

// Routes is the content of routes.json.
type Routes struct {
	SchemaVersion       int               `json:"schema_version" required:"true" allowed:"1" doc:"Version of this schema; readers reject versions they do not know."`
	Model               string            `json:"model" required:"true" doc:"Model id the gateway serves the student under (the publish name)."`
	Version             string            `json:"version" required:"true" doc:"Version of the artifacts, e.g. the run id that produced them."`
	Task                string            `json:"task" required:"true" allowed:"classification|generation" doc:"The recipe's task.kind."`
	Labels              []string          `json:"labels" doc:"The label set, in recipe order (classification: at least two, unique; generation: empty)."`
	ComplexityBand      []int             `json:"complexity_band" required:"true" allowed:"[1,5]" doc:"Request complexity scores (1-5) the student serves; other requests go to the teacher."`
	ConfidenceThreshold float64           `json:"confidence_threshold" required:"true" allowed:"[0,1.01]" doc:"Escalate to the teacher when the student's confidence (max label probability) is below this; 1.01 always escalates, 0 never."`
	Calibration         Calibration       `json:"calibration" required:"true" doc:"How confidence_threshold was chosen."`
	Quality             map[string]Scores `json:"quality" required:"true" doc:"Measured quality on the test split: metric name (accuracy, macro_f1, exact_match, token_f1, rouge_l, ...) to scores."`
	Latency             Latency           `json:"latency" required:"true" doc:"Measured student latency and throughput."`
	Prices              Prices            `json:"prices" required:"true" doc:"Costs of the student and the teacher."`
	Prompt              Prompt            `json:"prompt" required:"true" doc:"The prompt exactly as the student was trained on it."`
	Parser              Parser            `json:"parser" required:"true" doc:"How the gateway generates and reads the student's answer."`
	Artifacts           Artifacts         `json:"artifacts" required:"true" doc:"File names of the artifacts, relative to the folder holding routes.json."`
}

// Calibration says how the confidence threshold was chosen (see
// eval.CalibrateThreshold).
type Calibration struct {
	TargetPrecision float64 `json:"target_precision" required:"true" allowed:"(0,1]" doc:"Precision asked for on the val split (recipe routing.target_precision)."`
	ValExamples     int     `json:"val_examples" required:"true" allowed:"[0,inf)" doc:"Val-split examples the threshold was calibrated on (0: not calibrated)."`
	Precision       float64 `json:"precision" required:"true" allowed:"[0,1]" doc:"Precision achieved on those examples at the threshold (0 when no example is kept)."`
	Coverage        float64 `json:"coverage" required:"true" allowed:"[0,1]" doc:"Share of those examples the student keeps (confidence >= threshold)."`
}

// Scores are one metric's values for the student (full precision), its
// INT4 quantization and the teacher.
type Scores struct {
	Student float64  `json:"student" required:"true" allowed:"finite" doc:"Full-precision student."`
	Int4    *float64 `json:"int4" doc:"INT4 student; null or absent when the student was not quantized."`
	Teacher float64  `json:"teacher" required:"true" allowed:"finite" doc:"Teacher, against the same reference (1 when the teacher is the reference)."`
}

// Latency is the student's measured serving speed.
type Latency struct {
	P50MS        float64 `json:"p50_ms" required:"true" allowed:"[0,inf)" doc:"Median request latency in milliseconds."`
	P95MS        float64 `json:"p95_ms" required:"true" allowed:"[0,inf)" doc:"95th-percentile request latency in milliseconds."`
	TokensPerSec float64 `json:"tokens_per_s" required:"true" allowed:"[0,inf)" doc:"Tokens (prompt + completion) processed per second of request time."`
}

// Prices are what serving costs.
type Prices struct {
	StudentUSDPerMTok float64 `json:"student_usd_per_mtok" required:"true" allowed:"[0,inf)" doc:"Student: US dollars per million tokens, from the hardware price per hour and tokens_per_s (0: hardware price not given)."`
	Teacher           Price   `json:"teacher" required:"true" doc:"Teacher prices from the recipe (teacher.price)."`
}

// Price is a provider's price per million tokens (as recipes.Price).
type Price struct {
	InputPerMTok  float64 `json:"input_per_mtok" required:"true" allowed:"[0,inf)" doc:"US dollars per million input tokens."`
	OutputPerMTok float64 `json:"output_per_mtok" required:"true" allowed:"[0,inf)" doc:"US dollars per million output tokens."`
}

// Prompt is the prompt layout the student was trained with.
type Prompt struct {
	Template    string `json:"template" required:"true" doc:"Layout with the placeholders {instruction}, {text} and {labels}; contains {text}."`
	Instruction string `json:"instruction" doc:"Text put in place of {instruction}; its own {labels} is filled too."`
	System      string `json:"system" doc:"System message sent before the prompt (empty: none)."`
	// MaxInputChars cuts the request text as training did (see CutText).
	MaxInputChars int `json:"max_input_chars,omitempty" allowed:"[0,inf)" doc:"Input texts are cut to this many characters, at a word boundary, before rendering (0 or absent: no limit)."`
}

// Parser says how the answer is generated and read.
type Parser struct {
	Mode      string   `json:"mode" required:"true" allowed:"label|text" doc:"label: the answer names one of labels (classification); text: the answer is the text (generation)."`
	Labels    []string `json:"labels" doc:"Labels the answer is matched against (mode label: equal to the top-level labels)."`
	Stop      []string `json:"stop" doc:"Stop sequences ending generation."`
	MaxTokens int      `json:"max_tokens" required:"true" allowed:"[1,inf)" doc:"Most completion tokens generated."`
}

// Artifacts names the files the gateway loads.
type Artifacts struct {
	Model     string `json:"model" required:"true" doc:"Folder of the model checkpoint served (the INT4 one when quantized)."`
	Adapter   string `json:"adapter" doc:"LoRA adapter file or folder applied on top of model (empty: merged or none)."`
	Tokenizer string `json:"tokenizer" doc:"tokenizer.json to use (empty: the one in model)."`
}

// Error is a validation or decoding error naming the offending field by its
// JSON path (e.g. "latency.p50_ms" or "labels[2]").
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "routes: " + e.Msg
	}
	return "routes: " + e.Field + ": " + e.Msg
}

// Read reads and validates a routes.json file.
func Read(path string) (*Routes, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Parse decodes and validates routes.json content. It rejects unknown keys,
// missing required keys, wrong types, trailing data, an unknown
// schema_version and invalid values, each with an *Error naming the field.
func Parse(data []byte) (*Routes, error) {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, &Error{Msg: "invalid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Msg: "invalid JSON: data after the top-level object"}
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, &Error{Msg: "want a JSON object at the top level"}
	}
	// The version decides how to read the rest, so check it first.
	if v, ok := obj["schema_version"]; !ok {
		return nil, &Error{Field: "schema_version", Msg: "missing (this reader knows version 1)"}
	} else if n, ok := v.(json.Number); !ok || n.String() != "1" {
		return nil, &Error{Field: "schema_version", Msg: fmt.Sprintf("version %s is not supported (this reader knows version %d)", jsonText(v), SchemaVersion)}
	}
	if err := checkKeys(raw, typeOf[Routes](), ""); err != nil {
		return nil, err
	}
	var r Routes
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, &Error{Field: te.Field, Msg: fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)}
		}
		return nil, &Error{Msg: err.Error()}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Marshal validates r and returns its indented JSON, ending in a newline.
func (r *Routes) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return append(data, '\n'), nil
}

// Write validates r and writes it to path atomically: a temp file in the
// same folder, fsync, rename over path, fsync of the folder.
func (r *Routes) Write(path string) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data)
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Render fills the prompt template for one input exactly as the student
// saw it in training (the same rules as distill.PromptSpec.Render): the
// labels are joined with ", "; {labels} inside the instruction is filled;
// then {instruction} and {labels} in the template; {text} last, so braces
// inside the input are left alone.
func (r *Routes) Render(text string) string {
	text = CutText(text, r.Prompt.MaxInputChars)
	labels := strings.Join(r.Labels, ", ")
	instr := strings.ReplaceAll(r.Prompt.Instruction, "{labels}", labels)
	out := strings.ReplaceAll(r.Prompt.Template, "{instruction}", instr)
	out = strings.ReplaceAll(out, "{labels}", labels)
	return strings.ReplaceAll(out, "{text}", text)
}

// CutText shortens text to at most n characters (n <= 0: no limit),
// ending at the last white space in the final fifth of the cut when there
// is one, so that words stay whole. Training and the harvest cut inputs
// with it too (distill.PromptSpec), so the gateway renders requests as the
// student saw them.
func CutText(text string, n int) string {
	if n <= 0 || utf8.RuneCountInString(text) <= n {
		return text
	}
	r := []rune(text)[:n]
	for i := len(r) - 1; i >= n*4/5; i-- {
		if unicode.IsSpace(r[i]) {
			return strings.TrimRightFunc(string(r[:i]), unicode.IsSpace)
		}
	}
	return string(r)
}

// ParseAnswer reads the student's answer. In label mode it returns the label
// the answer names (see ParseLabel) and whether there is one; in text mode
// the answer with surrounding white space trimmed, and true.
func (r *Routes) ParseAnswer(text string) (label string, ok bool) {
	if r.Parser.Mode == ParseTextMode {
		return strings.TrimSpace(text), true
	}
	l := ParseLabel(text, r.Parser.Labels)
	return l, l != ""
}
