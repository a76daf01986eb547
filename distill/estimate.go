package distill

// Estimate is a harvest's cost before any call.
type Estimate struct {
	Examples      int     `json:"examples"`
	UniquePrompts int     `json:"unique_prompts"`
	InputTokens   int64   `json:"input_tokens"`      // counted with the tokenizer given
	MaxOutput     int64   `json:"max_output_tokens"` // unique prompts x max_tokens
	ExpectedUSD   float64 `json:"expected_usd"`      // input tokens + expected output
	WorstCaseUSD  float64 `json:"worst_case_usd"`    // byte-bound input + max_tokens for every prompt
	BudgetUSD     float64 `json:"budget_usd,omitempty"`
	Tokenizer     string  `json:"tokenizer"`
}

// EstimateCost counts a harvest's tokens without calling the teacher.
// count tokenizes a text (e.g. with the student's tokenizer); expectedOut
// is the output tokens expected per answer (e.g. a label's length).
func EstimateCost(examples []Example, o HarvestOptions, count func(string) int, expectedOut int) Estimate {
	e := Estimate{Examples: len(examples), BudgetUSD: o.BudgetUSD}
	model := "teacher"
	if o.Teacher != nil {
		model = o.Teacher.Model()
	}
	seen := map[string]bool{}
	for _, ex := range examples {
		req := Request{Messages: o.Prompt.Messages(ex.Text), MaxTokens: o.MaxTokens, Temperature: o.Temperature, TopLogprobs: o.TopLogprobs}
		key := requestKey(model, req, ex.Text)
		if seen[key] {
			continue
		}
		seen[key] = true
		e.UniquePrompts++
		in := 3
		for _, m := range req.Messages {
			in += count(m.Content) + 4 // the chat format's per-message tokens
		}
		e.InputTokens += int64(in)
		e.MaxOutput += int64(o.MaxTokens)
		e.ExpectedUSD += o.Price.Cost(in, min(expectedOut, o.MaxTokens))
		e.WorstCaseUSD += o.Price.Cost(maxInputTokens(req), o.MaxTokens)
	}
	return e
}
