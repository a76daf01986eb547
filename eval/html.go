package eval

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// The HTML report is one self-contained file: inline CSS and inline SVG, no
// script, no external resource (a Content-Security-Policy forbids them, so
// a stray one shows as a console error in the browser test). Every plot is
// in an element with a stable id: gate, quality, confusion-matrix,
// reliability-diagram, loss-curve, cost-chart. A plot without data shows a
// note with class "note" instead of its SVG.

type svgText struct {
	X, Y   string
	Anchor string // start, middle, end
	Rotate string // "" or a transform
	Class  string
	Text   string
	Title  string // full text when Text is shortened
}

type svgRect struct {
	X, Y, W, H string
	Fill       string
	Class      string
	Title      string
}

type svgLine struct {
	X1, Y1, X2, Y2 string
	Class          string
}

type svgPath struct {
	Points string
	Class  string
}

type svgDot struct {
	X, Y  string
	Class string
	Title string
}

// plot is one SVG figure (or, with Note set, the reason there is none).
type plot struct {
	ID, Title, Note string
	W, H            int
	Desc            string    // aria description
	Grid            []svgLine // drawn first, under everything
	Rects           []svgRect
	Lines           []svgLine
	Paths           []svgPath
	Dots            []svgDot
	Texts           []svgText
	Legend          []legendItem
}

type legendItem struct{ Class, Text string }

type htmlRow struct{ Cells []string }

type htmlView struct {
	Title      string
	Pass       bool
	GateRows   []htmlRow
	Notes      []string
	Summary    string
	Quality    []htmlRow
	Details    []htmlRow // per-model class or gen metrics
	DetailHead []string
	PerLabel   []htmlRow
	Latency    []htmlRow
	Threshold  []htmlRow
	Cost       []htmlRow
	Served     string
	Plots      []plot
}

func px(x float64) string { return fmt.Sprintf("%.1f", x) }

func short(s string, n int) (string, string) {
	r := []rune(s)
	if len(r) <= n {
		return s, ""
	}
	return string(r[:n-1]) + "…", s
}

// heat interpolates white to the report's blue for v in [0,1].
func heat(v float64) string {
	v = math.Max(0, math.Min(1, v))
	c := func(from, to float64) int { return int(math.Round(from + (to-from)*v)) }
	return fmt.Sprintf("#%02x%02x%02x", c(255, 37), c(255, 99), c(255, 171))
}

func confusionPlot(cm Confusion) plot {
	p := plot{ID: "confusion-matrix", Title: "Confusion matrix (student)"}
	L, C := len(cm.Rows), len(cm.Columns)
	if L == 0 {
		p.Note = "No classification labels: no confusion matrix."
		return p
	}
	cell := math.Max(18, math.Min(48, 480/float64(C)))
	// Room for the row labels on the left and the column labels, at 45°, on
	// top (about 6.5 px a character at 11 px, labels shortened to 18/16).
	longest := func(ss []string, n int) float64 {
		m := 0
		for _, s := range ss {
			m = max(m, min(len([]rune(s)), n))
		}
		return float64(m)
	}
	left := 40 + 6.5*longest(cm.Rows, 18)
	top := 36 + 6.5*longest(cm.Columns, 16)*0.72
	p.W = int(left + cell*float64(C) + 20)
	p.H = int(top + cell*float64(L) + 30)
	p.Desc = "Reference labels (rows) against the student's answers (columns); cells shaded by the share of their row."
	fontCls := "small"
	if cell < 28 {
		fontCls = "tiny"
	}
	for i, row := range cm.Counts {
		total := 0
		for _, n := range row {
			total += n
		}
		for j, n := range row {
			share := 0.0
			if total > 0 {
				share = float64(n) / float64(total)
			}
			x, y := left+cell*float64(j), top+cell*float64(i)
			cls := "cell"
			if i == j {
				cls = "cell diag"
			}
			p.Rects = append(p.Rects, svgRect{X: px(x), Y: px(y), W: px(cell), H: px(cell), Fill: heat(share), Class: cls,
				Title: fmt.Sprintf("reference %s, answer %s: %d (%.1f%% of the row)", cm.Rows[i], cm.Columns[j], n, 100*share)})
			tc := fontCls
			if share > 0.5 {
				tc += " light"
			}
			p.Texts = append(p.Texts, svgText{X: px(x + cell/2), Y: px(y + cell/2 + 4), Anchor: "middle", Class: tc, Text: fmt.Sprint(n)})
		}
		t, full := short(cm.Rows[i], 18)
		p.Texts = append(p.Texts, svgText{X: px(left - 6), Y: px(top + cell*float64(i) + cell/2 + 4), Anchor: "end", Class: "small", Text: t, Title: full})
	}
	for j, col := range cm.Columns {
		t, full := short(col, 16)
		x, y := left+cell*float64(j)+cell/2+4, top-6
		p.Texts = append(p.Texts, svgText{X: px(x), Y: px(y), Anchor: "start", Class: "small", Rotate: fmt.Sprintf("rotate(-45 %s %s)", px(x), px(y)), Text: t, Title: full})
	}
	p.Texts = append(p.Texts,
		svgText{X: px(left + cell*float64(C)/2), Y: px(14), Anchor: "middle", Class: "axis", Text: "answer"},
		svgText{X: px(14), Y: px(top + cell*float64(L)/2), Anchor: "middle", Class: "axis", Rotate: fmt.Sprintf("rotate(-90 14 %s)", px(top+cell*float64(L)/2)), Text: "reference"})
	return p
}

// frame draws axes with ticks for a plot area; fx, fy map data to pixels.
func frame(p *plot, x0, y0, x1, y1 float64, xt, yt []float64, fx, fy func(float64) float64, xlabel, ylabel string, xfmt, yfmt string) {
	p.Lines = append(p.Lines, svgLine{X1: px(x0), Y1: px(y1), X2: px(x1), Y2: px(y1), Class: "axisline"},
		svgLine{X1: px(x0), Y1: px(y0), X2: px(x0), Y2: px(y1), Class: "axisline"})
	for _, t := range xt {
		x := fx(t)
		p.Lines = append(p.Lines, svgLine{X1: px(x), Y1: px(y1), X2: px(x), Y2: px(y1 + 4), Class: "axisline"})
		p.Texts = append(p.Texts, svgText{X: px(x), Y: px(y1 + 16), Anchor: "middle", Class: "small", Text: fmt.Sprintf(xfmt, t)})
	}
	for _, t := range yt {
		y := fy(t)
		p.Lines = append(p.Lines, svgLine{X1: px(x0 - 4), Y1: px(y), X2: px(x0), Y2: px(y), Class: "axisline"})
		p.Grid = append(p.Grid, svgLine{X1: px(x0), Y1: px(y), X2: px(x1), Y2: px(y), Class: "grid"})
		p.Texts = append(p.Texts, svgText{X: px(x0 - 7), Y: px(y + 4), Anchor: "end", Class: "small", Text: fmt.Sprintf(yfmt, t)})
	}
	p.Texts = append(p.Texts, svgText{X: px((x0 + x1) / 2), Y: px(y1 + 34), Anchor: "middle", Class: "axis", Text: xlabel},
		svgText{X: px(14), Y: px((y0 + y1) / 2), Anchor: "middle", Class: "axis", Rotate: fmt.Sprintf("rotate(-90 14 %s)", px((y0+y1)/2)), Text: ylabel})
}

func reliabilityPlot(bins []Bin) plot {
	p := plot{ID: "reliability-diagram", Title: "Reliability diagram (student, test split)"}
	if len(bins) == 0 {
		p.Note = "No label probabilities: no reliability diagram."
		return p
	}
	x0, y0, x1, y1 := 60.0, 20.0, 380.0, 340.0
	p.W, p.H = 400, 385
	p.Desc = "Accuracy per confidence bin against the diagonal of perfect calibration."
	fx := func(v float64) float64 { return x0 + v*(x1-x0) }
	fy := func(v float64) float64 { return y1 - v*(y1-y0) }
	ticks := []float64{0, 0.2, 0.4, 0.6, 0.8, 1}
	frame(&p, x0, y0, x1, y1, ticks, ticks, fx, fy, "confidence", "accuracy", "%.1f", "%.1f")
	for _, b := range bins {
		if b.Count == 0 {
			continue
		}
		p.Rects = append(p.Rects, svgRect{X: px(fx(b.Lo) + 1), Y: px(fy(b.Accuracy)), W: px(fx(b.Hi) - fx(b.Lo) - 2), H: px(fy(0) - fy(b.Accuracy)), Class: "bar",
			Title: fmt.Sprintf("confidence %.1f–%.1f: %d examples, accuracy %.3f, mean confidence %.3f", b.Lo, b.Hi, b.Count, b.Accuracy, b.Confidence)})
		p.Dots = append(p.Dots, svgDot{X: px(fx(b.Confidence)), Y: px(fy(b.Accuracy)), Class: "dot", Title: fmt.Sprintf("%d examples", b.Count)})
	}
	p.Lines = append(p.Lines, svgLine{X1: px(fx(0)), Y1: px(fy(0)), X2: px(fx(1)), Y2: px(fy(1)), Class: "diagonal"})
	p.Legend = []legendItem{{"bar", "accuracy per bin"}, {"diagonal", "perfect calibration"}}
	return p
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for t := math.Ceil(lo/step) * step; t <= hi+step*1e-9; t += step {
		out = append(out, t)
	}
	return out
}

func lossPlot(pts []TrainPoint, note string) plot {
	p := plot{ID: "loss-curve", Title: "Loss curve"}
	var train, val []TrainPoint
	for _, pt := range pts {
		if pt.Loss != nil {
			train = append(train, pt)
		}
		if pt.ValLoss != nil {
			val = append(val, pt)
		}
	}
	if len(train)+len(val) == 0 {
		p.Note = note
		if p.Note == "" {
			p.Note = "No training log (metrics.jsonl): no loss curve."
		}
		return p
	}
	minS, maxS := math.Inf(1), math.Inf(-1)
	minL, maxL := math.Inf(1), math.Inf(-1)
	for _, pt := range pts {
		for _, v := range []*float64{pt.Loss, pt.ValLoss} {
			if v != nil {
				minS, maxS = math.Min(minS, float64(pt.Step)), math.Max(maxS, float64(pt.Step))
				minL, maxL = math.Min(minL, *v), math.Max(maxL, *v)
			}
		}
	}
	if maxS == minS {
		maxS = minS + 1
	}
	pad := (maxL - minL) * 0.05
	if pad == 0 {
		pad = math.Max(math.Abs(maxL)*0.1, 0.1)
	}
	minL, maxL = minL-pad, maxL+pad
	x0, y0, x1, y1 := 70.0, 30.0, 620.0, 300.0
	p.W, p.H = 640, 345
	p.Desc = "Training loss and validation loss by optimiser step."
	fx := func(v float64) float64 { return x0 + (v-minS)/(maxS-minS)*(x1-x0) }
	fy := func(v float64) float64 { return y1 - (v-minL)/(maxL-minL)*(y1-y0) }
	yfmt := "%.2f"
	if maxL-minL < 0.05 {
		yfmt = "%.4f"
	}
	var xt []float64
	for _, t := range niceTicks(minS, maxS, 6) {
		if t >= minS && t <= maxS {
			xt = append(xt, t)
		}
	}
	var yt []float64
	for _, t := range niceTicks(minL, maxL, 5) {
		if t >= minL && t <= maxL {
			yt = append(yt, t)
		}
	}
	frame(&p, x0, y0, x1, y1, xt, yt, fx, fy, "step", "loss", "%.0f", yfmt)
	line := func(series []TrainPoint, get func(TrainPoint) float64, cls string) {
		var b strings.Builder
		for i, pt := range series {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(px(fx(float64(pt.Step))) + "," + px(fy(get(pt))))
		}
		p.Paths = append(p.Paths, svgPath{Points: b.String(), Class: cls})
	}
	if len(train) > 0 {
		line(train, func(t TrainPoint) float64 { return *t.Loss }, "train")
		p.Legend = append(p.Legend, legendItem{"train", "training loss"})
	}
	if len(val) > 0 {
		line(val, func(t TrainPoint) float64 { return *t.ValLoss }, "val")
		for _, pt := range val {
			p.Dots = append(p.Dots, svgDot{X: px(fx(float64(pt.Step))), Y: px(fy(*pt.ValLoss)), Class: "valdot", Title: fmt.Sprintf("step %d: val_loss %.4f", pt.Step, *pt.ValLoss)})
		}
		p.Legend = append(p.Legend, legendItem{"val", "validation loss"})
	}
	return p
}

func costPlot(c CostReport) plot {
	p := plot{ID: "cost-chart", Title: "Cost per 1M requests"}
	type bar struct {
		name string
		v    *float64
		cls  string
	}
	bars := []bar{{"teacher", c.TeacherUSDPer1MRequests, "teacher"}, {c.Served + " student", c.StudentUSDPer1MRequests, "student"}}
	var missing []string
	top := 0.0
	for _, b := range bars {
		if b.v == nil {
			missing = append(missing, b.name)
		} else {
			top = math.Max(top, *b.v)
		}
	}
	if len(missing) == len(bars) {
		p.Note = "No cost: the teacher has no token counts and the student no hardware price or throughput."
		return p
	}
	x0, x1 := 130.0, 520.0
	p.W, p.H = 640, 150
	p.Desc = "US dollars per million requests, teacher against student."
	for i, b := range bars {
		y := 20.0 + float64(i)*50
		p.Texts = append(p.Texts, svgText{X: px(x0 - 8), Y: px(y + 21), Anchor: "end", Class: "axis", Text: b.name})
		if b.v == nil {
			p.Texts = append(p.Texts, svgText{X: px(x0 + 4), Y: px(y + 21), Anchor: "start", Class: "small", Text: "unknown"})
			continue
		}
		w := 0.0
		if top > 0 {
			w = *b.v / top * (x1 - x0)
		}
		w = math.Max(w, 1) // a cheap bar stays visible
		p.Rects = append(p.Rects, svgRect{X: px(x0), Y: px(y), W: px(w), H: "30", Class: b.cls, Title: fmt.Sprintf("%s: $%.2f per 1M requests", b.name, *b.v)})
		p.Texts = append(p.Texts, svgText{X: px(x0 + w + 6), Y: px(y + 21), Anchor: "start", Class: "small", Text: fmt.Sprintf("$%.2f", *b.v)})
	}
	p.Lines = append(p.Lines, svgLine{X1: px(x0), Y1: "12", X2: px(x0), Y2: "128", Class: "axisline"})
	return p
}

func (r *Report) view() htmlView {
	v := htmlView{Title: fmt.Sprintf("Evaluation: %s %s", r.Model, r.Version), Pass: r.Gate.Pass, Notes: r.Notes}
	for _, g := range r.Gate.Results {
		name, th := checkLabel(g)
		v.GateRows = append(v.GateRows, htmlRow{[]string{name, fv(g.Value, 3), th, passText(g.Pass), fmt.Sprintf("%+.3f", g.Margin)}})
	}
	v.Summary = fmt.Sprintf("%s task, %d test examples, reference: %s", r.Task, r.Examples, r.Reference)
	if r.Skipped > 0 {
		v.Summary += fmt.Sprintf(" (%d skipped: the teacher named no label)", r.Skipped)
	}
	for _, name := range r.sortedMetrics() {
		s := r.Quality[name]
		v.Quality = append(v.Quality, htmlRow{[]string{name, fv(s.Student, 4), f(s.Int4, 4), fv(s.Teacher, 4)}})
	}
	if c := r.Class; c != nil {
		v.DetailHead = []string{"model", "accuracy", "macro F1", "unparsed", "teacher agreement", "KL(teacher‖model)", "ECE"}
		for _, m := range []struct {
			name string
			m    *ClassMetrics
		}{{"student", &c.Student}, {"int4", c.Int4}, {"teacher", &c.Teacher}} {
			if m.m != nil {
				v.Details = append(v.Details, htmlRow{[]string{m.name, fv(m.m.Accuracy, 4), fv(m.m.MacroF1, 4), fmt.Sprint(m.m.Unparsed), f(m.m.TeacherAgreement, 4), f(m.m.KL, 4), f(m.m.ECE, 4)}})
			}
		}
		for _, l := range c.Student.PerLabel {
			v.PerLabel = append(v.PerLabel, htmlRow{[]string{l.Label, fmt.Sprint(l.Support), fmt.Sprint(l.Predicted), fv(l.Precision, 4), fv(l.Recall, 4), fv(l.F1, 4)}})
		}
		v.Plots = append(v.Plots, confusionPlot(c.Student.Confusion), reliabilityPlot(c.Student.Reliability))
	} else {
		v.Plots = append(v.Plots, plot{ID: "confusion-matrix", Title: "Confusion matrix", Note: "Generation task: no confusion matrix."},
			plot{ID: "reliability-diagram", Title: "Reliability diagram", Note: "Generation task: no reliability diagram."})
	}
	if g := r.Gen; g != nil {
		v.DetailHead = []string{"model", "exact match", "token F1", "ROUGE-L", "perplexity", "tokens"}
		for _, m := range []struct {
			name string
			m    *GenMetrics
		}{{"student", &g.Student}, {"int4", g.Int4}, {"teacher", &g.Teacher}} {
			if m.m != nil {
				v.Details = append(v.Details, htmlRow{[]string{m.name, fv(m.m.ExactMatch, 4), fv(m.m.TokenF1, 4), fv(m.m.RougeL, 4), f(m.m.Perplexity, 3), fmt.Sprint(m.m.Tokens)}})
			}
		}
	}
	note := ""
	if r.Training == nil {
		note = "No training log (metrics.jsonl): no loss curve."
	}
	v.Plots = append(v.Plots, lossPlot(r.curve, note), costPlot(r.Cost))
	for _, l := range []struct {
		name string
		s    *LatencyStats
	}{{"student", r.Latency.Student}, {"int4", r.Latency.Int4}, {"teacher", r.Latency.Teacher}} {
		if l.s != nil {
			v.Latency = append(v.Latency, htmlRow{[]string{l.name, fmt.Sprint(l.s.N), fv(l.s.MeanMS, 1), fv(l.s.P50MS, 1), fv(l.s.P95MS, 1), fv(l.s.MaxMS, 1), fv(l.s.TokensPerSec, 1)}})
		}
	}
	c := r.Cost
	v.Served = c.Served
	v.Cost = []htmlRow{
		{[]string{"per 1M requests", usd(c.StudentUSDPer1MRequests), usd(c.TeacherUSDPer1MRequests)}},
		{[]string{"tokens per request", fv(c.StudentTokensPerRequest, 1), fv(c.TeacherInputTokens, 1) + " in + " + fv(c.TeacherOutputTokens, 1) + " out"}},
		{[]string{"price", fmt.Sprintf("%s per 1M tokens (hardware $%.2f/h at %s tokens/s)", usd(c.StudentUSDPerMTok), c.HardwareUSDPerHour, fv(c.StudentTokensPerSec, 1)),
			fmt.Sprintf("$%.2f / $%.2f per 1M input / output tokens", c.TeacherPrice.InputPerMTok, c.TeacherPrice.OutputPerMTok)}},
	}
	cal := r.Calibration
	v.Threshold = []htmlRow{{[]string{fv(r.Threshold, 4), fv(cal.TargetPrecision, 3), fmt.Sprint(cal.ValExamples), fv(cal.Precision, 4), fv(cal.Coverage, 4)}}}
	return v
}

// WriteHTML writes the self-contained report.html.
func (r *Report) WriteHTML(w io.Writer) error {
	return htmlTmpl.Execute(w, r.view())
}

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a202c; margin: 24px auto; max-width: 1000px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #e2e8f0; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #e2e8f0; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f7fafc; }
.banner { padding: 10px 14px; border-radius: 6px; font-weight: 600; font-size: 16px; }
.banner.pass { background: #c6f6d5; color: #22543d; }
.banner.fail { background: #fed7d7; color: #742a2a; }
td.PASS { color: #22543d; font-weight: 600; }
td.FAIL { color: #9b2c2c; font-weight: 600; }
.note { color: #4a5568; font-style: italic; }
.plots { display: flex; flex-wrap: wrap; gap: 24px; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg { display: block; background: #fff; }
svg text { font: 12px system-ui, sans-serif; fill: #1a202c; }
svg text.small { font-size: 11px; }
svg text.tiny { font-size: 9px; }
svg text.light { fill: #fff; }
svg text.axis { font-size: 12px; font-weight: 600; fill: #2d3748; }
.cell { stroke: #fff; stroke-width: 1; }
.cell.diag { stroke: #1a202c; stroke-width: 1.5; }
.axisline { stroke: #4a5568; stroke-width: 1; }
.grid { stroke: #edf2f7; stroke-width: 1; }
.bar { fill: #63b3ed; }
.dot { fill: #2b6cb0; }
.diagonal { stroke: #e53e3e; stroke-width: 1.5; stroke-dasharray: 5 4; }
polyline.train { fill: none; stroke: #2b6cb0; stroke-width: 1.5; }
polyline.val { fill: none; stroke: #dd6b20; stroke-width: 1.5; }
.valdot { fill: #dd6b20; }
.teacher { fill: #a0aec0; }
.student { fill: #38a169; }
.legend { font-size: 12px; color: #4a5568; }
.legend span { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 4px 0 10px; }
.legend .train { background: #2b6cb0; } .legend .val { background: #dd6b20; }
.legend .bar { background: #63b3ed; height: 10px; } .legend .diagonal { background: #e53e3e; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<section id="gate">
<div class="banner {{if .Pass}}pass{{else}}fail{{end}}">Quality gate: {{if .Pass}}PASS{{else}}FAIL{{end}}</div>
<table>
<tr><th>check</th><th>value</th><th>threshold</th><th>result</th><th>margin</th></tr>
{{range .GateRows}}<tr>{{range $i, $c := .Cells}}<td{{if eq $i 3}} class="{{$c}}"{{end}}>{{$c}}</td>{{end}}</tr>
{{end}}</table>
{{range .Notes}}<p class="note">{{.}}</p>
{{end}}</section>
<section id="quality">
<h2>Quality</h2>
<p>{{.Summary}}.</p>
<table>
<tr><th>metric</th><th>student</th><th>int4</th><th>teacher</th></tr>
{{range .Quality}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{if .Details}}<table>
<tr>{{range .DetailHead}}<th>{{.}}</th>{{end}}</tr>
{{range .Details}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
{{if .PerLabel}}<h2>Per label (student)</h2>
<table>
<tr><th>label</th><th>support</th><th>predicted</th><th>precision</th><th>recall</th><th>F1</th></tr>
{{range .PerLabel}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
</section>
<h2>Plots</h2>
<div class="plots">
{{range .Plots}}<figure id="{{.ID}}">
<figcaption>{{.Title}}</figcaption>
{{if .Note}}<p class="note">{{.Note}}</p>{{else}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Desc}}">
{{range .Grid}}<line x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}" class="{{.Class}}"/>
{{end}}{{range .Rects}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"{{if .Fill}} fill="{{.Fill}}"{{end}} class="{{.Class}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Lines}}<line x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}" class="{{.Class}}"/>
{{end}}{{range .Paths}}<polyline points="{{.Points}}" class="{{.Class}}"/>
{{end}}{{range .Dots}}<circle cx="{{.X}}" cy="{{.Y}}" r="3.5" class="{{.Class}}"><title>{{.Title}}</title></circle>
{{end}}{{range .Texts}}<text x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}"{{if .Rotate}} transform="{{.Rotate}}"{{end}} class="{{.Class}}">{{.Text}}{{if .Title}}<title>{{.Title}}</title>{{end}}</text>
{{end}}</svg>
{{if .Legend}}<div class="legend">{{range .Legend}}<span class="{{.Class}}"></span>{{.Text}}{{end}}</div>{{end}}{{end}}
</figure>
{{end}}</div>
<h2>Confidence threshold</h2>
<table>
<tr><th>threshold</th><th>target precision</th><th>val examples</th><th>precision</th><th>coverage</th></tr>
{{range .Threshold}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
<h2>Cost</h2>
<table>
<tr><th></th><th>{{.Served}} student (served)</th><th>teacher</th></tr>
{{range .Cost}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{if .Latency}}<h2>Latency</h2>
<table>
<tr><th>model</th><th>requests</th><th>mean ms</th><th>p50 ms</th><th>p95 ms</th><th>max ms</th><th>tokens/s</th></tr>
{{range .Latency}}<tr>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
</body>
</html>
`))
