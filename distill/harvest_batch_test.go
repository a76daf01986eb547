package distill

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/distillery/distillery/datasets"
)

func batchHarvestOpts(t *testing.T, f *fakeBatchAPI, dir string) HarvestOptions {
	bc, err := NewBatch(BatchOptions{BaseURL: f.URL(), Model: "teacher-1", APIKey: "k", APIKeyEnv: "OPENAI_API_KEY", PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	teacher, _ := NewOpenAI(OpenAIOptions{BaseURL: f.URL(), Model: "teacher-1", APIKey: "k"})
	return HarvestOptions{Teacher: teacher, Batch: bc, Prompt: PromptSpec{Template: "Rate: {text}"},
		MaxTokens: 4, TopLogprobs: 3, Price: Price{InputPerMTok: 10, OutputPerMTok: 20},
		Dir: dir, Out: filepath.Join(dir, "soft_labels.parquet")}
}

// TestHarvestBatchMode: one batch for all distinct prompts, results mapped
// back by custom_id at half price; an interrupted wait resumes on the same
// batch without submitting (paying for) another.
func TestHarvestBatchMode(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.InProgressPolls = 5
	dir := t.TempDir()
	examples := reviews(60)
	o := batchHarvestOpts(t, f, dir)

	// Interrupt while the batch is in progress.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if polls, _, _, _, _ := f.counts(); polls >= 2 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if _, err := Harvest(ctx, examples, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	sum, err := Harvest(context.Background(), examples, batchHarvestOpts(t, f, dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, uploads, creates, _, batches := f.counts(); uploads != 1 || creates != 1 || batches != 1 {
		t.Fatalf("resume submitted again: %d uploads, %d creates, %d batches", uploads, creates, batches)
	}
	rows, err := datasets.ReadSoftLabels(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(examples) || sum.UniquePrompts != 54 || sum.Asked != 54 {
		t.Fatalf("%d rows, summary %+v", len(rows), sum)
	}
	var cost float64
	for _, r := range rows {
		cost += r.CostUSD
		if len(r.TopK) == 0 || len(r.TopK[0].Tokens) != 3 || r.Completion == "" {
			t.Fatalf("row %+v", r)
		}
	}
	full := o.Price.Cost(int(sum.InputTokens), int(sum.OutputTokens))
	if math.Abs(cost-full*BatchDiscount) > 1e-12 || math.Abs(sum.CostUSD-cost) > 1e-12 {
		t.Errorf("cost %v, want half of %v", cost, full)
	}
}
