package gateway

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/distillery/distillery/openai"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	idRe      = regexp.MustCompile(`"id":"(chatcmpl|cmpl)-[0-9a-f]{24}"`)
	createdRe = regexp.MustCompile(`"created":[0-9]+`)
)

// normalise replaces the random id and the clock in a reply.
func normalise(b []byte) []byte {
	b = idRe.ReplaceAll(b, []byte(`"id":"${1}-ID"`))
	return createdRe.ReplaceAll(b, []byte(`"created":0`))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the reply:\n got: %s\nwant: %s", path, got, want)
	}
}

func TestChatGolden(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{})
	body := `{"model":"test-model","messages":[{"role":"system","content":"be brief"},` +
		`{"role":"user","content":[{"type":"text","text":"the quick"},{"type":"text","text":"brown fox"}]}],` +
		`"logprobs":true,"top_logprobs":2,"stop":["fox"],"temperature":0,"seed":7}`
	resp, got := do(t, ts, "POST", "/v1/chat/completions", body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	golden(t, "chat.golden.json", normalise(got))

	var r openai.ChatCompletionResponse
	if err := json.Unmarshal(got, &r); err != nil {
		t.Fatal(err)
	}
	c := r.Choices[0]
	if c.Message.Content.String() != "the quick brown " || c.FinishReason != "stop" {
		t.Errorf("content %q finish %q", c.Message.Content.String(), c.FinishReason)
	}
	if n := len(c.Logprobs.Content); n != 4 {
		t.Fatalf("%d logprobs, want 4 (the last, \" fox\", holds the stop but starts before it)", n)
	}
	for _, lp := range c.Logprobs.Content {
		if len(lp.TopLogprobs) != 2 {
			t.Errorf("token %q has %d top logprobs, want 2", lp.Token, len(lp.TopLogprobs))
		}
	}
	if r.Usage.PromptTokens != 8 || r.Usage.CompletionTokens != 4 || r.Usage.TotalTokens != 12 {
		t.Errorf("usage %+v", r.Usage)
	}
}

// sseEvents reads a streamed reply into its data payloads.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	if err := openai.ReadSSE(bytes.NewReader(body), func(_ string, data []byte) error {
		out = append(out, string(data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestChatStreamGolden(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{})
	body := `{"model":"test-model","messages":[{"role":"user","content":"one two three"}],` +
		`"stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":1}`
	resp, got := do(t, ts, "POST", "/v1/chat/completions", body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	golden(t, "chat_stream.golden.txt", normalise(got))

	events := sseEvents(t, got)
	if len(events) != 7 || events[6] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	var chunks []openai.ChatCompletionChunk
	for _, e := range events[:6] {
		var c openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		if c.Object != "chat.completion.chunk" || c.ID != chunks0ID(chunks, c.ID) {
			t.Fatalf("chunk %s", e)
		}
		chunks = append(chunks, c)
	}
	if d := chunks[0].Choices[0].Delta; d.Role != "assistant" || *d.Content != "" {
		t.Errorf("first chunk delta %+v, want the role", d)
	}
	var text strings.Builder
	for i, c := range chunks[1:4] {
		ch := c.Choices[0]
		text.WriteString(*ch.Delta.Content)
		if ch.FinishReason != "" || len(ch.Logprobs.Content) != 1 || len(ch.Logprobs.Content[0].TopLogprobs) != 1 {
			t.Errorf("content chunk %d: %+v", i, ch)
		}
		if ch.Logprobs.Content[0].Token != *ch.Delta.Content {
			t.Errorf("chunk %d carries logprobs of %q for %q", i, ch.Logprobs.Content[0].Token, *ch.Delta.Content)
		}
	}
	if text.String() != "one two three" {
		t.Errorf("text %q", text.String())
	}
	if f := chunks[4].Choices[0]; f.FinishReason != "stop" || f.Delta.Content != nil || f.Delta.Role != "" {
		t.Errorf("final chunk %+v", f)
	}
	if u := chunks[5]; len(u.Choices) != 0 || u.Usage == nil || u.Usage.PromptTokens != 4 || u.Usage.CompletionTokens != 3 {
		t.Errorf("usage chunk %+v", u)
	}
}

func chunks0ID(chunks []openai.ChatCompletionChunk, id string) string {
	if len(chunks) == 0 {
		return id
	}
	return chunks[0].ID
}

// TestStopOverHTTP checks that streamed and whole replies agree on where a
// stop string cuts, including one split across tokens.
func TestStopOverHTTP(t *testing.T) {
	tests := []struct {
		name, content, stop, want, finish string
		maxTokens                         int
	}{
		{"none", "a b c", `null`, "a b c", "stop", 0},
		{"one token", "a b c", `"b"`, "a ", "stop", 0},
		{"split across tokens", "x split:ENDy z", `["END"]`, "x ", "stop", 0},
		{"prefix then not", "x split:ENx z", `"END"`, "x ENx z", "stop", 0},
		{"earliest of several", "a b c d", `["d"," c"]`, "a b", "stop", 0},
		{"at the start", "stop here", `"stop"`, "", "stop", 0},
		{"utf8 bytes", "split:é! end", `"!"`, "é", "stop", 0},
		{"length", "a b c d", `null`, "a b", "length", 2},
		{"stop beats length", "a b c d", `" b"`, "a", "stop", 3},
	}
	ts := newTestServer(t, newEcho(), Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := map[string]any{
				"model": "test-model", "stop": json.RawMessage(tt.stop),
				"messages": []map[string]string{{"role": "user", "content": tt.content}},
			}
			if tt.maxTokens > 0 {
				req["max_tokens"] = tt.maxTokens
			}
			b, _ := json.Marshal(req)
			resp, body := do(t, ts, "POST", "/v1/chat/completions", string(b))
			var r openai.ChatCompletionResponse
			if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if got := r.Choices[0].Message.Content.String(); got != tt.want || r.Choices[0].FinishReason != tt.finish {
				t.Errorf("whole: %q %s, want %q %s", got, r.Choices[0].FinishReason, tt.want, tt.finish)
			}

			req["stream"] = true
			b, _ = json.Marshal(req)
			_, body = do(t, ts, "POST", "/v1/chat/completions", string(b))
			var text strings.Builder
			finish := ""
			for _, e := range sseEvents(t, body) {
				if e == "[DONE]" {
					continue
				}
				var c openai.ChatCompletionChunk
				if err := json.Unmarshal([]byte(e), &c); err != nil {
					t.Fatal(err)
				}
				if d := c.Choices[0].Delta.Content; d != nil {
					text.WriteString(*d)
				}
				if f := c.Choices[0].FinishReason; f != "" {
					finish = string(f)
				}
			}
			if text.String() != tt.want || finish != tt.finish {
				t.Errorf("stream: %q %s, want %q %s", text.String(), finish, tt.want, tt.finish)
			}
		})
	}
}

func TestChatParamsReachBackend(t *testing.T) {
	b := newEcho()
	ts := newTestServer(t, b, Options{})
	resp, body := do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`,"max_completion_tokens":5,"max_tokens":9,`+
		`"temperature":0.5,"top_p":0.9,"seed":42,"logprobs":true,"top_logprobs":3,"stop":"x","user":"u","metadata":{"a":1}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	p := b.lastParams.Load()
	if p.MaxTokens != 5 || p.Temperature != 0.5 || p.TopP != 0.9 || *p.Seed != 42 || !p.Logprobs || p.TopLogprobs != 3 || p.Stop[0] != "x" {
		t.Errorf("params %+v", p)
	}
	do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`}`)
	if p := b.lastParams.Load(); p.Temperature != 1 || p.TopP != 1 || p.MaxTokens != 0 || p.Logprobs || p.Seed != nil {
		t.Errorf("default params %+v", p)
	}
}

func TestChatNoLogprobs(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{})
	_, body := do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`}`)
	if !bytes.Contains(body, []byte(`"logprobs":null`)) {
		t.Errorf("want logprobs null: %s", body)
	}
	_, body = do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`,"logprobs":true}`)
	if !bytes.Contains(body, []byte(`"top_logprobs":[]`)) {
		t.Errorf("want empty top_logprobs: %s", body)
	}
}

func TestMidStreamError(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{})
	resp, body := do(t, ts, "POST", "/v1/chat/completions",
		`{"model":"test-model","stream":true,"messages":[{"role":"user","content":"a b FAILLATE c"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	events := sseEvents(t, body)
	last := events[len(events)-1]
	var e openai.ErrorResponse
	if err := json.Unmarshal([]byte(last), &e); err != nil || e.Error == nil || !strings.Contains(e.Error.Message, "exploded mid-way") {
		t.Fatalf("last event %q, want an error", last)
	}
	if e.Error.Type != "server_error" {
		t.Errorf("type %q", e.Error.Type)
	}
	for _, ev := range events {
		if ev == "[DONE]" {
			t.Error("[DONE] after an error")
		}
	}
}
