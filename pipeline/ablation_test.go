package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/lora"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/store"
)

// ablationConfig is models/build/ablation.json, fixed before the runs.
type ablationConfig struct {
	Seeds         []uint64       `json:"seeds"`
	TrainExamples int            `json:"train_examples"`
	TestExamples  int            `json:"test_examples"`
	Steps         int            `json:"steps"`
	BatchSize     int            `json:"batch_size"`
	LR            float64        `json:"learning_rate"`
	MaxSeqLen     int            `json:"max_seq_len"`
	LoRA          lora.Config    `json:"-"`
	LoRAJSON      map[string]any `json:"lora"`
	KD            distill.KDSpec `json:"kd"`
	Hard          distill.KDSpec `json:"hard"`
}

// TestKDAblation compares soft-label KD with hard-label training on the
// teacher's answers: same student base, data, LoRA settings and steps,
// five seeds, scored on held-out agreement with the teacher and accuracy
// on the gold labels. It reports the paired mean difference with its 95%
// confidence interval, whichever way it comes out. `make bench` runs it
// (DISTILLERY_ABLATION=1); it needs the models `make teacher` builds.
func TestKDAblation(t *testing.T) {
	if os.Getenv("DISTILLERY_ABLATION") == "" {
		t.Skip("set DISTILLERY_ABLATION=1 (make bench) to run the KD ablation")
	}
	root := filepath.Join("..")
	var cfg ablationConfig
	data, err := os.ReadFile(filepath.Join(root, "models/build/ablation.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	lj, _ := json.Marshal(cfg.LoRAJSON)
	var lc struct {
		Rank          int      `json:"rank"`
		Alpha         float64  `json:"alpha"`
		Dropout       float64  `json:"dropout"`
		TargetModules []string `json:"target_modules"`
	}
	json.Unmarshal(lj, &lc)
	cfg.LoRA = lora.Config{Rank: lc.Rank, Alpha: lc.Alpha, Dropout: lc.Dropout, TargetModules: lc.TargetModules}
	ctx := context.Background()
	r, err := recipes.Load(filepath.Join(root, "recipes/examples/quickstart.yaml"), recipes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.NewBackend("")
	if err != nil {
		t.Fatal(err)
	}
	teacher, err := model.Load(filepath.Join(root, "models/fine-foods-teacher"), model.LoadOptions{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := model.LoadTokenizer(filepath.Join(root, "models/fine-foods-teacher"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	if _, err := datasets.Import(ctx, ImportOptions(r, filepath.Join(tmp, ExamplesFile))); err != nil {
		t.Fatal(err)
	}
	spec := PromptSpec(r)
	labels := r.Task.Labels
	so := distill.SequenceOptions{Tokenizer: tok, MaxLen: cfg.MaxSeqLen, Labels: labels}
	labelIDs, err := distill.LabelTokens(tok, labels)
	if err != nil {
		t.Fatal(err)
	}
	tcls, err := distill.NewClassifier(teacher, labelIDs)
	if err != nil {
		t.Fatal(err)
	}
	// The teacher's answers: its label distribution (soft) and argmax (hard).
	split := func(name string, n int) ([]distill.Sequence, []string) {
		rows, err := datasets.ReadSplit(filepath.Join(tmp, ExamplesFile), name)
		if err != nil {
			t.Fatal(err)
		}
		rows = rows[:min(n, len(rows))]
		var soft []datasets.SoftLabel
		var gold []string
		for _, e := range rows {
			soft = append(soft, datasets.SoftLabel{ID: e.ID, Prompt: spec.Render(e.Text), Completion: labels[0]})
			gold = append(gold, e.Label)
		}
		seqs, _, err := distill.BuildSequences(soft, so)
		if err != nil {
			t.Fatal(err)
		}
		preds, err := tcls.Classify(ctx, seqs, 16)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range preds {
			row := &soft[i]
			row.Completion, row.Label = labels[p.Label], labels[p.Label]
			other := 1.0
			for j, lp := range p.LabelLogprobs {
				pr := math.Exp(lp)
				other -= pr
				row.LabelDist = append(row.LabelDist, datasets.LabelProb{Label: labels[j], Prob: float32(pr)})
			}
			row.LabelDist = append(row.LabelDist, datasets.LabelProb{Label: datasets.OtherLabel, Prob: float32(math.Max(0, other))})
		}
		seqs, _, err = distill.BuildSequences(soft, so)
		if err != nil {
			t.Fatal(err)
		}
		return seqs, gold
	}
	train, _ := split("train", cfg.TrainExamples)
	test, gold := split("test", cfg.TestExamples)
	teacherPreds, err := tcls.Classify(ctx, test, 16)
	if err != nil {
		t.Fatal(err)
	}
	base, err := model.Load(filepath.Join(root, "models/fine-foods-student-base"), model.LoadOptions{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	host := base.HostWeights()
	score := func(seed uint64, loss distill.KDSpec) (agree, acc float64) {
		a, err := lora.New(cfg.LoRA, base.Config, seed, host)
		if err != nil {
			t.Fatal(err)
		}
		_, err = distill.Train(ctx, distill.TrainOptions{Config: base.Config, Backend: b, Base: host, Trainable: a, Train: train,
			K: len(labels), Loss: loss, MaxSteps: cfg.Steps, LR: cfg.LR, WarmupRatio: 0.05, MaxGradNorm: 1,
			BatchSize: cfg.BatchSize, GradAccum: 1, Seed: seed, Dropout: true, Bucketing: true, LabelIDs: labelIDs})
		if err != nil {
			t.Fatal(err)
		}
		m, err := a.Model(base.Config, host, model.LoadOptions{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		c, err := distill.NewClassifier(m, labelIDs)
		if err != nil {
			t.Fatal(err)
		}
		preds, err := c.Classify(ctx, test, 16)
		if err != nil {
			t.Fatal(err)
		}
		var ag, ac int
		for i, p := range preds {
			if p.Label == teacherPreds[i].Label {
				ag++
			}
			if labels[p.Label] == gold[i] {
				ac++
			}
		}
		return float64(ag) / float64(len(preds)), float64(ac) / float64(len(preds))
	}
	type run struct {
		Seed                             uint64
		KDAgree, KDAcc, HardAgree, HdAcc float64
	}
	var runs []run
	for _, seed := range cfg.Seeds {
		var x run
		x.Seed = seed
		x.KDAgree, x.KDAcc = score(seed, cfg.KD)
		x.HardAgree, x.HdAcc = score(seed, cfg.Hard)
		t.Logf("seed %d: KD agreement %.4f accuracy %.4f | hard agreement %.4f accuracy %.4f", seed, x.KDAgree, x.KDAcc, x.HardAgree, x.HdAcc)
		runs = append(runs, x)
	}
	var dAgree, dAcc []float64
	for _, x := range runs {
		dAgree, dAcc = append(dAgree, x.KDAgree-x.HardAgree), append(dAcc, x.KDAcc-x.HdAcc)
	}
	var teacherAcc int
	for i, p := range teacherPreds {
		if labels[p.Label] == gold[i] {
			teacherAcc++
		}
	}
	res := map[string]any{"config": cfg, "runs": runs, "teacher_test_accuracy": float64(teacherAcc) / float64(len(gold)),
		"agreement_kd_minus_hard": pairedCI(dAgree), "accuracy_kd_minus_hard": pairedCI(dAcc)}
	out, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", out)
	if err := os.MkdirAll(filepath.Join(root, "build"), 0o755); err == nil {
		store.WriteFileAtomic(filepath.Join(root, "build", "ablation.json"), out)
	}
	var sb strings.Builder
	for name, d := range map[string][]float64{"agreement": dAgree, "accuracy": dAcc} {
		ci := pairedCI(d)
		fmt.Fprintf(&sb, "KD - hard %s: mean %+.4f, 95%% CI [%+.4f, %+.4f] over %d seeds\n", name, ci["mean"], ci["lo"], ci["hi"], len(d))
	}
	t.Log(sb.String())
}

// pairedCI is the mean of paired differences with a two-sided 95% t
// interval.
func pairedCI(d []float64) map[string]float64 {
	n := float64(len(d))
	var mean float64
	for _, x := range d {
		mean += x / n
	}
	var ss float64
	for _, x := range d {
		ss += (x - mean) * (x - mean)
	}
	sd := math.Sqrt(ss / (n - 1))
	// t quantiles at 0.975 for 1..9 degrees of freedom.
	tq := []float64{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262}
	q := 1.96
	if k := int(n) - 1; k >= 1 && k <= len(tq) {
		q = tq[k-1]
	}
	half := q * sd / math.Sqrt(n)
	return map[string]float64{"mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half, "n": n}
}
