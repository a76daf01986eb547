// Package gatewaytest provides a stand-in LLM provider for tests and
// benchmarks of the gateway: an HTTP handler that speaks the OpenAI API
// (chat completions streamed or not, with logprobs and tool calls,
// legacy completions, embeddings) and Anthropic's Messages API.
package gatewaytest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Upstream is a deterministic provider. Its answer to a chat is Prefix
// followed by the last user message; a message containing "LABEL:x"
// is answered "x" (for classification routes).
type Upstream struct {
	// Key, when set, is the API key every request must carry.
	Key string
	// Prefix starts every answer (default "answer: ").
	Prefix string
	// Delay is added before each reply.
	Delay time.Duration

	Calls atomic.Int64
	mu    sync.Mutex
	last  []byte
}

// LastRequest is the body of the last request received.
func (u *Upstream) LastRequest() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]byte(nil), u.last...)
}

func (u *Upstream) prefix() string {
	if u.Prefix == "" {
		return "answer: "
	}
	return u.Prefix
}

type msg struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

func (m msg) text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct{ Type, Text string }
	json.Unmarshal(m.Content, &parts)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

func (u *Upstream) answer(msgs []msg) string {
	last := ""
	for _, m := range msgs {
		if m.Role == "user" {
			last = m.text()
		}
	}
	if i := strings.Index(last, "LABEL:"); i >= 0 {
		return strings.Fields(last[i+6:])[0]
	}
	return u.prefix() + last
}

func words(s string) []string {
	f := strings.Fields(s)
	for i := 1; i < len(f); i++ {
		f[i] = " " + f[i]
	}
	return f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.Calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.last = body
	u.mu.Unlock()
	if u.Key != "" && r.Header.Get("Authorization") != "Bearer "+u.Key && r.Header.Get("X-Api-Key") != u.Key {
		writeJSON(w, 401, map[string]any{"error": map[string]any{"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}})
		return
	}
	if u.Delay > 0 {
		time.Sleep(u.Delay)
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/chat/completions"):
		u.chat(w, body)
	case strings.HasSuffix(r.URL.Path, "/completions"):
		u.complete(w, body)
	case strings.HasSuffix(r.URL.Path, "/embeddings"):
		u.embed(w, body)
	case strings.HasSuffix(r.URL.Path, "/messages"):
		u.messages(w, body)
	default:
		writeJSON(w, 404, map[string]any{"error": map[string]any{"message": "no route " + r.URL.Path, "type": "invalid_request_error"}})
	}
}

func (u *Upstream) chat(w http.ResponseWriter, body []byte) {
	var req struct {
		Model         string `json:"model"`
		Messages      []msg  `json:"messages"`
		Stream        bool   `json:"stream"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
		Logprobs    bool            `json:"logprobs"`
		TopLogprobs int             `json:"top_logprobs"`
		Tools       json.RawMessage `json:"tools"`
		MaxTokens   *int            `json:"max_tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Messages) == 0 {
		writeJSON(w, 400, map[string]any{"error": map[string]any{"message": "bad request", "type": "invalid_request_error"}})
		return
	}
	text := u.answer(req.Messages)
	toks := words(text)
	if req.MaxTokens != nil && len(toks) > *req.MaxTokens {
		toks = toks[:*req.MaxTokens]
		text = strings.Join(toks, "")
	}
	prompt := 0
	for _, m := range req.Messages {
		prompt += len(strings.Fields(m.text())) + 3
	}
	usage := map[string]int{"prompt_tokens": prompt, "completion_tokens": len(toks), "total_tokens": prompt + len(toks)}
	lp := func(ts []string) any {
		var out []any
		for _, t := range ts {
			top := []any{map[string]any{"token": t, "logprob": -0.05, "bytes": []int{}}}
			for k := 1; k < req.TopLogprobs; k++ {
				top = append(top, map[string]any{"token": fmt.Sprintf("alt%d", k), "logprob": -4.0 - float64(k), "bytes": []int{}})
			}
			out = append(out, map[string]any{"token": t, "logprob": -0.05, "bytes": []int{}, "top_logprobs": top})
		}
		return map[string]any{"content": out}
	}
	var tools []struct {
		Function struct{ Name string } `json:"function"`
	}
	json.Unmarshal(req.Tools, &tools)
	if !req.Stream {
		message := map[string]any{"role": "assistant", "content": text}
		finish := "stop"
		if len(tools) > 0 {
			message = map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
				"id": "call_1", "type": "function", "function": map[string]any{"name": tools[0].Function.Name, "arguments": "{}"}}}}
			finish = "tool_calls"
		}
		choice := map[string]any{"index": 0, "message": message, "finish_reason": finish, "logprobs": nil}
		if req.Logprobs {
			choice["logprobs"] = lp(toks)
		}
		writeJSON(w, 200, map[string]any{"id": "chatcmpl-stub", "object": "chat.completion", "created": 1, "model": req.Model,
			"choices": []any{choice}, "usage": usage})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if fl != nil {
			fl.Flush()
		}
	}
	chunk := func(delta map[string]any, finish any, lps any) map[string]any {
		c := map[string]any{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lps}
		return map[string]any{"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1, "model": req.Model, "choices": []any{c}}
	}
	send(chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil))
	for _, t := range toks {
		var lps any
		if req.Logprobs {
			lps = lp([]string{t})
		}
		send(chunk(map[string]any{"content": t}, nil, lps))
	}
	send(chunk(map[string]any{}, "stop", nil))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		send(map[string]any{"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1, "model": req.Model, "choices": []any{}, "usage": usage})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func (u *Upstream) complete(w http.ResponseWriter, body []byte) {
	var req struct {
		Model  string          `json:"model"`
		Prompt json.RawMessage `json:"prompt"`
	}
	json.Unmarshal(body, &req)
	var p string
	json.Unmarshal(req.Prompt, &p)
	text := u.prefix() + p
	n := len(strings.Fields(text))
	writeJSON(w, 200, map[string]any{"id": "cmpl-stub", "object": "text_completion", "created": 1, "model": req.Model,
		"choices": []any{map[string]any{"text": text, "index": 0, "logprobs": nil, "finish_reason": "stop"}},
		"usage":   map[string]int{"prompt_tokens": len(strings.Fields(p)), "completion_tokens": n, "total_tokens": n + len(strings.Fields(p))}})
}

// Embedding is the stub's embedding of a text: hashed words, 64 dims.
func Embedding(text string) []float32 {
	v := make([]float32, 64)
	for _, w := range strings.Fields(strings.ToLower(text)) {
		h := fnv.New32a()
		h.Write([]byte(w))
		v[h.Sum32()%64]++
	}
	var s float64
	for _, x := range v {
		s += float64(x * x)
	}
	if s > 0 {
		for i := range v {
			v[i] /= float32(math.Sqrt(s))
		}
	}
	return v
}

func (u *Upstream) embed(w http.ResponseWriter, body []byte) {
	var req struct {
		Input string `json:"input"`
	}
	json.Unmarshal(body, &req)
	writeJSON(w, 200, map[string]any{"object": "list", "data": []any{map[string]any{"object": "embedding", "index": 0, "embedding": Embedding(req.Input)}}})
}

func (u *Upstream) messages(w http.ResponseWriter, body []byte) {
	var req struct {
		Model    string `json:"model"`
		System   string `json:"system"`
		Messages []struct {
			Role    string `json:"role"`
			Content []struct {
				Type, Text string
			} `json:"content"`
		} `json:"messages"`
		Stream bool `json:"stream"`
		Tools  []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Messages) == 0 {
		writeJSON(w, 400, map[string]any{"type": "error", "error": map[string]any{"type": "invalid_request_error", "message": "bad request"}})
		return
	}
	var ms []msg
	for _, m := range req.Messages {
		var b strings.Builder
		for _, c := range m.Content {
			b.WriteString(c.Text)
		}
		raw, _ := json.Marshal(b.String())
		ms = append(ms, msg{Role: m.Role, Content: raw})
	}
	text := u.answer(ms)
	usage := map[string]int{"input_tokens": 7, "output_tokens": len(words(text))}
	if !req.Stream {
		content := []any{map[string]any{"type": "text", "text": text}}
		stop := "end_turn"
		if len(req.Tools) > 0 {
			content = []any{map[string]any{"type": "tool_use", "id": "toolu_1", "name": req.Tools[0].Name, "input": map[string]any{"q": 1}}}
			stop = "tool_use"
		}
		writeJSON(w, 200, map[string]any{"id": "msg_stub", "type": "message", "role": "assistant", "model": req.Model,
			"content": content, "stop_reason": stop, "usage": usage})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(name string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	}
	send("message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_stub", "usage": map[string]int{"input_tokens": 7, "output_tokens": 0}}})
	send("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
	for _, t := range words(text) {
		send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": t}})
	}
	send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	send("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn"}, "usage": map[string]int{"output_tokens": usage["output_tokens"]}})
	send("message_stop", map[string]any{"type": "message_stop"})
}
