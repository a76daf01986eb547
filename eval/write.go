package eval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/distillery/distillery/store"
)

// File names of the reports in the eval stage's folder.
const (
	ReportJSON = "report.json"
	ReportMD   = "report.md"
	ReportHTML = "report.html"
)

// WriteFiles writes report.json, report.md and report.html into dir, each
// atomically (temp file in dir, fsync, rename).
func (r *Report) WriteFiles(dir string) error {
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{ReportJSON, r.WriteJSON}, {ReportMD, r.WriteMarkdown}, {ReportHTML, r.WriteHTML}} {
		// Render in memory first, so a rendering error leaves no file.
		var buf bytes.Buffer
		if err := f.write(&buf); err != nil {
			return fmt.Errorf("eval: %s: %w", f.name, err)
		}
		if err := store.WriteFileAtomic(filepath.Join(dir, f.name), buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes report.json: indented, keys in a fixed order (struct
// order; map keys sorted), ending in a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// ReadReport decodes report.json (the loss curve is not part of it).
func ReadReport(data []byte) (*Report, error) {
	var r Report
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("report.json: %w", err)
	}
	if r.SchemaVersion != ReportVersion {
		return nil, fmt.Errorf("report.json: schema_version %d, want %d", r.SchemaVersion, ReportVersion)
	}
	return &r, nil
}

// f formats a number with prec decimals; nil is "—".
func f(x *float64, prec int) string {
	if x == nil {
		return "—"
	}
	return fmt.Sprintf("%.*f", prec, *x)
}

func fv(x float64, prec int) string { return f(&x, prec) }

func usd(x *float64) string {
	if x == nil {
		return "—"
	}
	return fmt.Sprintf("$%.2f", *x)
}

// md escapes text for a Markdown table cell.
func md(s string) string {
	s = strings.NewReplacer(`\`, `\\`, "|", `\|`, "\r\n", " ", "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;", "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`).Replace(s)
	return s
}

func passText(p bool) string {
	if p {
		return "PASS"
	}
	return "FAIL"
}

// checkLabel names a gate threshold for tables.
func checkLabel(g GateResult) (name, threshold string) {
	switch g.Name {
	case "parity":
		return "parity (student / teacher " + g.Metric + ")", "≥ " + fv(g.Threshold, 3)
	case "int4_drop":
		return "INT4 drop (student − int4 " + g.Metric + ")", "≤ " + fv(g.Threshold, 3)
	}
	return g.Name, fv(g.Threshold, 3)
}

// sortedMetrics lists the quality metrics, the gated one first.
func (r *Report) sortedMetrics() []string {
	var names []string
	for _, k := range []string{"accuracy", "macro_f1", "teacher_agreement", "exact_match", "token_f1", "rouge_l"} {
		if _, ok := r.Quality[k]; ok {
			names = append(names, k)
		}
	}
	for k := range r.Quality {
		found := false
		for _, n := range names {
			found = found || n == k
		}
		if !found {
			names = append(names, k)
		}
	}
	return names
}

// WriteMarkdown writes report.md: the gate, then tables of quality,
// per-label metrics, the confusion matrix, calibration, latency, cost and
// training.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Evaluation: %s %s\n\n", md(r.Model), md(r.Version))
	p("**Gate: %s** (metric `%s`)\n\n", passText(r.Gate.Pass), r.Gate.Metric)
	p("| check | value | threshold | result | margin |\n|---|---|---|---|---|\n")
	for _, g := range r.Gate.Results {
		name, th := checkLabel(g)
		p("| %s | %s | %s | %s | %+.3f |\n", name, fv(g.Value, 3), th, passText(g.Pass), g.Margin)
	}
	p("\n")
	for _, n := range r.Notes {
		p("- %s\n", md(n))
	}

	p("\n## Quality\n\n%s task, %d test examples, reference: %s", r.Task, r.Examples, r.Reference)
	if r.Skipped > 0 {
		p(" (%d skipped: the teacher named no label)", r.Skipped)
	}
	p(".\n\n| metric | student | int4 | teacher |\n|---|---|---|---|\n")
	for _, name := range r.sortedMetrics() {
		s := r.Quality[name]
		p("| %s | %s | %s | %s |\n", md(name), fv(s.Student, 4), f(s.Int4, 4), fv(s.Teacher, 4))
	}

	if c := r.Class; c != nil {
		p("\n## Classification\n\n| model | accuracy | macro F1 | unparsed | teacher agreement | KL(teacher‖model) | ECE |\n|---|---|---|---|---|---|---|\n")
		row := func(name string, m *ClassMetrics) {
			if m != nil {
				p("| %s | %s | %s | %d | %s | %s | %s |\n", name, fv(m.Accuracy, 4), fv(m.MacroF1, 4), m.Unparsed, f(m.TeacherAgreement, 4), f(m.KL, 4), f(m.ECE, 4))
			}
		}
		row("student", &c.Student)
		row("int4", c.Int4)
		row("teacher", &c.Teacher)

		p("\n### Per label (student)\n\n| label | support | predicted | precision | recall | F1 |\n|---|---|---|---|---|---|\n")
		for _, l := range c.Student.PerLabel {
			p("| %s | %d | %d | %s | %s | %s |\n", md(l.Label), l.Support, l.Predicted, fv(l.Precision, 4), fv(l.Recall, 4), fv(l.F1, 4))
		}

		cm := c.Student.Confusion
		p("\n### Confusion matrix (student; rows: reference, columns: answer)\n\n| |")
		for _, col := range cm.Columns {
			p(" %s |", md(col))
		}
		p("\n|---|%s\n", strings.Repeat("---|", len(cm.Columns)))
		for i, row := range cm.Counts {
			p("| **%s** |", md(cm.Rows[i]))
			for _, n := range row {
				p(" %d |", n)
			}
			p("\n")
		}

		if len(c.Student.Reliability) > 0 {
			p("\n### Reliability (student, test split)\n\n| confidence | count | mean confidence | accuracy |\n|---|---|---|---|\n")
			for _, bin := range c.Student.Reliability {
				p("| %.1f–%.1f | %d | %s | %s |\n", bin.Lo, bin.Hi, bin.Count, fv(bin.Confidence, 4), fv(bin.Accuracy, 4))
			}
		}
	}

	if g := r.Gen; g != nil {
		p("\n## Generation\n\n| model | exact match | token F1 | ROUGE-L | perplexity | tokens |\n|---|---|---|---|---|---|\n")
		row := func(name string, m *GenMetrics) {
			if m != nil {
				p("| %s | %s | %s | %s | %s | %d |\n", name, fv(m.ExactMatch, 4), fv(m.TokenF1, 4), fv(m.RougeL, 4), f(m.Perplexity, 3), m.Tokens)
			}
		}
		row("student", &g.Student)
		row("int4", g.Int4)
		row("teacher", &g.Teacher)
	}

	cal := r.Calibration
	p("\n## Confidence threshold\n\n| threshold | target precision | val examples | precision | coverage |\n|---|---|---|---|---|\n")
	p("| %s | %s | %d | %s | %s |\n", fv(r.Threshold, 4), fv(cal.TargetPrecision, 3), cal.ValExamples, fv(cal.Precision, 4), fv(cal.Coverage, 4))

	p("\n## Latency\n\n| model | requests | mean ms | p50 ms | p95 ms | max ms | tokens/s |\n|---|---|---|---|---|---|---|\n")
	for _, l := range []struct {
		name string
		s    *LatencyStats
	}{{"student", r.Latency.Student}, {"int4", r.Latency.Int4}, {"teacher", r.Latency.Teacher}} {
		if l.s != nil {
			p("| %s | %d | %s | %s | %s | %s | %s |\n", l.name, l.s.N, fv(l.s.MeanMS, 1), fv(l.s.P50MS, 1), fv(l.s.P95MS, 1), fv(l.s.MaxMS, 1), fv(l.s.TokensPerSec, 1))
		}
	}

	c := r.Cost
	p("\n## Cost\n\n| | %s (served) | teacher |\n|---|---|---|\n", c.Served)
	p("| per 1M requests | %s | %s |\n", usd(c.StudentUSDPer1MRequests), usd(c.TeacherUSDPer1MRequests))
	p("| tokens per request | %s | %s in + %s out |\n", fv(c.StudentTokensPerRequest, 1), fv(c.TeacherInputTokens, 1), fv(c.TeacherOutputTokens, 1))
	p("| price | %s per 1M tokens (hardware $%.2f/h at %s tokens/s) | $%.2f / $%.2f per 1M input / output tokens |\n",
		usd(c.StudentUSDPerMTok), c.HardwareUSDPerHour, fv(c.StudentTokensPerSec, 1), c.TeacherPrice.InputPerMTok, c.TeacherPrice.OutputPerMTok)
	if c.Savings != nil {
		p("\nThe student costs %.1f× less per request.\n", *c.Savings)
	}

	if t := r.Training; t != nil {
		p("\n## Training\n\n| steps | log lines | final loss | best val loss | at step |\n|---|---|---|---|---|\n")
		step := "—"
		if t.BestValStep != nil {
			step = fmt.Sprint(*t.BestValStep)
		}
		p("| %d | %d | %s | %s | %s |\n", t.Steps, t.Points, f(t.FinalLoss, 4), f(t.BestValLoss, 4), step)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
