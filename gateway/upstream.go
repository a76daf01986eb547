package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/distillery/distillery/openai"
)

// upstream is an OpenAI-compatible or Anthropic endpoint serving one tier.
type upstream struct {
	tier   string
	cfg    UpstreamConfig
	key    string
	client *http.Client
}

// newUpstream reads the key from the configured environment variable.
func newUpstream(tier string, cfg UpstreamConfig) (*upstream, error) {
	u := &upstream{tier: tier, cfg: cfg}
	if cfg.APIKeyEnv != "" {
		u.key = os.Getenv(cfg.APIKeyEnv)
		if u.key == "" {
			return nil, fmt.Errorf("%s tier: environment variable %s is empty", tier, cfg.APIKeyEnv)
		}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
	}
	u.client = &http.Client{Transport: tr}
	return u, nil
}

// upstreamError is a failed upstream call: its status and OpenAI-shaped error.
type upstreamError struct {
	status int
	err    *openai.APIError
}

func (e *upstreamError) Error() string {
	return fmt.Sprintf("upstream %d: %s", e.status, e.err.Message)
}

// reply is a whole answer from any tier, in OpenAI's shape.
type reply struct {
	body   []byte // chat.completion JSON as sent to the client
	text   string // first choice's content
	tools  bool   // the answer calls tools
	finish string
	usage  openai.Usage
	tokens []Token // the answer's tokens with log probabilities, when known
}

// chatRequest is what a tier receives: the client's request (model
// replaced) and whether the client asked for usage in a stream.
func (u *upstream) post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.cfg.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if u.cfg.Kind == "anthropic" {
		req.Header.Set("anthropic-version", "2023-06-01")
		if u.key != "" {
			req.Header.Set("x-api-key", u.key)
		}
	} else if u.key != "" {
		req.Header.Set("Authorization", "Bearer "+u.key)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		ae := openai.DecodeError(resp.StatusCode, b)
		if u.cfg.Kind == "anthropic" {
			var ae2 struct {
				Error struct{ Type, Message string }
			}
			if json.Unmarshal(b, &ae2) == nil && ae2.Error.Message != "" {
				ae = &openai.APIError{Message: ae2.Error.Message, Type: ae2.Error.Type, Status: resp.StatusCode}
			}
		}
		return nil, &upstreamError{status: resp.StatusCode, err: ae}
	}
	return resp, nil
}

// chat sends a chat request and returns the whole answer.
func (u *upstream) chat(ctx context.Context, req openai.ChatCompletionRequest) (*reply, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	req.Model, req.Stream, req.StreamOptions = u.cfg.Model, false, nil
	if u.cfg.Kind == "anthropic" {
		return u.anthropicChat(ctx, req)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := u.post(ctx, "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s upstream: read reply: %w", u.tier, err)
	}
	return parseChatReply(raw)
}

// parseChatReply reads what the gateway needs from a chat.completion body.
func parseChatReply(raw []byte) (*reply, error) {
	var r openai.ChatCompletionResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("upstream reply is not a chat completion: %w", err)
	}
	out := &reply{body: raw}
	if r.Usage != nil {
		out.usage = *r.Usage
	}
	if len(r.Choices) > 0 {
		c := r.Choices[0]
		out.text = c.Message.Content.String()
		out.tools = isSet(c.Message.ToolCalls)
		out.finish = c.FinishReason
		if c.Logprobs != nil {
			for _, lp := range c.Logprobs.Content {
				t := Token{Text: lp.Token, Logprob: lp.Logprob}
				for _, a := range lp.TopLogprobs {
					t.Top = append(t.Top, TopToken{Text: a.Token, Logprob: a.Logprob})
				}
				out.tokens = append(out.tokens, t)
			}
		}
	}
	return out, nil
}

// streamSummary is what a streamed answer amounted to.
type streamSummary struct {
	text   string
	tools  bool
	finish string
	usage  openai.Usage
}

// chatStream streams a chat answer, calling send with each SSE data
// payload to pass on (OpenAI chunk JSON); wantUsage says whether the
// client asked for the usage chunk (the gateway always asks upstream).
func (u *upstream) chatStream(ctx context.Context, req openai.ChatCompletionRequest, wantUsage bool, send func([]byte) error) (streamSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	req.Model, req.Stream = u.cfg.Model, true
	if u.cfg.Kind == "anthropic" {
		return u.anthropicStream(ctx, req, wantUsage, send)
	}
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	body, err := json.Marshal(req)
	if err != nil {
		return streamSummary{}, err
	}
	resp, err := u.post(ctx, "/chat/completions", body)
	if err != nil {
		return streamSummary{}, err
	}
	defer resp.Body.Close()
	var sum streamSummary
	var text strings.Builder
	rd := openai.NewSSEReader(resp.Body)
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return sum, fmt.Errorf("%s upstream: stream ended without [DONE]", u.tier)
		}
		if err != nil {
			return sum, fmt.Errorf("%s upstream: %w", u.tier, err)
		}
		if openai.IsDone(ev.Data) {
			sum.text = text.String()
			return sum, nil
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content   *string         `json:"content"`
					ToolCalls json.RawMessage `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *openai.Usage    `json:"usage"`
			Error *openai.APIError `json:"error"`
		}
		if err := json.Unmarshal(ev.Data, &ch); err != nil {
			return sum, fmt.Errorf("%s upstream: bad chunk: %w", u.tier, err)
		}
		if ch.Error != nil {
			send(ev.Data)
			return sum, &upstreamError{status: http.StatusBadGateway, err: ch.Error}
		}
		if ch.Usage != nil {
			sum.usage = *ch.Usage
		}
		for _, c := range ch.Choices {
			if c.Delta.Content != nil {
				text.WriteString(*c.Delta.Content)
			}
			if isSet(c.Delta.ToolCalls) {
				sum.tools = true
			}
			if c.FinishReason != nil {
				sum.finish = *c.FinishReason
			}
		}
		if len(ch.Choices) == 0 && ch.Usage != nil && !wantUsage {
			continue // the usage chunk the gateway asked for itself
		}
		if !wantUsage && ch.Usage != nil {
			ev.Data = dropUsage(ev.Data)
		}
		if err := send(ev.Data); err != nil {
			return sum, err
		}
	}
}

// dropUsage removes a "usage" member from a chunk the client did not ask
// usage for.
func dropUsage(data []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return data
	}
	delete(m, "usage")
	b, err := json.Marshal(m)
	if err != nil {
		return data
	}
	return b
}

// Anthropic Messages API.

type anthMessage struct {
	Role    string      `json:"role"`
	Content []anthBlock `json:"content"`
}

type anthBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   string          `json:"content,omitempty"`
}

type anthTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthRequest struct {
	Model         string        `json:"model"`
	System        string        `json:"system,omitempty"`
	Messages      []anthMessage `json:"messages"`
	MaxTokens     int           `json:"max_tokens"`
	Temperature   *float64      `json:"temperature,omitempty"`
	TopP          *float64      `json:"top_p,omitempty"`
	StopSequences []string      `json:"stop_sequences,omitempty"`
	Stream        bool          `json:"stream,omitempty"`
	Tools         []anthTool    `json:"tools,omitempty"`
}

type anthUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type anthResponse struct {
	ID         string      `json:"id"`
	Content    []anthBlock `json:"content"`
	StopReason string      `json:"stop_reason"`
	Usage      anthUsage   `json:"usage"`
}

// toAnthropic translates an OpenAI chat request.
func (u *upstream) toAnthropic(req openai.ChatCompletionRequest) (anthRequest, error) {
	ar := anthRequest{Model: u.cfg.Model, MaxTokens: u.cfg.MaxTokens, Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.Stop}
	if req.MaxCompletionTokens != nil {
		ar.MaxTokens = *req.MaxCompletionTokens
	} else if req.MaxTokens != nil {
		ar.MaxTokens = *req.MaxTokens
	}
	if ar.Temperature != nil && *ar.Temperature > 1 {
		t := 1.0
		ar.Temperature = &t // Anthropic's range is [0, 1]
	}
	var sys []string
	for _, m := range req.Messages {
		switch m.Role {
		case openai.RoleSystem, openai.RoleDeveloper:
			sys = append(sys, m.Content.String())
		case openai.RoleUser:
			ar.Messages = appendAnth(ar.Messages, "user", anthBlock{Type: "text", Text: m.Content.String()})
		case openai.RoleAssistant:
			if t := m.Content.String(); t != "" {
				ar.Messages = appendAnth(ar.Messages, "assistant", anthBlock{Type: "text", Text: t})
			}
			if isSet(m.ToolCalls) {
				var calls []struct {
					ID       string
					Function struct{ Name, Arguments string }
				}
				if err := json.Unmarshal(m.ToolCalls, &calls); err != nil {
					return ar, invalid("messages", "invalid_value", "Invalid tool_calls: %v.", err)
				}
				for _, c := range calls {
					in := json.RawMessage(c.Function.Arguments)
					if !json.Valid(in) {
						in = json.RawMessage("{}")
					}
					ar.Messages = appendAnth(ar.Messages, "assistant", anthBlock{Type: "tool_use", ID: c.ID, Name: c.Function.Name, Input: in})
				}
			}
		case openai.RoleTool:
			ar.Messages = appendAnth(ar.Messages, "user", anthBlock{Type: "tool_result", ToolUseID: m.ToolCallID, Content: m.Content.String()})
		}
	}
	ar.System = strings.Join(sys, "\n\n")
	if isSet(req.Tools) {
		var tools []struct {
			Type     string
			Function struct {
				Name, Description string
				Parameters        json.RawMessage
			}
		}
		if err := json.Unmarshal(req.Tools, &tools); err != nil {
			return ar, invalid("tools", "invalid_value", "Invalid tools: %v.", err)
		}
		for _, t := range tools {
			schema := t.Function.Parameters
			if !isSet(schema) {
				schema = json.RawMessage(`{"type":"object"}`)
			}
			ar.Tools = append(ar.Tools, anthTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
		}
	}
	return ar, nil
}

func appendAnth(ms []anthMessage, role string, b anthBlock) []anthMessage {
	if n := len(ms); n > 0 && ms[n-1].Role == role {
		ms[n-1].Content = append(ms[n-1].Content, b)
		return ms
	}
	return append(ms, anthMessage{Role: role, Content: []anthBlock{b}})
}

func anthFinish(stop string) string {
	switch stop {
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	}
	return "stop"
}

func (u *upstream) anthropicChat(ctx context.Context, req openai.ChatCompletionRequest) (*reply, error) {
	ar, err := u.toAnthropic(req)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(ar)
	resp, err := u.post(ctx, "/messages", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r anthResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s upstream: bad Anthropic reply: %w", u.tier, err)
	}
	var text strings.Builder
	type call struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	var calls []call
	for _, b := range r.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			c := call{ID: b.ID, Type: "function"}
			c.Function.Name, c.Function.Arguments = b.Name, string(b.Input)
			calls = append(calls, c)
		}
	}
	msg := openai.ChatMessage{Role: openai.RoleAssistant, Content: openai.TextContent(text.String())}
	if len(calls) > 0 {
		msg.ToolCalls, _ = json.Marshal(calls)
		if text.Len() == 0 {
			msg.Content = openai.Content{Null: true}
		}
	}
	usage := openai.Usage{PromptTokens: r.Usage.InputTokens, CompletionTokens: r.Usage.OutputTokens, TotalTokens: r.Usage.InputTokens + r.Usage.OutputTokens}
	out := openai.ChatCompletionResponse{
		ID: "chatcmpl-" + r.ID, Object: openai.ObjectChatCompletion, Created: time.Now().Unix(), Model: u.cfg.Model,
		Choices: []openai.ChatChoice{{Message: msg, FinishReason: anthFinish(r.StopReason)}}, Usage: &usage,
	}
	raw, _ := json.Marshal(out)
	return &reply{body: raw, text: text.String(), tools: len(calls) > 0, finish: out.Choices[0].FinishReason, usage: usage}, nil
}

func (u *upstream) anthropicStream(ctx context.Context, req openai.ChatCompletionRequest, wantUsage bool, send func([]byte) error) (streamSummary, error) {
	var sum streamSummary
	ar, err := u.toAnthropic(req)
	if err != nil {
		return sum, err
	}
	if len(ar.Tools) > 0 {
		return sum, invalid("tools", "unsupported_parameter", "Streaming with tools is not supported on the Anthropic tier; send stream: false.")
	}
	ar.Stream = true
	body, _ := json.Marshal(ar)
	resp, err := u.post(ctx, "/messages", body)
	if err != nil {
		return sum, err
	}
	defer resp.Body.Close()
	id, created := newID("chatcmpl-"), time.Now().Unix()
	chunk := func(delta openai.ChatDelta, finish string, usage *openai.Usage) error {
		c := openai.ChatCompletionChunk{ID: id, Object: openai.ObjectChatCompletionChunk, Created: created, Model: u.cfg.Model,
			Choices: []openai.ChatChunkChoice{{Delta: delta, FinishReason: openai.NullString(finish)}}}
		if usage != nil {
			c.Choices, c.Usage = []openai.ChatChunkChoice{}, usage
		}
		b, _ := json.Marshal(c)
		return send(b)
	}
	empty := ""
	if err := chunk(openai.ChatDelta{Role: openai.RoleAssistant, Content: &empty}, "", nil); err != nil {
		return sum, err
	}
	var text strings.Builder
	rd := openai.NewSSEReader(resp.Body)
	for {
		ev, err := rd.Next()
		if err != nil {
			return sum, fmt.Errorf("%s upstream: stream: %w", u.tier, err)
		}
		var e struct {
			Type    string `json:"type"`
			Message struct {
				Usage anthUsage `json:"usage"`
			} `json:"message"`
			Delta struct {
				Type       string `json:"type"`
				Text       string `json:"text"`
				StopReason string `json:"stop_reason"`
			} `json:"delta"`
			Usage anthUsage `json:"usage"`
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return sum, fmt.Errorf("%s upstream: bad event: %w", u.tier, err)
		}
		switch e.Type {
		case "message_start":
			sum.usage.PromptTokens = e.Message.Usage.InputTokens
		case "content_block_delta":
			if e.Delta.Type == "text_delta" {
				text.WriteString(e.Delta.Text)
				t := e.Delta.Text
				if err := chunk(openai.ChatDelta{Content: &t}, "", nil); err != nil {
					return sum, err
				}
			}
		case "message_delta":
			sum.finish = anthFinish(e.Delta.StopReason)
			sum.usage.CompletionTokens = e.Usage.OutputTokens
		case "error":
			return sum, &upstreamError{status: http.StatusBadGateway, err: &openai.APIError{Message: e.Error.Message, Type: e.Error.Type}}
		case "message_stop":
			sum.text = text.String()
			sum.usage.TotalTokens = sum.usage.PromptTokens + sum.usage.CompletionTokens
			if err := chunk(openai.ChatDelta{}, sum.finish, nil); err != nil {
				return sum, err
			}
			if wantUsage {
				u := sum.usage
				if err := chunk(openai.ChatDelta{}, "", &u); err != nil {
					return sum, err
				}
			}
			return sum, nil
		}
	}
}

// complete proxies a legacy completion to an OpenAI-compatible upstream,
// returning the raw reply and its usage.
func (u *upstream) complete(ctx context.Context, req openai.CompletionRequest) ([]byte, openai.Usage, error) {
	if u.cfg.Kind == "anthropic" {
		return nil, openai.Usage{}, invalid("model", "unsupported_value", "The %s tier (Anthropic) has no legacy completions endpoint; use /v1/chat/completions.", u.tier)
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	req.Model, req.Stream, req.StreamOptions = u.cfg.Model, false, nil
	body, err := json.Marshal(req)
	if err != nil {
		return nil, openai.Usage{}, err
	}
	resp, err := u.post(ctx, "/completions", body)
	if err != nil {
		return nil, openai.Usage{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, openai.Usage{}, err
	}
	var r openai.CompletionResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, openai.Usage{}, fmt.Errorf("%s upstream: bad completion reply: %w", u.tier, err)
	}
	var us openai.Usage
	if r.Usage != nil {
		us = *r.Usage
	}
	return raw, us, nil
}

// embed calls an OpenAI /embeddings endpoint.
func (u *upstream) embed(ctx context.Context, text string) ([]float32, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"model": u.cfg.Model, "input": text})
	resp, err := u.post(ctx, "/embeddings", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data []struct {
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("embeddings: %w", err)
	}
	if len(r.Data) == 0 || len(r.Data[0].Embedding) == 0 {
		return nil, errors.New("embeddings: empty reply")
	}
	return r.Data[0].Embedding, nil
}
