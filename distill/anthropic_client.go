package distill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/distillery/distillery/openai"
)

// Anthropic Messages API defaults.
const (
	DefaultAnthropicBaseURL = "https://api.anthropic.com/v1"
	DefaultAnthropicVersion = "2023-06-01"
	// DefaultAnthropicMaxTokens is sent when a request gives no
	// max_tokens, which the Messages API requires.
	DefaultAnthropicMaxTokens = 4096
)

// AnthropicOptions configure a teacher on Anthropic's Messages API.
type AnthropicOptions struct {
	BaseURL    string // default DefaultAnthropicBaseURL
	Model      string
	APIKey     string // sent as x-api-key
	APIKeyEnv  string // for error messages only
	HTTPClient *http.Client
	// Timeout bounds one request (default DefaultTeacherTimeout;
	// negative: no bound).
	Timeout time.Duration
	Headers map[string]string // added after the defaults
	// Version is the anthropic-version header (default 2023-06-01).
	Version string
	// DefaultMaxTokens is sent when Request.MaxTokens is 0 (default
	// DefaultAnthropicMaxTokens).
	DefaultMaxTokens int
}

// AnthropicClient is a Teacher on the Messages API. Anthropic returns no
// log-probabilities, so its answers carry text only (hard labels).
type AnthropicClient struct {
	model     string
	url       string
	header    http.Header
	keyEnv    string
	maxTokens int
	http      *teacherHTTP
	now       func() time.Time // for reset times; tests set it
}

// NewAnthropic checks the options and returns a client.
func NewAnthropic(opts AnthropicOptions) (*AnthropicClient, error) {
	if opts.Model == "" {
		return nil, errors.New("anthropic teacher: no model given")
	}
	base := opts.BaseURL
	if base == "" {
		base = DefaultAnthropicBaseURL
	}
	base, err := teacherBaseURL(base)
	if err != nil {
		return nil, fmt.Errorf("anthropic teacher: %w", err)
	}
	c := &AnthropicClient{
		model:     opts.Model,
		url:       base + "/messages",
		header:    http.Header{},
		keyEnv:    opts.APIKeyEnv,
		maxTokens: opts.DefaultMaxTokens,
		http:      newTeacherHTTP(opts.HTTPClient, opts.Timeout, opts.APIKey, opts.Headers),
		now:       time.Now,
	}
	if c.maxTokens <= 0 {
		c.maxTokens = DefaultAnthropicMaxTokens
	}
	version := opts.Version
	if version == "" {
		version = DefaultAnthropicVersion
	}
	c.header.Set("anthropic-version", version)
	if opts.APIKey != "" {
		c.header.Set("x-api-key", opts.APIKey)
	}
	for k, v := range opts.Headers {
		c.header.Set(k, v)
	}
	return c, nil
}

// Model returns the model name.
func (c *AnthropicClient) Model() string { return c.model }

// Logprobs is false: the Messages API returns no log-probabilities.
func (c *AnthropicClient) Logprobs() bool { return false }

type anthropicMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type anthropicRequest struct {
	Model       string             `json:"model"`
	MaxTokens   int                `json:"max_tokens"`
	System      string             `json:"system,omitempty"`
	Messages    []anthropicMessage `json:"messages"`
	Temperature *float64           `json:"temperature,omitempty"`
}

type anthropicResponse struct {
	Type    string `json:"type"`
	Model   string `json:"model"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StopReason string `json:"stop_reason"`
	Usage      struct {
		InputTokens              int `json:"input_tokens"`
		OutputTokens             int `json:"output_tokens"`
		CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	} `json:"usage"`
}

// Complete sends one message request. Failures are *Error, except the
// cancellation of ctx, which is returned as ctx.Err().
func (c *AnthropicClient) Complete(ctx context.Context, req Request) (Response, error) {
	rep, err := c.http.post(ctx, c.url, c.header, c.body(req))
	rate := c.rate(rep.header)
	if err != nil {
		return Response{}, c.http.fail(err, rep, rate)
	}
	if rep.status/100 != 2 {
		return Response{}, c.http.fail(c.statusError(rep), rep, rate)
	}
	var out anthropicResponse
	if err := json.Unmarshal(rep.body, &out); err != nil {
		return Response{}, c.http.fail(&Error{Kind: KindMalformed, Msg: "the answer is not JSON", Err: err}, rep, rate)
	}
	if out.Content == nil {
		return Response{}, c.http.fail(&Error{Kind: KindMalformed, Msg: "the answer has no content"}, rep, rate)
	}
	var text strings.Builder
	for _, b := range out.Content {
		if b.Type == "text" {
			text.WriteString(b.Text)
		}
	}
	u := out.Usage
	return Response{
		Text:         text.String(),
		Model:        out.Model,
		FinishReason: anthropicFinish(out.StopReason),
		InputTokens:  u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens,
		OutputTokens: u.OutputTokens,
		Latency:      rep.latency,
		Rate:         rate,
	}, nil
}

// body builds the wire request: system messages, wherever they are, are
// joined into the top-level system field.
func (c *AnthropicClient) body(req Request) anthropicRequest {
	temp := req.Temperature
	ar := anthropicRequest{Model: c.model, MaxTokens: req.MaxTokens, Temperature: &temp, Messages: []anthropicMessage{}}
	if ar.MaxTokens <= 0 {
		ar.MaxTokens = c.maxTokens
	}
	var system []string
	for _, m := range req.Messages {
		if m.Role == "system" {
			system = append(system, m.Content)
			continue
		}
		ar.Messages = append(ar.Messages, anthropicMessage{Role: m.Role, Content: m.Content})
	}
	ar.System = strings.Join(system, "\n\n")
	return ar
}

// anthropicFinish maps stop_reason to OpenAI's finish_reason words.
func anthropicFinish(r string) string {
	switch r {
	case "end_turn", "stop_sequence":
		return "stop"
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return r
}

// statusError classifies a non-2xx reply; Anthropic's error body
// {"type":"error","error":{"type","message"}} has OpenAI's "error" member.
func (c *AnthropicClient) statusError(rep teacherReply) *Error {
	apiErr := openai.DecodeError(rep.status, rep.body)
	e := &Error{Kind: teacherStatusKind(rep.status), Msg: openAIMessage(apiErr)}
	if e.Kind == KindAuth {
		e.Msg = fmt.Sprintf("the API rejected %s (%d): %s", keyName(c.keyEnv), rep.status, apiErr.Message)
	}
	return e
}

// rate reads the anthropic-ratelimit-* headers. The tokens-* limit is the
// one that matters for a whole request; when absent, the input-tokens one
// stands in for it.
func (c *AnthropicClient) rate(h http.Header) RateInfo {
	if h == nil {
		return RateInfo{}
	}
	const p = "anthropic-ratelimit-"
	now := c.now()
	r := RateInfo{
		LimitRequests:     headerInt(h, p+"requests-limit"),
		RemainingRequests: headerInt(h, p+"requests-remaining"),
		ResetRequests:     headerResetTime(h, p+"requests-reset", now),
	}
	for _, kind := range []string{"tokens", "input-tokens"} {
		if h.Get(p+kind+"-limit") == "" {
			continue
		}
		r.LimitTokens = headerInt(h, p+kind+"-limit")
		r.RemainingTokens = headerInt(h, p+kind+"-remaining")
		r.ResetTokens = headerResetTime(h, p+kind+"-reset", now)
		break
	}
	return r
}
