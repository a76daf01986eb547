package openai

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Object names of the chat completion replies.
const (
	ObjectChatCompletion      = "chat.completion"
	ObjectChatCompletionChunk = "chat.completion.chunk"
)

// Message roles OpenAI accepts.
const (
	RoleSystem    = "system"
	RoleDeveloper = "developer"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// ChatCompletionRequest is the body of POST /v1/chat/completions.
//
// Parameters this package does not model are kept in Extra on decoding and
// sent again on encoding, so that a gateway can forward a request upstream
// without dropping what the client asked for.
type ChatCompletionRequest struct {
	Model               string          `json:"model"`
	Messages            []ChatMessage   `json:"messages"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *StreamOptions  `json:"stream_options,omitempty"`
	Stop                StringOrArray   `json:"stop,omitempty"`
	Logprobs            bool            `json:"logprobs,omitempty"`
	TopLogprobs         *int            `json:"top_logprobs,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	User                string          `json:"user,omitempty"`
	Tools               json.RawMessage `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
	ResponseFormat      json.RawMessage `json:"response_format,omitempty"`
	LogitBias           json.RawMessage `json:"logit_bias,omitempty"`

	// Extra holds the request's other top-level members, verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the modelled fields and keeps the others in Extra.
func (r *ChatCompletionRequest) UnmarshalJSON(b []byte) error {
	type plain ChatCompletionRequest
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	extra, err := unknownFields(b, chatFields())
	if err != nil {
		return err
	}
	v.Extra = extra
	*r = ChatCompletionRequest(v)
	return nil
}

// MarshalJSON encodes the modelled fields followed by Extra.
func (r ChatCompletionRequest) MarshalJSON() ([]byte, error) {
	type plain ChatCompletionRequest
	b, err := json.Marshal(plain(r))
	if err != nil {
		return nil, err
	}
	return appendFields(b, r.Extra, chatFields())
}

// StreamOptions are the options of a streamed reply.
type StreamOptions struct {
	// IncludeUsage asks for a last chunk, with no choices, carrying usage.
	IncludeUsage bool `json:"include_usage,omitempty"`
}

// ChatMessage is one message of a conversation, in a request or a reply.
type ChatMessage struct {
	Role       string          `json:"role"`
	Content    Content         `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  json.RawMessage `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// Content is a message's content: OpenAI accepts a plain string or an array
// of typed parts ({"type":"text","text":...}, images, audio...). It decodes
// both and encodes back the form it came in; null decodes with Null set.
type Content struct {
	// Text is the string form.
	Text string
	// Parts is the array form; non-nil means the content is an array.
	Parts []ContentPart
	// Null marks a null or absent content (an assistant message with only
	// tool calls); it encodes as null.
	Null bool
}

// TextContent returns string content.
func TextContent(s string) Content { return Content{Text: s} }

// String returns the text of the content: the string form, or the text parts
// joined by newlines (non-text parts are skipped).
func (c Content) String() string {
	if c.Parts == nil {
		return c.Text
	}
	var texts []string
	for _, p := range c.Parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// MarshalJSON encodes the parts array, null, or the string.
func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.Parts != nil:
		return json.Marshal(c.Parts)
	case c.Null && c.Text == "":
		return []byte("null"), nil
	}
	return json.Marshal(c.Text)
}

// UnmarshalJSON accepts null, a string, or an array of content parts.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*c = Content{}
	switch {
	case bytes.Equal(b, []byte("null")):
		c.Null = true
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, &c.Text)
	case len(b) > 0 && b[0] == '[':
		parts := []ContentPart{}
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		c.Parts = parts
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: contentType}
}

// ContentPart is one element of an array content. Text parts are modelled;
// other kinds (image_url, input_audio, file, ...) are kept whole in Raw and
// sent back unchanged.
type ContentPart struct {
	Type string
	Text string
	// Raw is the part as received, for parts other than text.
	Raw json.RawMessage
}

// MarshalJSON encodes a text part, or a non-text part's Raw form.
func (p ContentPart) MarshalJSON() ([]byte, error) {
	if p.Type != "text" && p.Raw != nil {
		return p.Raw, nil
	}
	return json.Marshal(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{p.Type, p.Text})
}

// UnmarshalJSON decodes a part; it must be an object with a string "type".
func (p *ContentPart) UnmarshalJSON(b []byte) error {
	var v struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = ContentPart{Type: v.Type, Text: v.Text}
	if v.Type != "text" {
		p.Raw = append(json.RawMessage(nil), bytes.TrimSpace(b)...)
	}
	return nil
}

// ChatCompletionResponse is the reply to a non-streamed chat completion.
type ChatCompletionResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []ChatChoice `json:"choices"`
	Usage             *Usage       `json:"usage,omitempty"`
	SystemFingerprint string       `json:"system_fingerprint,omitempty"`
}

// ChatChoice is one generated message.
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      ChatMessage   `json:"message"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

// ChatLogprobs are the log probabilities of the generated tokens.
type ChatLogprobs struct {
	Content []TokenLogprob `json:"content"`
}

// TokenLogprob is one generated token with its log probability and the
// most likely alternatives at that position. Bytes are the token's UTF-8
// bytes as numbers (a token may hold part of a character).
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []TopLogprob `json:"top_logprobs"`
}

// TopLogprob is one alternative token at a position.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// Usage counts the tokens of a request.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// ChatCompletionChunk is one event of a streamed chat completion.
type ChatCompletionChunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	Choices           []ChatChunkChoice `json:"choices"`
	Usage             *Usage            `json:"usage,omitempty"`
	SystemFingerprint string            `json:"system_fingerprint,omitempty"`
}

// ChatChunkChoice is the part of one choice that a chunk carries.
type ChatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        ChatDelta     `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason NullString    `json:"finish_reason"`
}

// ChatDelta is the new part of a message: the role in the first chunk, then
// content. Content is a pointer so that an empty string can still be sent.
type ChatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}
