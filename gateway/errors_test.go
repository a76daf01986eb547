package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distillery/distillery/openai"
)

func newTestServer(t *testing.T, b Backend, opts Options) *httptest.Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	ts := httptest.NewServer(NewServer(b, opts).Handler())
	t.Cleanup(ts.Close)
	return ts
}

func do(t *testing.T, ts *httptest.Server, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

const chatOK = `"model":"test-model","messages":[{"role":"user","content":"hello there"}]`

func TestErrorReplies(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		status                   int
		typ, code, param, msg    string
	}{
		{"malformed json", "POST", "/v1/chat/completions", `{"model":`, 400, "invalid_request_error", "invalid_json", "", "could not parse the JSON body"},
		{"trailing garbage", "POST", "/v1/chat/completions", `{` + chatOK + `} x`, 400, "invalid_request_error", "invalid_json", "", "could not parse"},
		{"empty body", "POST", "/v1/chat/completions", ``, 400, "invalid_request_error", "invalid_json", "", "body is empty"},
		{"body not an object", "POST", "/v1/chat/completions", `[1,2]`, 400, "invalid_request_error", "invalid_type", "", "must be a JSON object, not an array"},
		{"wrong type", "POST", "/v1/chat/completions", `{` + chatOK + `,"temperature":"hot"}`, 400, "invalid_request_error", "invalid_type", "temperature", "expected a number, but got a string"},
		{"wrong content type", "POST", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":5}]}`, 400, "invalid_request_error", "invalid_type", "messages.content", "a string or an array of content parts"},
		{"wrong stop type", "POST", "/v1/chat/completions", `{` + chatOK + `,"stop":7}`, 400, "invalid_request_error", "invalid_type", "stop", "a string or an array of strings"},
		{"missing messages", "POST", "/v1/chat/completions", `{"model":"test-model"}`, 400, "invalid_request_error", "missing_required_parameter", "messages", "'messages'"},
		{"empty messages", "POST", "/v1/chat/completions", `{"model":"test-model","messages":[]}`, 400, "invalid_request_error", "empty_array", "messages", "empty array"},
		{"missing model", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 400, "invalid_request_error", "missing_required_parameter", "model", "model parameter"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404, "invalid_request_error", "model_not_found", "model", "The model `gpt-9` does not exist"},
		{"unknown role", "POST", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"robot","content":"x"}]}`, 400, "invalid_request_error", "invalid_value", "messages[0].role", "'robot'"},
		{"image part", "POST", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "invalid_request_error", "unsupported_value", "messages[0].content[0].type", "image_url"},
		{"top_logprobs over 20", "POST", "/v1/chat/completions", `{` + chatOK + `,"logprobs":true,"top_logprobs":21}`, 400, "invalid_request_error", "invalid_value", "top_logprobs", "between 0 and 20"},
		{"top_logprobs negative", "POST", "/v1/chat/completions", `{` + chatOK + `,"logprobs":true,"top_logprobs":-1}`, 400, "invalid_request_error", "invalid_value", "top_logprobs", "between 0 and 20"},
		{"top_logprobs without logprobs", "POST", "/v1/chat/completions", `{` + chatOK + `,"top_logprobs":2}`, 400, "invalid_request_error", "invalid_value", "top_logprobs", "'logprobs' must be set to true"},
		{"n above 1", "POST", "/v1/chat/completions", `{` + chatOK + `,"n":2}`, 400, "invalid_request_error", "unsupported_value", "n", "n > 1 is not supported"},
		{"n zero", "POST", "/v1/chat/completions", `{` + chatOK + `,"n":0}`, 400, "invalid_request_error", "integer_below_min_value", "n", ">= 1"},
		{"temperature above 2", "POST", "/v1/chat/completions", `{` + chatOK + `,"temperature":2.5}`, 400, "invalid_request_error", "decimal_above_max_value", "temperature", "<= 2, but got 2.5"},
		{"temperature below 0", "POST", "/v1/chat/completions", `{` + chatOK + `,"temperature":-0.1}`, 400, "invalid_request_error", "decimal_below_min_value", "temperature", ">= 0"},
		{"top_p above 1", "POST", "/v1/chat/completions", `{` + chatOK + `,"top_p":1.5}`, 400, "invalid_request_error", "decimal_above_max_value", "top_p", "<= 1"},
		{"max_tokens zero", "POST", "/v1/chat/completions", `{` + chatOK + `,"max_tokens":0}`, 400, "invalid_request_error", "integer_below_min_value", "max_tokens", ">= 1"},
		{"max_completion_tokens too large", "POST", "/v1/chat/completions", `{` + chatOK + `,"max_completion_tokens":100}`, 400, "invalid_request_error", "invalid_value", "max_completion_tokens", "at most 64 tokens"},
		{"too many stops", "POST", "/v1/chat/completions", `{` + chatOK + `,"stop":["a","b","c","d","e"]}`, 400, "invalid_request_error", "array_above_max_length", "stop", "maximum length 4"},
		{"stream_options without stream", "POST", "/v1/chat/completions", `{` + chatOK + `,"stream_options":{"include_usage":true}}`, 400, "invalid_request_error", "invalid_value", "stream_options", "only allowed when 'stream' is enabled"},
		{"tools", "POST", "/v1/chat/completions", `{` + chatOK + `,"tools":[{"type":"function","function":{"name":"f"}}]}`, 400, "invalid_request_error", "unsupported_parameter", "tools", "Tools are not supported"},
		{"json response format", "POST", "/v1/chat/completions", `{` + chatOK + `,"response_format":{"type":"json_object"}}`, 400, "invalid_request_error", "unsupported_value", "response_format", "text"},
		{"prompt too long", "POST", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("w ", 80) + `"}]}`, 413, "invalid_request_error", "context_length_exceeded", "messages", "maximum context length is 64 tokens"},
		{"prompt too long stream", "POST", "/v1/chat/completions", `{"model":"test-model","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("w ", 80) + `"}]}`, 413, "invalid_request_error", "context_length_exceeded", "messages", "prompt too long"},
		{"backend error", "POST", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"FAIL now"}]}`, 500, "server_error", "", "", "echo backend: exploded"},
		{"backend error stream", "POST", "/v1/chat/completions", `{"model":"test-model","stream":true,"messages":[{"role":"user","content":"FAIL now"}]}`, 500, "server_error", "", "", "echo backend: exploded"},
		{"chat GET", "GET", "/v1/chat/completions", ``, 405, "invalid_request_error", "method_not_allowed", "", "use POST"},
		{"models POST", "POST", "/v1/models", `{}`, 405, "invalid_request_error", "method_not_allowed", "", "use GET"},
		{"unknown path", "GET", "/v1/embeddings", ``, 404, "invalid_request_error", "unknown_url", "", "Invalid URL (GET /v1/embeddings)"},
		{"unknown model by id", "GET", "/v1/models/other", ``, 404, "invalid_request_error", "model_not_found", "", "The model `other` does not exist"},
		{"completions missing prompt", "POST", "/v1/completions", `{"model":"test-model"}`, 400, "invalid_request_error", "missing_required_parameter", "prompt", "'prompt'"},
		{"completions token prompt", "POST", "/v1/completions", `{"model":"test-model","prompt":[1,2]}`, 400, "invalid_request_error", "invalid_type", "prompt", "a string or an array of strings"},
		{"completions logprobs 6", "POST", "/v1/completions", `{"model":"test-model","prompt":"a","logprobs":6}`, 400, "invalid_request_error", "invalid_value", "logprobs", "between 0 and 5"},
		{"completions logprobs bool", "POST", "/v1/completions", `{"model":"test-model","prompt":"a","logprobs":true}`, 400, "invalid_request_error", "invalid_type", "logprobs", "expected an integer, but got a bool"},
		{"completions echo", "POST", "/v1/completions", `{"model":"test-model","prompt":"a","echo":true}`, 400, "invalid_request_error", "unsupported_value", "echo", "echo is not supported"},
		{"completions n", "POST", "/v1/completions", `{"model":"test-model","prompt":"a","n":3}`, 400, "invalid_request_error", "unsupported_value", "n", "not supported"},
		{"completions unknown model", "POST", "/v1/completions", `{"model":"x","prompt":"a"}`, 404, "invalid_request_error", "model_not_found", "model", "The model `x` does not exist"},
		{"completions prompt too long", "POST", "/v1/completions", `{"model":"test-model","prompt":"` + strings.Repeat("w ", 65) + `"}`, 413, "invalid_request_error", "context_length_exceeded", "prompt", "maximum context length"},
		{"completions backend error", "POST", "/v1/completions", `{"model":"test-model","prompt":"FAIL"}`, 500, "server_error", "", "", "exploded"},
	}
	ts := newTestServer(t, newEcho(), Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, ts, tt.method, tt.path, tt.body)
			checkError(t, resp, body, tt.status, tt.typ, tt.code, tt.param, tt.msg)
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow header")
			}
		})
	}
}

// checkError checks an error reply's status and exact JSON shape.
func checkError(t *testing.T, resp *http.Response, body []byte, status int, typ, code, param, msg string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	// The exact shape: one "error" member with exactly these four keys.
	var shape map[string]map[string]any
	if err := json.Unmarshal(body, &shape); err != nil || len(shape) != 1 || len(shape["error"]) != 4 {
		t.Fatalf("error shape: %s (%v)", body, err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := shape["error"][k]; !ok {
			t.Fatalf("error lacks %q: %s", k, body)
		}
	}
	var e openai.ErrorResponse
	json.Unmarshal(body, &e)
	if e.Error.Type != typ || string(e.Error.Code) != code || string(e.Error.Param) != param {
		t.Errorf("type/code/param = %q/%q/%q, want %q/%q/%q", e.Error.Type, e.Error.Code, e.Error.Param, typ, code, param)
	}
	if !strings.Contains(e.Error.Message, msg) {
		t.Errorf("message %q does not contain %q", e.Error.Message, msg)
	}
}

func TestBodyLimit(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{MaxBodyBytes: 100})
	big := `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("x", 200) + `"}]}`
	resp, body := do(t, ts, "POST", "/v1/chat/completions", big)
	checkError(t, resp, body, 413, "invalid_request_error", "request_too_large", "", "limit of 100 bytes")

	// Without a Content-Length the limit is found while reading.
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte(big)); pw.Close() }()
	req, _ := http.NewRequest("POST", ts.URL+"/v1/completions", pr)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	checkError(t, resp, body, 413, "invalid_request_error", "request_too_large", "", "limit of 100 bytes")

	// A small body passes.
	resp, body = do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`}`)
	if resp.StatusCode != 200 {
		t.Fatalf("small body: %d %s", resp.StatusCode, body)
	}
}
