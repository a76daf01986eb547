package distill

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func newTestAnthropic(t *testing.T, base string, mod func(*AnthropicOptions)) *AnthropicClient {
	t.Helper()
	o := AnthropicOptions{BaseURL: base + "/v1", Model: "claude-test", APIKey: testKey, APIKeyEnv: "ANTHROPIC_API_KEY"}
	if mod != nil {
		mod(&o)
	}
	c, err := NewAnthropic(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const anthropicOK = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test-2025",
 "content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Hello"},{"type":"text","text":" world"}],
 "stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":3,"cache_read_input_tokens":5}}`

func TestAnthropicClientRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req       Request
		system    any // nil: absent
		maxTokens float64
		roles     []string
	}{
		{"system joined", Request{Messages: []Message{{"system", "Be terse."}, {"user", "a"}, {"assistant", "b"},
			{"system", "Answer in French."}, {"user", "c"}}, MaxTokens: 5, Temperature: 0.5},
			"Be terse.\n\nAnswer in French.", 5, []string{"user", "assistant", "user"}},
		{"no system, default max_tokens", Request{Messages: []Message{{"user", "a"}}},
			nil, DefaultAnthropicMaxTokens, []string{"user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got captured
			srv := openAIServer(t, &got, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, anthropicOK) })
			if _, err := newTestAnthropic(t, srv.URL, nil).Complete(context.Background(), tc.req); err != nil {
				t.Fatal(err)
			}
			if got.path != "/v1/messages" {
				t.Errorf("path %q", got.path)
			}
			if got.header.Get("x-api-key") != testKey || got.header.Get("anthropic-version") != "2023-06-01" ||
				got.header.Get("Authorization") != "" {
				t.Errorf("headers %v", got.header)
			}
			if got.body["system"] != tc.system || got.body["max_tokens"] != tc.maxTokens ||
				got.body["model"] != "claude-test" || got.body["temperature"] != tc.req.Temperature {
				t.Errorf("body %v", got.body)
			}
			var roles []string
			for _, m := range got.body["messages"].([]any) {
				roles = append(roles, m.(map[string]any)["role"].(string))
			}
			if !reflect.DeepEqual(roles, tc.roles) {
				t.Errorf("roles %v, want %v", roles, tc.roles)
			}
		})
	}
}

func TestAnthropicClientParse(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("anthropic-ratelimit-requests-limit", "50")
		h.Set("anthropic-ratelimit-requests-remaining", "49")
		h.Set("anthropic-ratelimit-requests-reset", now.Add(1200*time.Millisecond).Format(time.RFC3339Nano))
		h.Set("anthropic-ratelimit-tokens-limit", "80000")
		h.Set("anthropic-ratelimit-tokens-remaining", "79000")
		h.Set("anthropic-ratelimit-tokens-reset", now.Add(30*time.Second).Format(time.RFC3339))
		h.Set("anthropic-ratelimit-input-tokens-limit", "40000")
		h.Set("anthropic-ratelimit-input-tokens-remaining", "1")
		writeJSON(w, 200, anthropicOK)
	})
	c := newTestAnthropic(t, srv.URL, nil)
	c.now = func() time.Time { return now }
	resp, err := c.Complete(context.Background(), Request{Messages: []Message{{"user", "hi"}}, TopLogprobs: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := Response{Text: "Hello world", Model: "claude-test-2025", FinishReason: "stop", InputTokens: 15, OutputTokens: 3,
		Latency: resp.Latency, Rate: RateInfo{50, 49, 80000, 79000, 1200 * time.Millisecond, 30 * time.Second}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("\n got %+v\nwant %+v", resp, want)
	}
	if c.Logprobs() || resp.Tokens != nil {
		t.Error("Anthropic has no log-probabilities")
	}
}

func TestAnthropicClientRateInputTokensFallback(t *testing.T) {
	now := time.Now()
	h := http.Header{}
	h.Set("anthropic-ratelimit-input-tokens-limit", "40000")
	h.Set("anthropic-ratelimit-input-tokens-remaining", "100")
	h.Set("anthropic-ratelimit-input-tokens-reset", now.Add(2*time.Second).Format(time.RFC3339Nano))
	c := &AnthropicClient{now: func() time.Time { return now }}
	if r := c.rate(h); r.LimitTokens != 40000 || r.RemainingTokens != 100 || r.ResetTokens != 2*time.Second {
		t.Errorf("%+v", r)
	}
}

func TestAnthropicClientStopReason(t *testing.T) {
	for in, want := range map[string]string{"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
		"tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "pause_turn", "": ""} {
		if got := anthropicFinish(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

func TestAnthropicClientErrors(t *testing.T) {
	body := func(typ, msg string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"}}`
	}
	for _, tc := range []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		kind    ErrorKind
		retry   time.Duration
		message string
	}{
		{"529 overloaded", 529, map[string]string{"retry-after": "3"}, body("overloaded_error", "Overloaded"), KindServer, 3 * time.Second, "Overloaded (overloaded_error)"},
		{"429", 429, map[string]string{"retry-after": "12"}, body("rate_limit_error", "Number of request tokens has exceeded"), KindRateLimit, 12 * time.Second, "exceeded"},
		{"500", 500, nil, body("api_error", "Internal server error"), KindServer, 0, "Internal"},
		{"400", 400, nil, body("invalid_request_error", "max_tokens: field required"), KindBadRequest, 0, "field required"},
		{"413", 413, nil, body("request_too_large", "Request exceeds the maximum allowed number of bytes."), KindBadRequest, 0, "maximum"},
		{"401", 401, nil, body("authentication_error", "invalid x-api-key"), KindAuth, 0, "the API rejected the key in ANTHROPIC_API_KEY (401): invalid x-api-key"},
		{"403", 403, nil, body("permission_error", "no access"), KindAuth, 0, "ANTHROPIC_API_KEY (403)"},
		{"404", 404, nil, body("not_found_error", "model: claude-x"), KindNotFound, 0, "claude-x"},
		{"200 not JSON", 200, nil, "nope", KindMalformed, 0, "not JSON"},
		{"200 no content", 200, nil, `{"type":"message","model":"m"}`, KindMalformed, 0, "no content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				writeJSON(w, tc.status, tc.body)
			})
			_, err := newTestAnthropic(t, srv.URL, nil).Complete(context.Background(), Request{})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want *Error", err)
			}
			if e.Kind != tc.kind || e.Status != tc.status || e.RetryAfter != tc.retry {
				t.Errorf("got %s %d %v, want %s %d %v", e.Kind, e.Status, e.RetryAfter, tc.kind, tc.status, tc.retry)
			}
			if !strings.Contains(err.Error(), tc.message) || strings.Contains(err.Error(), testKey) {
				t.Errorf("message %q, want %q and no key", err, tc.message)
			}
		})
	}
}

func TestAnthropicClientCancel(t *testing.T) {
	srv := slowServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := newTestAnthropic(t, srv.URL, nil).Complete(ctx, Request{}); err != context.DeadlineExceeded {
		t.Fatalf("error %v, want the caller's deadline", err)
	}
	c := newTestAnthropic(t, srv.URL, func(o *AnthropicOptions) { o.Timeout = 50 * time.Millisecond })
	_, err := c.Complete(context.Background(), Request{})
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTimeout {
		t.Fatalf("error %v, want a timeout", err)
	}
}
