package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/distillery/distillery/openai"
)

// maxStops is OpenAI's limit on stop sequences.
const maxStops = 4

// sampling are the request fields that chat and legacy completions share.
type sampling struct {
	model                        string
	maxTokens                    *int
	maxTokensParam               string
	temperature, topP            *float64
	presencePenalty, freqPenalty *float64
	n                            *int
	stop                         []string
	stream                       bool
	streamOptions                *openai.StreamOptions
	seed                         *int64
}

// params validates the shared fields (the model first: a wrong id is 404
// whatever else is wrong) and builds the backend's Params.
func (s *Server) params(c sampling) (Params, *apiError) {
	if c.model == "" {
		return Params{}, invalid("model", "missing_required_parameter", "You must provide a model parameter.")
	}
	if e := s.checkModel(c.model, "model"); e != nil {
		return Params{}, e
	}
	if c.n != nil && *c.n > 1 {
		return Params{}, invalid("n", "unsupported_value",
			"n > 1 is not supported by this server: it generates one choice per request; send several requests instead.")
	}
	if c.n != nil && *c.n < 1 {
		return Params{}, invalid("n", "integer_below_min_value",
			"Invalid 'n': integer below minimum value. Expected a value >= 1, but got %d instead.", *c.n)
	}
	for _, r := range []struct {
		param  string
		v      *float64
		lo, hi float64
	}{
		{"temperature", c.temperature, 0, 2},
		{"top_p", c.topP, 0, 1},
		{"presence_penalty", c.presencePenalty, -2, 2},
		{"frequency_penalty", c.freqPenalty, -2, 2},
	} {
		if e := checkRange(r.param, r.v, r.lo, r.hi); e != nil {
			return Params{}, e
		}
	}
	p := Params{Temperature: 1, TopP: 1, Seed: c.seed}
	if c.temperature != nil {
		p.Temperature = *c.temperature
	}
	if c.topP != nil {
		p.TopP = *c.topP
	}
	if c.maxTokens != nil {
		switch mt, limit := *c.maxTokens, s.b.MaxContext(); {
		case mt < 1:
			return Params{}, invalid(c.maxTokensParam, "integer_below_min_value",
				"Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", c.maxTokensParam, mt)
		case limit > 0 && mt > limit:
			return Params{}, invalid(c.maxTokensParam, "invalid_value",
				"%s is too large: %d. This model supports at most %d tokens of prompt and completion together.",
				c.maxTokensParam, mt, limit)
		default:
			p.MaxTokens = mt
		}
	}
	if len(c.stop) > maxStops {
		return Params{}, invalid("stop", "array_above_max_length",
			"Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array with length %d instead.",
			maxStops, len(c.stop))
	}
	p.Stop = c.stop
	if c.streamOptions != nil && !c.stream {
		return Params{}, invalid("stream_options", "invalid_value",
			"The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	return p, nil
}

func checkRange(param string, v *float64, lo, hi float64) *apiError {
	switch {
	case v == nil:
		return nil
	case *v < lo:
		return invalid(param, "decimal_below_min_value",
			"Invalid '%s': decimal below minimum value. Expected a value >= %g, but got %g instead.", param, lo, *v)
	case *v > hi:
		return invalid(param, "decimal_above_max_value",
			"Invalid '%s': decimal above maximum value. Expected a value <= %g, but got %g instead.", param, hi, *v)
	}
	return nil
}

// validRoles are the message roles OpenAI accepts.
var validRoles = map[string]bool{
	openai.RoleSystem: true, openai.RoleDeveloper: true, openai.RoleUser: true,
	openai.RoleAssistant: true, openai.RoleTool: true,
}

// chatParams validates a chat request and builds the backend's Params.
func (s *Server) chatParams(req *openai.ChatCompletionRequest) (Params, *apiError) {
	if req.Messages == nil {
		return Params{}, invalid("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")
	}
	if len(req.Messages) == 0 {
		return Params{}, invalid("messages", "empty_array",
			"Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	for i, m := range req.Messages {
		if !validRoles[m.Role] {
			return Params{}, invalid(fmt.Sprintf("messages[%d].role", i), "invalid_value",
				"Invalid value: '%s'. Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'.", m.Role)
		}
		for j, part := range m.Content.Parts {
			if part.Type != "text" {
				return Params{}, invalid(fmt.Sprintf("messages[%d].content[%d].type", i, j), "unsupported_value",
					"Content parts of type '%s' are not supported: this model reads text only.", part.Type)
			}
		}
	}
	maxTokens, maxParam := req.MaxTokens, "max_tokens"
	if req.MaxCompletionTokens != nil {
		maxTokens, maxParam = req.MaxCompletionTokens, "max_completion_tokens"
	}
	p, e := s.params(sampling{
		model: req.Model, maxTokens: maxTokens, maxTokensParam: maxParam,
		temperature: req.Temperature, topP: req.TopP,
		presencePenalty: req.PresencePenalty, freqPenalty: req.FrequencyPenalty,
		n: req.N, stop: req.Stop, stream: req.Stream, streamOptions: req.StreamOptions, seed: req.Seed,
	})
	if e != nil {
		return Params{}, e
	}
	if req.TopLogprobs != nil {
		switch tl := *req.TopLogprobs; {
		case tl < 0 || tl > 20:
			return Params{}, invalid("top_logprobs", "invalid_value",
				"Invalid 'top_logprobs': expected a value between 0 and 20, but got %d instead.", tl)
		case !req.Logprobs:
			return Params{}, invalid("top_logprobs", "invalid_value",
				"Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.")
		default:
			p.TopLogprobs = tl
		}
	}
	p.Logprobs = req.Logprobs
	if isSet(req.Tools) && !bytes.Equal(bytes.TrimSpace(req.Tools), []byte("[]")) {
		return Params{}, invalid("tools", "unsupported_parameter", "Tools are not supported by this model.")
	}
	if isSet(req.ResponseFormat) {
		var rf struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(req.ResponseFormat, &rf); err != nil || rf.Type != "text" {
			return Params{}, invalid("response_format", "unsupported_value",
				"Only response_format {\"type\": \"text\"} is supported by this model.")
		}
	}
	return p, nil
}

// isSet reports whether a pass-through field was given a non-null value.
func isSet(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// maxLegacyLogprobs is the legacy endpoint's limit on logprobs.
const maxLegacyLogprobs = 5

// completionParams validates a legacy completion request.
func (s *Server) completionParams(req *openai.CompletionRequest) (Params, *apiError) {
	if req.Prompt == nil {
		return Params{}, invalid("prompt", "missing_required_parameter", "Missing required parameter: 'prompt'.")
	}
	if len(req.Prompt) == 0 {
		return Params{}, invalid("prompt", "empty_array",
			"Invalid 'prompt': empty array. Expected a string or an array with minimum length 1.")
	}
	p, e := s.params(sampling{
		model: req.Model, maxTokens: req.MaxTokens, maxTokensParam: "max_tokens",
		temperature: req.Temperature, topP: req.TopP,
		presencePenalty: req.PresencePenalty, freqPenalty: req.FrequencyPenalty,
		n: req.N, stop: req.Stop, stream: req.Stream, streamOptions: req.StreamOptions, seed: req.Seed,
	})
	if e != nil {
		return Params{}, e
	}
	switch {
	case req.Echo:
		return Params{}, invalid("echo", "unsupported_value", "echo is not supported by this server: it returns only the completion.")
	case req.Suffix != nil && *req.Suffix != "":
		return Params{}, invalid("suffix", "unsupported_value", "suffix is not supported by this model.")
	case req.BestOf != nil && *req.BestOf > 1:
		return Params{}, invalid("best_of", "unsupported_value", "best_of > 1 is not supported by this server.")
	}
	if req.Logprobs != nil {
		if lp := *req.Logprobs; lp < 0 || lp > maxLegacyLogprobs {
			return Params{}, invalid("logprobs", "invalid_value",
				"Invalid 'logprobs': expected a value between 0 and %d, but got %d instead.", maxLegacyLogprobs, lp)
		}
		p.Logprobs, p.TopLogprobs = true, *req.Logprobs
	}
	return p, nil
}
