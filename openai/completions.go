package openai

import "encoding/json"

// Object names of the legacy completions and models replies.
const (
	ObjectTextCompletion = "text_completion"
	ObjectList           = "list"
	ObjectModel          = "model"
)

// CompletionRequest is the body of the legacy POST /v1/completions.
// Unmodelled parameters are kept in Extra, as for ChatCompletionRequest.
type CompletionRequest struct {
	Model  string        `json:"model"`
	Prompt StringOrArray `json:"prompt"`
	// Suffix and BestOf are modelled only so that a server can refuse them.
	Suffix        *string        `json:"suffix,omitempty"`
	MaxTokens     *int           `json:"max_tokens,omitempty"`
	Temperature   *float64       `json:"temperature,omitempty"`
	TopP          *float64       `json:"top_p,omitempty"`
	N             *int           `json:"n,omitempty"`
	BestOf        *int           `json:"best_of,omitempty"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *StreamOptions `json:"stream_options,omitempty"`
	Stop          StringOrArray  `json:"stop,omitempty"`
	// Logprobs is the number of alternatives to return per token (0-5);
	// nil means no log probabilities.
	Logprobs         *int            `json:"logprobs,omitempty"`
	Echo             bool            `json:"echo,omitempty"`
	Seed             *int64          `json:"seed,omitempty"`
	PresencePenalty  *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64        `json:"frequency_penalty,omitempty"`
	LogitBias        json.RawMessage `json:"logit_bias,omitempty"`
	User             string          `json:"user,omitempty"`

	// Extra holds the request's other top-level members, verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the modelled fields and keeps the others in Extra.
func (r *CompletionRequest) UnmarshalJSON(b []byte) error {
	type plain CompletionRequest
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	extra, err := unknownFields(b, completionFields())
	if err != nil {
		return err
	}
	v.Extra = extra
	*r = CompletionRequest(v)
	return nil
}

// MarshalJSON encodes the modelled fields followed by Extra.
func (r CompletionRequest) MarshalJSON() ([]byte, error) {
	type plain CompletionRequest
	b, err := json.Marshal(plain(r))
	if err != nil {
		return nil, err
	}
	return appendFields(b, r.Extra, completionFields())
}

// CompletionResponse is the reply to a legacy completion, and also each
// chunk of a streamed one (OpenAI uses the same object for both).
type CompletionResponse struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	Choices           []CompletionChoice `json:"choices"`
	Usage             *Usage             `json:"usage,omitempty"`
	SystemFingerprint string             `json:"system_fingerprint,omitempty"`
}

// CompletionChoice is one generated text, or the part of it a chunk carries.
// FinishReason is null until the choice is finished.
type CompletionChoice struct {
	Text         string              `json:"text"`
	Index        int                 `json:"index"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`
	FinishReason NullString          `json:"finish_reason"`
}

// CompletionLogprobs are the legacy per-token log probabilities: parallel
// arrays, one entry per token, with TextOffset the character offset of each
// token in the completion text.
type CompletionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// ModelList is the reply of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// Model describes one model.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}
