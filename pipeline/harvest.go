package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/recipes"
)

// SoftLabelsFile is the harvest stage's output.
const SoftLabelsFile = "soft_labels.parquet"

// HarvestStage asks the teacher for every example and stores its answers
// and log-probabilities as soft labels.
type HarvestStage struct{}

func (HarvestStage) Name() string { return "harvest" }

// Key covers what changes the teacher's answers; rate limits, budget and
// retries do not, so raising the budget reuses a finished harvest.
func (HarvestStage) Key(_ context.Context, r *recipes.Recipe) (Key, error) {
	t := r.Teacher
	t.Concurrency, t.RequestsPerMinute, t.TokensPerMinute, t.MaxRetries, t.Timeout, t.BudgetUSD = 0, 0, 0, 0, 0, 0
	t.APIKeyEnv = ""
	return Key{Version: "1", Config: struct {
		Task        recipes.Task
		Teacher     recipes.Teacher
		MaxExamples int
	}{r.Task, t, r.Data.MaxExamples}}, nil
}

func (HarvestStage) Run(ctx context.Context, sc *StageContext) error {
	r := sc.Recipe
	if r.Task.Kind == "lm" {
		sc.Summarize("skipped", "task.kind lm trains on the raw texts, without a teacher")
		return nil
	}
	examples, err := harvestExamples(sc)
	if err != nil {
		return err
	}
	o, err := harvestOptions(r, sc.Dir)
	if err != nil {
		return err
	}
	o.Out = filepath.Join(sc.Dir, SoftLabelsFile)
	all := examples
	var inc *carried
	if sc.Incremental {
		c, err := carryOver(ctx, sc, examples, o.Prompt)
		if err != nil {
			return err
		}
		inc, examples = &c, c.rest
		o.Out = filepath.Join(sc.Dir, newSoftLabelsFile)
		sc.Summarize("incremental_base_version", c.base)
		sc.Summarize("carried_over", c.carried)
		sc.Summarize("new_examples", len(c.rest))
		if c.note != "" {
			sc.Summarize("incremental_note", c.note)
			sc.Log.Info("incremental: nothing carried over: "+c.note, "new_examples", len(c.rest))
		} else {
			sc.Log.Info("incremental", "base_version", c.base, "carried_over", c.carried, "new_examples", len(c.rest))
		}
	}
	o.Log = sc.Log
	o.Progress = func(done, total int) { sc.Progress(int64(done), int64(total), "examples") }
	own := filepath.Join(sc.Dir, distill.JournalName)
	olds, _ := filepath.Glob(filepath.Join(filepath.Dir(sc.RunDir), "*", "harvest", distill.JournalName))
	for _, p := range olds {
		if abs1, abs2 := absPath(p), absPath(own); abs1 != abs2 {
			o.Reuse = append(o.Reuse, p)
		}
	}
	sum, err := distill.Harvest(ctx, examples, o)
	if inc != nil {
		// The summary counts the whole output; new_examples and
		// carried_over tell the parts apart.
		sum.Examples += inc.carried
		sum.Harvested += inc.carried
		if err == nil {
			err = mergeIncremental(all, *inc, o.Out, filepath.Join(sc.Dir, SoftLabelsFile))
		}
	}
	sc.SummarizeAll(sum)
	if err != nil {
		return err
	}
	sc.Log.Info("harvest done", "examples", sum.Harvested, "requests", sum.Requests, "retries", sum.Retries,
		"cost_usd", fmt.Sprintf("%.4f", sum.CostUSD), "reused", sum.FromJournal)
	return nil
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// harvestExamples reads the data stage's examples. With data.max_examples
// it keeps that many rows in all, the first of each split in proportion to
// the split's size.
func harvestExamples(sc *StageContext) ([]distill.Example, error) {
	rows, err := datasets.ReadExamples(sc.UpstreamFile("data", ExamplesFile))
	if err != nil {
		return nil, err
	}
	quota := map[string]int{}
	if limit := sc.Recipe.Data.MaxExamples; limit > 0 && limit < len(rows) {
		for _, e := range rows {
			quota[e.Split]++
		}
		quota = splitQuotas(quota, limit)
	}
	var out []distill.Example
	taken := map[string]int{}
	for _, e := range rows {
		if q, capped := quota[e.Split]; capped && taken[e.Split] >= q {
			continue
		}
		taken[e.Split]++
		out = append(out, distill.Example{ID: e.ID, Text: e.Text, Label: e.Label, Split: e.Split})
	}
	return out, nil
}

// splitQuotas shares limit rows among splits in proportion to their sizes,
// by largest remainder, so the quotas add up to exactly limit.
func splitQuotas(sizes map[string]int, limit int) map[string]int {
	total := 0
	names := make([]string, 0, len(sizes))
	for s, n := range sizes {
		total += n
		names = append(names, s)
	}
	sort.Strings(names)
	quota := map[string]int{}
	left := limit
	for _, s := range names {
		quota[s] = sizes[s] * limit / total
		left -= quota[s]
	}
	rem := func(s string) int { return sizes[s] * limit % total }
	sort.SliceStable(names, func(i, j int) bool { return rem(names[i]) > rem(names[j]) })
	for i := 0; i < left; i++ {
		quota[names[i]]++
	}
	return quota
}

// harvestOptions builds the harvest's settings and teacher client from the
// recipe; a missing API key fails here, before any spending.
func harvestOptions(r *recipes.Recipe, dir string) (distill.HarvestOptions, error) {
	t := r.Teacher
	var fewShot [][2]string
	for _, f := range t.FewShot {
		fewShot = append(fewShot, [2]string{f.Input, f.Output})
	}
	prompt := PromptSpec(r)
	prompt.FewShot = fewShot
	o := distill.HarvestOptions{
		Prompt:      prompt,
		Labels:      r.Task.Labels,
		MaxTokens:   t.MaxTokens,
		Temperature: t.Temperature,
		TopLogprobs: t.TopLogprobs,
		Price:       distill.Price{InputPerMTok: t.Price.InputPerMTok, OutputPerMTok: t.Price.OutputPerMTok},
		BudgetUSD:   t.BudgetUSD,
		Dir:         dir,
		Flow: distill.FlowOptions{Concurrency: t.Concurrency, RequestsPerMinute: t.RequestsPerMinute,
			TokensPerMinute: t.TokensPerMinute, MaxRetries: t.MaxRetries},
	}
	if r.Task.Kind != "classification" {
		o.Labels = nil
	}
	teacher, err := newTeacher(t)
	if err != nil {
		return o, err
	}
	o.Teacher = teacher
	if t.Mode == "batch" {
		envName := t.APIKeyEnv
		if envName == "" {
			envName = "OPENAI_API_KEY"
		}
		base := t.BaseURL
		if base == "" {
			base = distill.DefaultOpenAIBaseURL
		}
		if o.Batch, err = distill.NewBatch(distill.BatchOptions{BaseURL: base, Model: t.Model, APIKey: os.Getenv(envName), APIKeyEnv: envName}); err != nil {
			return o, Invalid(fmt.Errorf("teacher: %w", err))
		}
	}
	return o, nil
}

// PromptSpec is the recipe's prompt layout, without few-shot turns: how
// the teacher was asked, and how the student sees its inputs.
func PromptSpec(r *recipes.Recipe) distill.PromptSpec {
	return distill.PromptSpec{Template: r.Task.PromptTemplate, Instruction: r.Task.Instruction, Labels: r.Task.Labels,
		System: r.Teacher.SystemPrompt, MaxInputChars: r.Task.MaxInputChars}
}

// newTeacher makes the client for teacher.kind; nil for gold labels.
func newTeacher(t recipes.Teacher) (distill.Teacher, error) {
	if t.Kind == "labels" {
		return nil, nil
	}
	envName := t.APIKeyEnv
	official := t.BaseURL == "" || strings.Contains(t.BaseURL, "api.openai.com") || strings.Contains(t.BaseURL, "api.anthropic.com")
	if envName == "" {
		envName = map[string]string{"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}[t.Kind]
	}
	key := os.Getenv(envName)
	if key == "" && (official || t.APIKeyEnv != "") {
		return nil, Invalid(fmt.Errorf("teacher.api_key_env: environment variable %s is not set (the %s API needs a key)", envName, t.Kind))
	}
	switch t.Kind {
	case "anthropic":
		return distill.NewAnthropic(distill.AnthropicOptions{BaseURL: t.BaseURL, Model: t.Model, APIKey: key, APIKeyEnv: envName, Timeout: t.Timeout.Std()})
	default:
		return distill.NewOpenAI(distill.OpenAIOptions{BaseURL: t.BaseURL, Model: t.Model, APIKey: key, APIKeyEnv: envName, Timeout: t.Timeout.Std()})
	}
}

// EstimateHarvest counts what a run's harvest would cost, with the
// student's tokenizer when it loads (else about 4 bytes a token), without
// calling the teacher. The data stage must have run.
func EstimateHarvest(r *recipes.Recipe, runDir string) (distill.Estimate, error) {
	sc := &StageContext{Recipe: r, RunDir: runDir}
	examples, err := harvestExamples(sc)
	if err != nil {
		return distill.Estimate{}, err
	}
	o, err := harvestOptions(r, "")
	if err != nil && !errors.Is(err, ErrInvalidInput) {
		return distill.Estimate{}, err
	}
	count := func(s string) int { return len(s)/4 + 1 }
	name := "bytes/4"
	tokPath := r.Path(r.Student.Tokenizer)
	if tokPath == "" {
		tokPath = r.Path(r.Student.Base)
	}
	if tok, err := model.LoadTokenizer(tokPath); err == nil {
		count = func(s string) int { return len(tok.Encode(s)) }
		name = tokPath
	}
	expected := o.MaxTokens
	if len(o.Labels) > 0 {
		expected = 2
		for _, l := range o.Labels {
			expected = max(expected, count(l)+1)
		}
	}
	e := distill.EstimateCost(examples, o, count, expected)
	e.Tokenizer = name
	return e, nil
}
