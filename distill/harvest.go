package distill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"sync"

	"github.com/distillery/distillery/datasets"
)

// Example is one input row to harvest.
type Example struct {
	ID, Text, Label, Split string
}

// HarvestOptions configure Harvest.
type HarvestOptions struct {
	// Teacher answers the prompts; nil harvests the examples' gold labels
	// (teacher.kind: labels) without any call.
	Teacher Teacher
	Flow    FlowOptions
	Prompt  PromptSpec
	// Labels is the classification label set; nil for generation.
	Labels      []string
	MaxTokens   int
	Temperature float64
	TopLogprobs int
	Price       Price
	// BudgetUSD caps spending (0: no cap).
	BudgetUSD float64
	// Dir holds the journal of paid answers; Out is the soft-label Parquet.
	Dir, Out string
	// Reuse lists journals of earlier runs whose answers are taken instead
	// of asking again.
	Reuse []string
	// Batch, when set, sends the prompts through the OpenAI Batch API at
	// BatchDiscount of the price, instead of one request each.
	Batch    *BatchClient
	Progress func(done, total int)
	Log      *slog.Logger
}

// Summary reports a harvest.
type Summary struct {
	Examples       int            `json:"examples"`
	UniquePrompts  int            `json:"unique_prompts"`
	FromJournal    int            `json:"from_journal"` // answers paid for by an earlier attempt or run
	Asked          int            `json:"asked"`        // prompts sent in this attempt
	Harvested      int            `json:"harvested"`    // examples with an answer
	Failed         int            `json:"failed"`       // prompts that failed for good
	Unharvested    int            `json:"unharvested"`  // prompts left unasked (budget, stop)
	Requests       int            `json:"requests"`
	Retries        int            `json:"retries"`
	RetriesByKind  map[string]int `json:"retries_by_kind,omitempty"`
	FailuresByKind map[string]int `json:"failures_by_kind,omitempty"`
	InputTokens    int64          `json:"input_tokens"`
	OutputTokens   int64          `json:"output_tokens"`
	CostUSD        float64        `json:"cost_usd"`
	BudgetUSD      float64        `json:"budget_usd,omitempty"`
	LatencyP50MS   float64        `json:"latency_p50_ms"`
	LatencyP95MS   float64        `json:"latency_p95_ms"`
	Logprobs       bool           `json:"logprobs"`
	StoppedBy      string         `json:"stopped_by,omitempty"` // "budget"
}

// JournalName is the journal's file name in HarvestOptions.Dir.
const JournalName = "journal.jsonl"

// prompt is one unique request and the examples that share it.
type prompt struct {
	key      string
	req      Request
	text     string
	examples []Example
}

// Harvest asks the teacher every distinct prompt once and writes one
// soft-label row per example. Each answer is in the journal (fsynced)
// before its worker sends another request, so an interrupted or rerun
// harvest pays only for what is missing. The budget reserves each
// request's worst-case cost before sending it.
func Harvest(ctx context.Context, examples []Example, o HarvestOptions) (Summary, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	sum := Summary{Examples: len(examples), BudgetUSD: o.BudgetUSD}
	w, err := datasets.NewSoftLabelWriter(o.Out, 0)
	if err != nil {
		return sum, err
	}
	ok := false
	defer func() {
		if !ok {
			w.Abort()
		}
	}()
	if o.Teacher == nil {
		if err := harvestGold(examples, o, w, &sum); err != nil {
			return sum, err
		}
		ok = true
		return sum, w.Close()
	}
	sum.Logprobs = o.Teacher.Logprobs()
	if !sum.Logprobs {
		o.Log.Warn("the teacher returns no log-probabilities: storing its answers as hard labels", "teacher", o.Teacher.Model())
	}

	prompts := groupPrompts(examples, o)
	sum.UniquePrompts = len(prompts)
	j, done, err := OpenJournal(filepath.Join(o.Dir, JournalName))
	if err != nil {
		return sum, err
	}
	defer j.Close()
	if err := reuseJournals(j, done, prompts, o.Reuse); err != nil {
		return sum, err
	}

	h := &harvester{o: o, w: w, sum: &sum, total: len(examples)}
	var todo []*prompt
	for _, p := range prompts {
		if rec, found := done[p.key]; found {
			sum.FromJournal++
			if err := h.write(p, rec, false); err != nil {
				return sum, err
			}
		} else {
			todo = append(todo, p)
		}
	}
	if len(todo) > 0 {
		o.Log.Info("asking the teacher", "prompts", len(todo), "reused", sum.FromJournal, "teacher", o.Teacher.Model())
	}
	var runErr error
	if o.Batch != nil {
		runErr = h.askBatch(ctx, j, todo)
	} else {
		runErr = h.ask(ctx, j, todo)
	}
	h.finish()
	if runErr != nil {
		return sum, runErr
	}
	if sum.StoppedBy == "budget" {
		return sum, fmt.Errorf("%w: spent $%.4f of $%.2f; %d of %d prompts unharvested (raise teacher.budget_usd and run again: the %d answers paid for are reused)",
			ErrBudget, sum.CostUSD, o.BudgetUSD, sum.Unharvested, sum.UniquePrompts, sum.UniquePrompts-sum.Unharvested-sum.Failed)
	}
	ok = true
	return sum, w.Close()
}

func groupPrompts(examples []Example, o HarvestOptions) []*prompt {
	byKey := map[string]*prompt{}
	var out []*prompt
	for _, ex := range examples {
		req := Request{Messages: o.Prompt.Messages(ex.Text), MaxTokens: o.MaxTokens, Temperature: o.Temperature, TopLogprobs: o.TopLogprobs}
		key := requestKey(o.Teacher.Model(), req, ex.Text)
		p := byKey[key]
		if p == nil {
			p = &prompt{key: key, req: req, text: req.Messages[len(req.Messages)-1].Content}
			byKey[key] = p
			out = append(out, p)
		}
		p.examples = append(p.examples, ex)
	}
	return out
}

// reuseJournals copies answers from earlier runs' journals into this run's.
func reuseJournals(j *Journal, done map[string]Record, prompts []*prompt, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	need := map[string]bool{}
	for _, p := range prompts {
		if _, ok := done[p.key]; !ok {
			need[p.key] = true
		}
	}
	for _, path := range paths {
		if len(need) == 0 {
			return nil
		}
		recs, err := ReadJournal(path)
		if err != nil {
			continue // an unreadable old journal only means paying again
		}
		for key := range need {
			if rec, ok := recs[key]; ok {
				rec.CostUSD = 0 // paid by the earlier run
				if err := j.Append(rec); err != nil {
					return err
				}
				done[key] = rec
				delete(need, key)
			}
		}
	}
	return nil
}

type harvester struct {
	o     HarvestOptions
	mu    sync.Mutex
	w     *datasets.SoftLabelWriter
	sum   *Summary
	done  int
	total int
	lat   []float64
	flow  *Flow
}

// write turns an answer into rows for every example that shares the prompt.
func (h *harvester) write(p *prompt, rec Record, fresh bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, ex := range p.examples {
		row := softLabel(p, ex, rec, h.o)
		if i > 0 || !fresh {
			row.CostUSD = 0 // counted once, on the request that paid
		}
		if err := h.w.Write(row); err != nil {
			return fmt.Errorf("harvest %s: %w", ex.ID, err)
		}
	}
	h.sum.Harvested += len(p.examples)
	h.done += len(p.examples)
	if fresh {
		r := rec.Response
		h.sum.InputTokens += int64(r.InputTokens)
		h.sum.OutputTokens += int64(r.OutputTokens)
		h.sum.CostUSD += rec.CostUSD
		h.lat = append(h.lat, float64(r.Latency.Microseconds())/1000)
	}
	if h.o.Progress != nil {
		h.o.Progress(h.done, h.total)
	}
	return nil
}

// ask sends the prompts with the configured concurrency.
func (h *harvester) ask(ctx context.Context, j *Journal, todo []*prompt) error {
	if len(todo) == 0 {
		return nil
	}
	h.flow = NewFlow(h.o.Teacher, h.o.Flow)
	budget := NewBudget(h.o.BudgetUSD)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan *prompt)
	var wg sync.WaitGroup
	workers := max(1, h.o.Flow.Concurrency)
	var stopOnce sync.Once
	stop := func(reason string) { stopOnce.Do(func() { h.mu.Lock(); h.sum.StoppedBy = reason; h.mu.Unlock() }) }
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range queue {
				if err := h.one(ctx, j, budget, p); err != nil {
					if errors.Is(err, ErrBudget) {
						stop("budget")
						h.unasked(1)
						continue
					}
					cancel(err)
				}
			}
		}()
	}
	sent := 0
feed:
	for _, p := range todo {
		if h.stopped() {
			break
		}
		select {
		case queue <- p:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()
	h.unasked(len(todo) - sent)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func (h *harvester) stopped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sum.StoppedBy != ""
}

func (h *harvester) unasked(n int) {
	h.mu.Lock()
	h.sum.Unharvested += n
	h.mu.Unlock()
}

// one asks a single prompt; it returns an error only when the harvest must
// stop (budget, auth, journal, interruption).
func (h *harvester) one(ctx context.Context, j *Journal, b *Budget, p *prompt) error {
	if h.stopped() {
		return ErrBudget
	}
	in := maxInputTokens(p.req)
	worst := h.o.Price.Cost(in, p.req.MaxTokens)
	if err := b.Reserve(worst); err != nil {
		return err
	}
	h.mu.Lock()
	h.sum.Asked++
	h.mu.Unlock()
	resp, _, err := h.flow.Do(ctx, p.req, in+p.req.MaxTokens)
	if err != nil {
		b.Settle(worst, 0)
		var te *Error
		if errors.As(err, &te) && te.Kind != KindAuth {
			h.mu.Lock()
			h.sum.Failed++
			h.mu.Unlock()
			h.o.Log.Warn("prompt failed", "example", p.examples[0].ID, "error", err.Error())
			return nil
		}
		return err
	}
	cost := h.o.Price.Cost(resp.InputTokens, resp.OutputTokens)
	b.Settle(worst, cost)
	dropBytes(resp.Tokens)
	rec := Record{Key: p.key, Response: resp, CostUSD: cost}
	if err := j.Append(rec); err != nil {
		return fmt.Errorf("harvest: %w", err)
	}
	return h.write(p, rec, true)
}

// finish fills the request counters and latency percentiles.
func (h *harvester) finish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.flow != nil { // online mode; batch mode counts as results arrive
		st := h.flow.Stats()
		h.sum.Requests, h.sum.Retries = st.Requests, st.Retries
		h.sum.RetriesByKind, h.sum.FailuresByKind = kindMap(st.RetriesByKind), kindMap(st.FailuresByKind)
	}
	sort.Float64s(h.lat)
	h.sum.LatencyP50MS, h.sum.LatencyP95MS = percentile(h.lat, 0.5), percentile(h.lat, 0.95)
}

func kindMap(m map[ErrorKind]int) map[string]int {
	if len(m) == 0 {
		return nil
	}
	out := map[string]int{}
	for k, v := range m {
		out[string(k)] = v
	}
	return out
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// softLabel builds the Parquet row of one example from its answer.
func softLabel(p *prompt, ex Example, rec Record, o HarvestOptions) datasets.SoftLabel {
	r := rec.Response
	text := p.text
	if ex.ID != p.examples[0].ID {
		text = o.Prompt.Render(ex.Text) // a duplicate keeps its own spelling
	}
	row := datasets.SoftLabel{
		ID: ex.ID, Prompt: text, Completion: r.Text, TeacherModel: r.Model,
		InputTokens: int64(r.InputTokens), OutputTokens: int64(r.OutputTokens), CostUSD: rec.CostUSD,
		LatencyMS: float64(r.Latency.Microseconds()) / 1000, FinishReason: r.FinishReason, Split: ex.Split,
	}
	for _, t := range r.Tokens {
		row.CompletionLogprobs = append(row.CompletionLogprobs, clampLogprob(t.Logprob))
		k := datasets.TopK{}
		for _, alt := range t.Top {
			k.Tokens = append(k.Tokens, alt.Token)
			k.Logprobs = append(k.Logprobs, clampLogprob(alt.Logprob))
		}
		k.TailMass = datasets.TailMassOf(k.Logprobs)
		row.TopK = append(row.TopK, k)
	}
	if len(o.Labels) > 0 {
		row.LabelDist = LabelDist(r, o.Labels)
		row.Label = ParseLabel(r.Text, o.Labels)
		if row.Label == "" {
			row.Label = ArgmaxLabel(row.LabelDist)
		}
	}
	return row
}

func clampLogprob(lp float64) float32 { return float32(math.Min(0, lp)) }

// harvestGold writes the examples' own labels as one-hot soft labels.
func harvestGold(examples []Example, o HarvestOptions, w *datasets.SoftLabelWriter, sum *Summary) error {
	for i, ex := range examples {
		if ex.Label == "" {
			return fmt.Errorf("harvest %s: teacher.kind labels needs a gold label on every row", ex.ID)
		}
		row := datasets.SoftLabel{ID: ex.ID, Prompt: o.Prompt.Render(ex.Text), Completion: ex.Label, Label: ex.Label,
			TeacherModel: "gold-labels", FinishReason: "stop", Split: ex.Split}
		if len(o.Labels) > 0 {
			row.LabelDist = distList(map[string]float64{ex.Label: 1}, o.Labels)
		}
		if err := w.Write(row); err != nil {
			return fmt.Errorf("harvest %s: %w", ex.ID, err)
		}
		sum.Harvested++
		if o.Progress != nil && (i%256 == 0 || i == len(examples)-1) {
			o.Progress(i+1, len(examples))
		}
	}
	return nil
}

// dropBytes clears the tokens' raw bytes: soft labels keep token strings,
// and base64 bytes would double the journal's size and encoding time.
func dropBytes(toks []TokenLogprob) {
	for i := range toks {
		toks[i].Bytes = nil
		for j := range toks[i].Top {
			toks[i].Top[j].Bytes = nil
		}
	}
}
