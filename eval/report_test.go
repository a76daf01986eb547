package eval

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/distillery/distillery/routes"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ and eval/REPORT.md")

// fixture is a fixed classification evaluation: 12 test examples with gold
// labels, an INT4 student, latencies, token counts, a val split and a
// training log.
func fixture() Input {
	labels := []string{"positive", "negative", "neutral"}
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	rep := func(x, n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = x + i%3
		}
		return out
	}
	return Input{
		Model: "fine-foods-sentiment", Version: "20261127-081753-b69857", Task: routes.TaskClassification,
		Labels: labels, TeacherKind: "openai",
		Gold: []string{"positive", "positive", "positive", "positive", "negative", "negative", "negative", "negative", "neutral", "neutral", "neutral", "neutral"},
		Teacher: Answers{
			Texts: []string{"Positive.", "positive", "positive", "positive", "negative", "Negative", "negative", "neutral", "neutral", "neutral", "neutral", "negative"},
			Dists: [][]float64{
				{0.9, 0.05, 0.05, 0}, {0.95, 0.03, 0.02, 0}, {0.8, 0.1, 0.1, 0}, {0.7, 0.2, 0.1, 0},
				{0.1, 0.85, 0.05, 0}, {0.05, 0.9, 0.05, 0}, {0.2, 0.7, 0.1, 0}, {0.1, 0.4, 0.5, 0},
				{0.1, 0.1, 0.8, 0}, {0.2, 0.1, 0.7, 0}, {0.05, 0.05, 0.9, 0}, {0.1, 0.5, 0.4, 0},
			},
			Latencies:    ms(420, 380, 510, 450, 600, 390, 470, 530, 410, 440, 700, 460),
			InputTokens:  rep(70, 12),
			OutputTokens: rep(2, 12),
		},
		Student: Answers{
			Texts: []string{"positive", "positive", "positive", "negative", "negative", "negative", "negative", "negative", "neutral", "positive", "I think so", "neutral"},
			Dists: [][]float64{
				{0.92, 0.05, 0.03}, {0.85, 0.1, 0.05}, {0.75, 0.15, 0.1}, {0.3, 0.6, 0.1},
				{0.1, 0.8, 0.1}, {0.05, 0.9, 0.05}, {0.15, 0.65, 0.2}, {0.1, 0.35, 0.55},
				{0.1, 0.1, 0.8}, {0.5, 0.1, 0.4}, {0.2, 0.2, 0.2, 0.4}, {0.1, 0.3, 0.6},
			},
			Latencies:    ms(31, 28, 35, 30, 29, 33, 40, 27, 32, 30, 55, 31),
			InputTokens:  rep(60, 12),
			OutputTokens: rep(1, 12),
		},
		Int4: &Answers{
			Texts: []string{"positive", "positive", "negative", "negative", "negative", "negative", "negative", "negative", "neutral", "positive", "", "neutral"},
			Dists: [][]float64{
				{0.9, 0.06, 0.04}, {0.8, 0.12, 0.08}, {0.4, 0.45, 0.15}, {0.3, 0.62, 0.08},
				{0.12, 0.78, 0.1}, {0.06, 0.88, 0.06}, {0.15, 0.6, 0.25}, {0.1, 0.38, 0.52},
				{0.12, 0.1, 0.78}, {0.52, 0.1, 0.38}, {0.2, 0.2, 0.2, 0.4}, {0.12, 0.3, 0.58},
			},
			Latencies:    ms(18, 17, 20, 19, 18, 21, 25, 17, 19, 18, 30, 19),
			InputTokens:  rep(60, 12),
			OutputTokens: rep(1, 12),
		},
		Gate:            Gate{Metric: "accuracy", MinParity: 0.95, MaxInt4Drop: 0.02},
		TargetPrecision: 0.9,
		Val: &ValSet{
			Gold: []string{"positive", "negative", "neutral", "positive", "negative", "neutral", "positive", "negative", "neutral", "positive"},
			Student: Answers{
				Texts: []string{"positive", "negative", "neutral", "positive", "negative", "positive", "negative", "negative", "neutral", "positive"},
				Dists: [][]float64{
					{0.95, 0.03, 0.02}, {0.1, 0.88, 0.02}, {0.1, 0.1, 0.8}, {0.7, 0.2, 0.1}, {0.2, 0.75, 0.05},
					{0.6, 0.1, 0.3}, {0.3, 0.55, 0.15}, {0.05, 0.9, 0.05}, {0.15, 0.1, 0.75}, {0.65, 0.3, 0.05},
				},
			},
		},
		TeacherPrice:       routes.Price{InputPerMTok: 0.15, OutputPerMTok: 0.6},
		HardwareUSDPerHour: 1.2,
		TrainLog:           filepath.Join("testdata", "metrics.jsonl"),
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./eval -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./eval -update rewrites it):\n%s", name, got)
	}
}

func TestReportGolden(t *testing.T) {
	r, err := Evaluate(fixture())
	if err != nil {
		t.Fatal(err)
	}
	var js, md bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", js.Bytes())
	golden(t, "report.md", md.Bytes())

	// Spot checks of the hand-computable numbers behind the golden files.
	// Student: 9 of 12 right (3, 9, 10 wrong); teacher 10 (7, 11 wrong); INT4 8 (2, 3, 9, 10 wrong).
	q := r.Quality["accuracy"]
	near(t, "student accuracy", q.Student, 9.0/12)
	near(t, "teacher accuracy", q.Teacher, 10.0/12)
	near(t, "int4 accuracy", *q.Int4, 8.0/12)
	// parity 0.9 < 0.95; drop 1/12 > 0.02: both fail.
	var ge *GateError
	if r.Gate.Pass || !errors.As(r.GateError(), &ge) || len(ge.Failed) != 2 {
		t.Errorf("gate %+v", r.Gate)
	}
	near(t, "parity", r.Gate.Results[0].Value, 0.9)
	if r.Class.Student.Unparsed != 1 || r.Class.Int4.Unparsed != 1 {
		t.Errorf("unparsed %d %d", r.Class.Student.Unparsed, r.Class.Int4.Unparsed)
	}
	// Val confidences, descending: .95✓ .9✓ .88✓ .8✓ .75✓ .75✓ .7✓ .65✓ .6✗ .55✗:
	// 8/8 at 0.65, 8/9 below: the threshold is 0.65 (precision 1, coverage 0.8).
	if r.Threshold != 0.65 || r.Calibration.Precision != 1 || r.Calibration.Coverage != 0.8 || r.Calibration.ValExamples != 10 {
		t.Errorf("calibration %v %+v", r.Threshold, r.Calibration)
	}
	// Cost: the INT4 student is served, 61 + 2 tokens per request.
	c := r.Cost
	near(t, "student tokens per request", c.StudentTokensPerRequest, 63)
	if c.Served != "int4" || c.StudentUSDPer1MRequests == nil || c.TeacherUSDPer1MRequests == nil || c.Savings == nil {
		t.Fatalf("cost %+v", c)
	}
	// Teacher: 71 input (70,71,72 mean), 3 output (2,3,4 mean) tokens: 71·0.15 + 3·0.6.
	near(t, "teacher cost", *c.TeacherUSDPer1MRequests, 71*0.15+3*0.6)
	if s := r.Training; s == nil || s.Steps != 200 || *s.BestValStep != 200 {
		t.Errorf("training %+v", s)
	}

	// report.json reads back to the same numbers.
	back, err := ReadReport(js.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	r2 := *r
	r2.curve = nil
	if !reflect.DeepEqual(back, &r2) {
		t.Errorf("report.json does not read back equal")
	}
}

func TestReportFiles(t *testing.T) {
	r, err := Evaluate(fixture())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := r.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "report.html,report.json,report.md" {
		t.Fatalf("files %v (temp files left?)", names)
	}
	html, _ := os.ReadFile(filepath.Join(dir, ReportHTML))
	checkHTMLStatic(t, string(html), "confusion-matrix", "reliability-diagram", "loss-curve", "cost-chart")
}

// checkHTMLStatic checks report.html without a browser: every element id,
// SVG content in the plots named by withSVG, and no script, no external
// resource and no CSS import.
func checkHTMLStatic(t *testing.T, html string, withSVG ...string) {
	t.Helper()
	for _, id := range []string{"gate", "quality", "confusion-matrix", "reliability-diagram", "loss-curve", "cost-chart"} {
		if !strings.Contains(html, `id="`+id+`"`) {
			t.Errorf("no element with id %q", id)
		}
	}
	for _, id := range withSVG {
		i := strings.Index(html, `id="`+id+`"`)
		if i < 0 {
			continue
		}
		seg := html[i:]
		seg = seg[:strings.Index(seg, "</figure>")]
		if !strings.Contains(seg, "<svg") || !strings.Contains(seg, "<rect") && !strings.Contains(seg, "<polyline") {
			t.Errorf("%s has no SVG content", id)
		}
	}
	low := strings.ToLower(html)
	if strings.Contains(low, "<script") || externalRef.MatchString(low) || strings.Contains(low, "@import") || strings.Contains(low, "url(") {
		t.Errorf("report.html holds a script or an external reference")
	}
}

// externalRef matches a src or href attribute inside a tag.
var externalRef = regexp.MustCompile(`<[^>]*\s(src|href)\s*=`)

func TestReportTeacherReference(t *testing.T) {
	// Without gold labels the teacher's answers are the reference: the
	// teacher scores 1, and the example whose teacher answer names no label
	// is skipped.
	in := fixture()
	in.Gold = nil
	in.Teacher.Texts[3] = "I refuse"
	r, err := Evaluate(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Reference != "teacher" || r.Skipped != 1 || r.Examples != 11 {
		t.Errorf("reference %s skipped %d examples %d", r.Reference, r.Skipped, r.Examples)
	}
	for name, s := range r.Quality {
		if s.Teacher != 1 {
			t.Errorf("teacher %s = %v, want 1", name, s.Teacher)
		}
	}
	// Student vs teacher on the 11 kept: wrong at 7 (negative vs neutral),
	// 9 (positive vs neutral), 10 (unparsed), 11 (neutral vs negative).
	near(t, "student accuracy", r.Quality["accuracy"].Student, 7.0/11)
	near(t, "parity", r.Gate.Results[0].Value, 7.0/11)

	// teacher.kind labels: the teacher's answers are the gold labels.
	in = fixture()
	in.TeacherKind = "labels"
	in.Teacher = Answers{Texts: append([]string{}, in.Gold...)}
	in.TeacherPrice = routes.Price{}
	if r, err = Evaluate(in); err != nil {
		t.Fatal(err)
	}
	if q := r.Quality["accuracy"]; q.Teacher != 1 || r.Gate.Results[0].Value != q.Student {
		t.Errorf("labels teacher: %+v, parity %v", q, r.Gate.Results[0].Value)
	}
	if !strings.Contains(strings.Join(r.Notes, " "), "gold source") {
		t.Errorf("notes %q", r.Notes)
	}
	if r.Cost.TeacherUSDPer1MRequests != nil {
		t.Errorf("labels teacher cost %v, want null (no token counts)", *r.Cost.TeacherUSDPer1MRequests)
	}
}

func TestFillRoutes(t *testing.T) {
	r, err := Evaluate(fixture())
	if err != nil {
		t.Fatal(err)
	}
	rt := routes.Example()
	rt.Quality, rt.Latency = nil, routes.Latency{}
	r.FillRoutes(rt)
	if _, err := rt.Marshal(); err != nil {
		t.Fatalf("filled routes invalid: %v", err)
	}
	if rt.ConfidenceThreshold != 0.65 || rt.Latency.P50MS != r.Latency.Int4.P50MS || rt.Quality["accuracy"] != r.Quality["accuracy"] ||
		rt.Prices.StudentUSDPerMTok != *r.Cost.StudentUSDPerMTok {
		t.Errorf("routes %+v", rt)
	}

	// Without a val split the gateway always escalates.
	in := fixture()
	in.Val = nil
	r, _ = Evaluate(in)
	r.FillRoutes(rt)
	if rt.ConfidenceThreshold != routes.Escalate || rt.Calibration.ValExamples != 0 || rt.Calibration.TargetPrecision != 0.9 {
		t.Errorf("uncalibrated: %v %+v", rt.ConfidenceThreshold, rt.Calibration)
	}
	if _, err := rt.Marshal(); err != nil {
		t.Fatal(err)
	}
}

func TestGenerationReport(t *testing.T) {
	in := Input{
		Model: "extract", Version: "v1", Task: routes.TaskGeneration, TeacherKind: "openai",
		Teacher: Answers{Texts: []string{`{"product": "tea", "stars": 5}`, `{"product": "coffee", "stars": 2}`}, LogProbs: [][]float64{{-0.1, -0.2}, {-0.3}},
			InputTokens: []int{100, 120}, OutputTokens: []int{12, 12}},
		Student: Answers{Texts: []string{`{"product": "tea", "stars": 5}`, `{"product": "coffee", "stars": 3}`}, LogProbs: [][]float64{{-0.5, -0.7}, {-0.2}},
			Latencies: []time.Duration{80 * time.Millisecond, 90 * time.Millisecond}, InputTokens: []int{100, 120}, OutputTokens: []int{12, 12}},
		Gate:               Gate{MinParity: 0.85},
		TargetPrecision:    0.95,
		TeacherPrice:       routes.Price{InputPerMTok: 2.5, OutputPerMTok: 10},
		HardwareUSDPerHour: 2,
		TrainLog:           filepath.Join(t.TempDir(), "missing.jsonl"),
	}
	r, err := Evaluate(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Gate.Metric != "rouge_l" || r.Class != nil || r.Gen == nil || r.Threshold != 0 || r.Training != nil {
		t.Fatalf("report %+v", r)
	}
	// Second answer: 3 of 4 white-space tokens in order → ROUGE-L 0.75; mean (1 + 0.75)/2.
	near(t, "rouge_l", r.Quality["rouge_l"].Student, 0.875)
	near(t, "parity", r.Gate.Results[0].Value, 0.875)
	if !r.Gate.Pass {
		t.Errorf("gate %+v", r.Gate)
	}
	var html bytes.Buffer
	if err := r.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	s := html.String()
	for _, want := range []string{"Generation task: no confusion matrix.", "No training log (metrics.jsonl)", `id="cost-chart"`} {
		if !strings.Contains(s, want) {
			t.Errorf("html lacks %q", want)
		}
	}
	rt := routes.Example()
	rt.Task, rt.Labels, rt.Parser = routes.TaskGeneration, nil, routes.Parser{Mode: routes.ParseTextMode, MaxTokens: 64}
	r.FillRoutes(rt)
	if _, err := rt.Marshal(); err != nil {
		t.Fatalf("generation routes: %v", err)
	}
}

func TestEvaluateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Input)
		want string
	}{
		{"lengths", func(in *Input) { in.Teacher.Texts = in.Teacher.Texts[:3] }, "teacher has 3 answers for 12"},
		{"dists", func(in *Input) { in.Student.Dists = in.Student.Dists[:3] }, "student has 3 distributions"},
		{"gold", func(in *Input) { in.Gold[2] = "" }, "gold label of example 2 is empty"},
		{"gold label", func(in *Input) { in.Gold[2] = "great" }, `"great" of example 2`},
		{"metric", func(in *Input) { in.Gate.Metric = "rouge_l" }, `gate metric "rouge_l"`},
		{"task", func(in *Input) { in.Task = "ranking" }, "task"},
		{"target", func(in *Input) { in.TargetPrecision = 0 }, "target precision"},
		{"val dists", func(in *Input) { in.Val.Student.Dists = nil }, "val set has 0 student distributions"},
		{"bad log", func(in *Input) {
			p := filepath.Join(t.TempDir(), "eval-bad-metrics.jsonl")
			os.WriteFile(p, []byte("{\"step\":1,\"loss\":2}\nnot json\n{\"step\":3}\n"), 0o644)
			in.TrainLog = p
		}, "eval-bad-metrics.jsonl:2"},
	} {
		in := fixture()
		tc.mod(&in)
		if _, err := Evaluate(in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestReadTrainLog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.jsonl")
	// Both line kinds, a blank line, unknown keys, and a last line cut short.
	os.WriteFile(p, []byte("{\"step\":1,\"loss\":2.5,\"lr\":0.001}\n\n{\"step\":2,\"val_loss\":2.1,\"val_accuracy\":0.5}\n{\"step\":3,\"loss\":2.0,\"val_loss\":1.9}\n{\"step\":4,\"lo"), 0o644)
	pts, err := ReadTrainLog(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 3 || *pts[0].LR != 0.001 || pts[1].Loss != nil || *pts[2].ValLoss != 1.9 {
		t.Fatalf("points %+v", pts)
	}
	s := summarize(pts)
	if s.Steps != 3 || *s.FinalLoss != 2.0 || *s.BestValLoss != 1.9 || *s.BestValStep != 3 {
		t.Errorf("summary %+v", s)
	}
	os.WriteFile(p, []byte("{\"loss\":1}\n"), 0o644)
	if _, err := ReadTrainLog(p); err == nil || !strings.Contains(err.Error(), ":1: no step") {
		t.Errorf("line without step: %v", err)
	}
	if _, err := ReadTrainLog(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestReportReference(t *testing.T) {
	got := ReportReference()
	path := "REPORT.md"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != got {
		t.Fatalf("eval/REPORT.md is stale: run go test ./eval -run TestReportReference -update (%v)", err)
	}
	// Every key of a full report.json is documented.
	r, _ := Evaluate(fixture())
	var js bytes.Buffer
	r.WriteJSON(&js)
	for _, line := range strings.Split(js.String(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `"`) || !strings.Contains(line, `":`) {
			continue
		}
		key := strings.Trim(line[:strings.Index(line, `":`)+1], `"`)
		if !strings.Contains(got, "."+key+"`") && !strings.Contains(got, "`"+key+"`") && !isMapKey(r, key) {
			t.Errorf("report.json key %q is not in eval/REPORT.md", key)
		}
	}
}

// isMapKey: metric names are keys of quality, not fields.
func isMapKey(r *Report, key string) bool {
	_, ok := r.Quality[key]
	return ok
}
