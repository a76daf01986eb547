package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/compute"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/eval"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/routes"
	"github.com/distillery/distillery/store"
)

// RoutesFile is the eval stage's routing metadata for the gateway.
const RoutesFile = routes.FileName

// EvalStage scores the full-precision and INT4 students and the teacher's
// stored answers on the test split, writes report.{json,md,html} and
// routes.json, and fails with ErrQualityGate when the parity gate fails.
type EvalStage struct{}

func (EvalStage) Name() string { return "eval" }

func (EvalStage) Key(_ context.Context, r *recipes.Recipe) (Key, error) {
	return Key{Version: "1", Config: struct {
		Eval    recipes.Eval
		Routing recipes.Routing
		Price   recipes.Price
		Name    string
	}{r.Eval, r.Routing, r.Teacher.Price, publishName(r)}}, nil
}

func publishName(r *recipes.Recipe) string {
	if r.Publish.Name != "" {
		return r.Publish.Name
	}
	return r.Name
}

// answerer is one model being evaluated.
type answerer struct {
	m   *model.Model
	cls *distill.Classifier
}

func (EvalStage) Run(ctx context.Context, sc *StageContext) error {
	r := sc.Recipe
	if r.Task.Kind == "lm" {
		sc.Summarize("skipped", "task.kind lm has no task metric; see the train stage's val loss")
		return nil
	}
	b, err := model.NewBackend(r.Student.Backend)
	if err != nil {
		return Invalid(err)
	}
	fpDir := sc.UpstreamFile("train", ModelDir)
	tok, err := model.LoadTokenizer(fpDir)
	if err != nil {
		return err
	}
	rows, err := datasets.ReadSoftLabels(sc.UpstreamFile("harvest", SoftLabelsFile))
	if err != nil {
		return err
	}
	examples, err := datasets.ReadExamples(sc.UpstreamFile("data", ExamplesFile))
	if err != nil {
		return err
	}
	gold := map[string]string{}
	texts := map[string]string{}
	for _, e := range examples {
		gold[e.ID], texts[e.ID] = e.Label, e.Text
	}
	test, val := splitRows(rows, "test", r.Eval.MaxExamples), splitRows(rows, "val", 0)
	if len(test) == 0 {
		return Invalid(errors.New("eval: the harvest has no test rows; give data.split.test a share or a test source"))
	}
	spec := PromptSpec(r)
	so := distill.SequenceOptions{Tokenizer: tok, System: r.Teacher.SystemPrompt, MaxLen: r.Student.MaxSeqLen, Labels: r.Task.Labels,
		Render: func(id string, drop int) (string, bool) {
			ids := tok.Encode(texts[id])
			return spec.Render(tok.Decode(ids[:max(0, len(ids)-drop)])), true
		}}
	models := map[string]string{"student": fpDir}
	if q := sc.UpstreamFile("quantize", ModelDir); dirExists(q) && r.Quantize.Method != "none" {
		models["int4"] = q
	}
	in := eval.Input{Model: publishName(r), Version: sc.RunID, Task: r.Task.Kind, Labels: r.Task.Labels, TeacherKind: r.Teacher.Kind,
		Teacher:         teacherAnswers(test, r.Task.Labels),
		Gate:            eval.Gate{Metric: r.Eval.Metric, MinParity: r.Eval.MinParity, MaxInt4Drop: r.Eval.MaxInt4Drop, NoRegression: r.Eval.NoRegression},
		TargetPrecision: r.Routing.TargetPrecision, HardwareUSDPerHour: r.Eval.HardwareUSDHour,
		TeacherPrice: routes.Price{InputPerMTok: r.Teacher.Price.InputPerMTok, OutputPerMTok: r.Teacher.Price.OutputPerMTok},
		TrainLog:     sc.UpstreamFile("train", distill.MetricsFile)}
	if r.Data.LabelField != "" || r.Teacher.Kind == "labels" {
		for _, row := range test {
			in.Gold = append(in.Gold, gold[row.ID])
		}
	}
	done, total := int64(0), int64(len(test)*len(models)+len(val))
	progress := func(n int) { done += int64(n); sc.Progress(done, total, "answers") }
	for _, name := range []string{"student", "int4"} {
		dir, ok := models[name]
		if !ok {
			continue
		}
		a, err := loadAnswerer(dir, b, r)
		if err != nil {
			return err
		}
		ans, err := a.answer(ctx, so, test, r, progress, true)
		if err != nil {
			return fmt.Errorf("eval %s: %w", name, err)
		}
		if name == "student" {
			in.Student = ans
			if len(val) > 0 && r.Task.Kind == "classification" {
				vans, err := a.answer(ctx, so, val, r, progress, false)
				if err != nil {
					return fmt.Errorf("eval %s val: %w", name, err)
				}
				vs := &eval.ValSet{Student: vans}
				for _, row := range val {
					vs.Teacher = append(vs.Teacher, row.Completion)
					if in.Gold != nil {
						vs.Gold = append(vs.Gold, gold[row.ID])
					}
				}
				in.Val = vs
			}
		} else {
			in.Int4 = &ans
		}
	}
	if in.Task == "classification" {
		if in.Before, err = scoreBase(ctx, r, b, so, test, in.Gold); err != nil {
			return fmt.Errorf("eval: the student before distillation: %w", err)
		}
	}
	if in.Previous, err = publishedScores(ctx, r); err != nil {
		sc.Log.Warn("no comparison with the published version", "error", err.Error())
	}
	rep, err := eval.Evaluate(in)
	if err != nil {
		return err
	}
	if err := rep.WriteFiles(sc.Dir); err != nil {
		return err
	}
	rt := &routes.Routes{ComplexityBand: r.Routing.ComplexityBand,
		Prompt: routes.Prompt{Template: r.Task.PromptTemplate, Instruction: r.Task.Instruction, System: r.Teacher.SystemPrompt,
			MaxInputChars: r.Task.MaxInputChars},
		Parser: routes.Parser{Stop: []string{}, MaxTokens: r.Teacher.MaxTokens}}
	rep.FillRoutes(rt)
	// model/ is served as it is: LoRA merged (the release's adapter/ is for
	// PEFT and vLLM users).
	rt.Artifacts = routes.Artifacts{Model: ModelDir}
	if err := rt.Write(filepath.Join(sc.Dir, RoutesFile)); err != nil {
		return err
	}
	summarizeReport(sc, rep)
	if gerr := rep.GateError(); gerr != nil {
		return gateFailed{fmt.Errorf("%v (report: %s)", gerr, filepath.Join(sc.Dir, "report.md"))}
	}
	return nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// splitRows keeps the rows of one split, at most limit (0: all).
func splitRows(rows []datasets.SoftLabel, split string, limit int) []datasets.SoftLabel {
	var out []datasets.SoftLabel
	for _, r := range rows {
		if r.Split == split && (limit <= 0 || len(out) < limit) {
			out = append(out, r)
		}
	}
	return out
}

// teacherAnswers are the harvest's stored answers, with the label
// distribution (labels, then the mass on none) and the request figures.
func teacherAnswers(rows []datasets.SoftLabel, labels []string) eval.Answers {
	var a eval.Answers
	for _, r := range rows {
		a.Texts = append(a.Texts, r.Completion)
		a.Latencies = append(a.Latencies, time.Duration(r.LatencyMS*float64(time.Millisecond)))
		a.InputTokens = append(a.InputTokens, int(r.InputTokens))
		a.OutputTokens = append(a.OutputTokens, int(r.OutputTokens))
		if len(labels) > 0 && len(r.LabelDist) > 0 {
			d := make([]float64, len(labels)+1)
			for _, lp := range r.LabelDist {
				if i := indexOfLabel(labels, lp.Label); i >= 0 {
					d[i] = float64(lp.Prob)
				} else {
					d[len(labels)] += float64(lp.Prob)
				}
			}
			a.Dists = append(a.Dists, d)
		}
	}
	if len(a.Dists) != len(a.Texts) {
		a.Dists = nil
	}
	return a
}

func indexOfLabel(labels []string, l string) int {
	for i, x := range labels {
		if x == l {
			return i
		}
	}
	return -1
}

func loadAnswerer(dir string, b compute.Backend, r *recipes.Recipe) (*answerer, error) {
	m, err := loadEvalModel(dir, b)
	if err != nil {
		return nil, err
	}
	a := &answerer{m: m}
	if r.Task.Kind == "classification" {
		tok, err := model.LoadTokenizer(dir)
		if err != nil {
			return nil, err
		}
		ids, err := distill.LabelTokens(tok, r.Task.Labels)
		if err != nil {
			return nil, err
		}
		if a.cls, err = distill.NewClassifier(m, ids); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// answer generates each row's answer greedily, one request at a time as
// the gateway would (timed when timed is set), and for classification
// scores the labels at the answer position.
func (a *answerer) answer(ctx context.Context, so distill.SequenceOptions, rows []datasets.SoftLabel, r *recipes.Recipe, progress func(int), timed bool) (eval.Answers, error) {
	var ans eval.Answers
	tok := so.Tokenizer
	maxNew := r.Teacher.MaxTokens
	reserve := maxNew
	if len(so.Labels) > 0 {
		reserve = distill.LabelReserve(tok, so.Labels) // the cut training made
	}
	prompts := make([][]int, len(rows))
	for i, row := range rows {
		ids, _, err := so.PromptIDs(row, reserve)
		if err != nil {
			return ans, err
		}
		prompts[i] = ids
	}
	gen := model.GenerateOptions{MaxNewTokens: maxNew, StopIDs: tok.EOS()}
	// One request at a time, as a gateway serves them: each is timed.
	for i, p := range prompts {
		t0 := time.Now()
		g := gen
		g.MaxNewTokens = min(maxNew, a.m.Config.MaxPositionEmbeddings-len(p))
		seqs, err := a.m.Generate(ctx, [][]int{p}, g, nil)
		if err != nil {
			return ans, err
		}
		var out []int
		for _, st := range seqs[0].Steps {
			out = append(out, st.ID)
		}
		if timed {
			ans.Latencies = append(ans.Latencies, time.Since(t0))
			ans.InputTokens = append(ans.InputTokens, len(p))
			ans.OutputTokens = append(ans.OutputTokens, len(out))
		}
		ans.Texts = append(ans.Texts, tok.DecodeSkipSpecial(out))
		if i%8 == 7 || i == len(prompts)-1 {
			progress(min(8, i%8+1))
		}
	}
	const batch = 8
	if a.cls != nil {
		labelled := make([]datasets.SoftLabel, len(rows))
		for i, row := range rows {
			labelled[i] = datasets.SoftLabel{ID: row.ID, Prompt: row.Prompt, Completion: r.Task.Labels[0], Label: row.Label}
		}
		seqs, _, err := distill.BuildSequences(labelled, so)
		if err != nil {
			return ans, err
		}
		preds, err := a.cls.Classify(ctx, seqs, batch)
		if err != nil {
			return ans, err
		}
		for _, p := range preds {
			d := make([]float64, len(p.LabelLogprobs)+1)
			var sum float64
			for j, lp := range p.LabelLogprobs {
				d[j] = math.Exp(lp)
				sum += d[j]
			}
			d[len(d)-1] = math.Max(0, 1-sum)
			ans.Dists = append(ans.Dists, d)
		}
	}
	return ans, nil
}

// summarizeReport puts the headline figures into the manifest.
func summarizeReport(sc *StageContext, rep *eval.Report) {
	for metric, s := range rep.Quality {
		sc.Summarize(metric+"_student", s.Student)
		sc.Summarize(metric+"_teacher", s.Teacher)
		if s.Int4 != nil {
			sc.Summarize(metric+"_int4", *s.Int4)
		}
	}
	sc.Summarize("gate_passed", rep.GateError() == nil)
	sc.Summarize("confidence_threshold", rep.Threshold)
	sc.Summarize("report", "report.html")
}

// scoreBase is the student base's accuracy (label argmax at the answer
// position) before distillation, against the gold labels or, without
// them, the teacher's answers.
func scoreBase(ctx context.Context, r *recipes.Recipe, b compute.Backend, so distill.SequenceOptions, rows []datasets.SoftLabel, gold []string) (*float64, error) {
	dir := r.Path(r.Student.Base)
	m, err := model.Load(dir, model.LoadOptions{Backend: b})
	if err != nil {
		return nil, err
	}
	ids, err := distill.LabelTokens(so.Tokenizer, r.Task.Labels)
	if err != nil {
		return nil, err
	}
	c, err := distill.NewClassifier(m, ids)
	if err != nil {
		return nil, err
	}
	labelled := make([]datasets.SoftLabel, len(rows))
	for i, row := range rows {
		labelled[i] = datasets.SoftLabel{ID: row.ID, Prompt: row.Prompt, Completion: r.Task.Labels[0]}
	}
	seqs, _, err := distill.BuildSequences(labelled, so)
	if err != nil {
		return nil, err
	}
	preds, err := c.Classify(ctx, seqs, 8)
	if err != nil {
		return nil, err
	}
	right := 0
	for i, p := range preds {
		ref := rows[i].Label
		if gold != nil {
			ref = gold[i]
		}
		if r.Task.Labels[p.Label] == ref {
			right++
		}
	}
	acc := float64(right) / float64(len(preds))
	return &acc, nil
}

// publishedScores reads the gated metric of the version currently published
// under the recipe's name; nil when none is.
func publishedScores(ctx context.Context, r *recipes.Recipe) (*eval.Previous, error) {
	s, err := openRecipeStore(ctx, r)
	if err != nil {
		return nil, err
	}
	rel, err := store.Latest(ctx, s, publishName(r))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	rc, err := s.Get(ctx, rel.Name+"/"+rel.Version+"/report.json")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	prev, err := eval.ReadReport(data)
	if err != nil {
		return nil, err
	}
	q, ok := prev.Quality[prev.Gate.Metric]
	if !ok || (r.Eval.Metric != "" && prev.Gate.Metric != r.Eval.Metric) {
		return nil, fmt.Errorf("the published version %s gates on %s", rel.Version, prev.Gate.Metric)
	}
	return &eval.Previous{Version: rel.Version, Student: q.Student, Int4: q.Int4}, nil
}
