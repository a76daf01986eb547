package distill

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testKey = "sk-test-SECRET-0123456789"

// captured is one request an httptest server saw.
type captured struct {
	path, query string
	header      http.Header
	body        map[string]any
}

// openAIServer answers with h after recording the request in *got.
func openAIServer(t *testing.T, got *captured, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got != nil {
			b, _ := io.ReadAll(r.Body)
			*got = captured{path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone()}
			if err := json.Unmarshal(b, &got.body); err != nil {
				t.Errorf("request body is not JSON: %v", err)
			}
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newTestOpenAI(t *testing.T, base string, mod func(*OpenAIOptions)) *OpenAIClient {
	t.Helper()
	o := OpenAIOptions{BaseURL: base + "/v1", Model: "gpt-test", APIKey: testKey, APIKeyEnv: "OPENAI_API_KEY"}
	if mod != nil {
		mod(&o)
	}
	c, err := NewOpenAI(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const okAnswer = `{"id":"x","object":"chat.completion","model":"gpt-test-2024","choices":[{"index":0,
 "message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop",
 "logprobs":{"content":[
  {"token":"Hi","logprob":-0.25,"bytes":[72,105],"top_logprobs":[
    {"token":"Hi","logprob":-0.25,"bytes":[72,105]},{"token":"Hello","logprob":-1.5,"bytes":[72,101,108,108,111]}]},
  {"token":"!","logprob":-0.01,"bytes":[33],"top_logprobs":[{"token":"!","logprob":-0.01,"bytes":null}]}]}}],
 "usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}`

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestOpenAIClientRequestBody(t *testing.T) {
	msgs := []Message{
		{"system", "Classify."}, {"user", "a"}, {"assistant", "pos"}, {"user", "b"},
	}
	for _, tc := range []struct {
		name string
		top  int
		want map[string]any // members that must be present; nil value: absent
	}{
		{"no logprobs", 0, map[string]any{"logprobs": nil, "top_logprobs": nil}},
		{"top 5", 5, map[string]any{"logprobs": true, "top_logprobs": 5.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got captured
			srv := openAIServer(t, &got, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, okAnswer) })
			c := newTestOpenAI(t, srv.URL, func(o *OpenAIOptions) { o.Headers = map[string]string{"X-Extra": "1"} })
			if _, err := c.Complete(context.Background(), Request{Messages: msgs, MaxTokens: 7, Temperature: 0, TopLogprobs: tc.top}); err != nil {
				t.Fatal(err)
			}
			if got.path != "/v1/chat/completions" {
				t.Errorf("path %q", got.path)
			}
			if a := got.header.Get("Authorization"); a != "Bearer "+testKey {
				t.Errorf("Authorization %q", a)
			}
			if got.header.Get("X-Extra") != "1" || got.header.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", got.header)
			}
			want := map[string]any{"model": "gpt-test", "max_tokens": 7.0, "temperature": 0.0, "n": 1.0, "stream": nil}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				gv, ok := got.body[k]
				if v == nil && ok {
					t.Errorf("%s present (%v), want absent", k, gv)
				} else if v != nil && gv != v {
					t.Errorf("%s = %v, want %v", k, gv, v)
				}
			}
			var roles, contents []string
			for _, m := range got.body["messages"].([]any) {
				mm := m.(map[string]any)
				roles = append(roles, mm["role"].(string))
				contents = append(contents, mm["content"].(string))
			}
			if !reflect.DeepEqual(roles, []string{"system", "user", "assistant", "user"}) ||
				!reflect.DeepEqual(contents, []string{"Classify.", "a", "pos", "b"}) {
				t.Errorf("messages %v %v", roles, contents)
			}
		})
	}
}

func TestOpenAIClientParse(t *testing.T) {
	srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("x-ratelimit-limit-requests", "5000")
		h.Set("x-ratelimit-remaining-requests", "4999")
		h.Set("x-ratelimit-limit-tokens", "160000")
		h.Set("x-ratelimit-remaining-tokens", "159000")
		h.Set("x-ratelimit-reset-requests", "12ms")
		h.Set("x-ratelimit-reset-tokens", "6m0s")
		writeJSON(w, 200, okAnswer)
	})
	c := newTestOpenAI(t, srv.URL, nil)
	resp, err := c.Complete(context.Background(), Request{Messages: []Message{{"user", "hi"}}, MaxTokens: 2, TopLogprobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []TokenLogprob{
		{Token: "Hi", Bytes: []byte("Hi"), Logprob: -0.25, Top: []TopLogprob{
			{Token: "Hi", Bytes: []byte("Hi"), Logprob: -0.25}, {Token: "Hello", Bytes: []byte("Hello"), Logprob: -1.5}}},
		{Token: "!", Bytes: []byte("!"), Logprob: -0.01, Top: []TopLogprob{{Token: "!", Logprob: -0.01}}},
	}
	if !reflect.DeepEqual(resp.Tokens, want) {
		t.Errorf("tokens\n got %+v\nwant %+v", resp.Tokens, want)
	}
	if resp.Text != "Hi!" || resp.Model != "gpt-test-2024" || resp.FinishReason != "stop" ||
		resp.InputTokens != 12 || resp.OutputTokens != 2 || resp.Latency <= 0 {
		t.Errorf("response %+v", resp)
	}
	wantRate := RateInfo{5000, 4999, 160000, 159000, 12 * time.Millisecond, 6 * time.Minute}
	if resp.Rate != wantRate {
		t.Errorf("rate %+v, want %+v", resp.Rate, wantRate)
	}
	if !c.Logprobs() || c.Model() != "gpt-test" {
		t.Error("Logprobs/Model")
	}
}

func TestOpenAIClientNoLogprobs(t *testing.T) {
	srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"model":"m","choices":[{"message":{"role":"assistant","content":"x"},"finish_reason":"length","logprobs":null}]}`)
	})
	resp, err := newTestOpenAI(t, srv.URL, nil).Complete(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Tokens != nil || resp.Text != "x" || resp.FinishReason != "length" {
		t.Errorf("%+v", resp)
	}
}

func TestOpenAIClientErrors(t *testing.T) {
	date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	errBody := func(msg, typ, code string) string {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": code}})
		return string(b)
	}
	for _, tc := range []struct {
		name        string
		status      int
		header      map[string]string
		body        string
		kind        ErrorKind
		retryMin    time.Duration
		retryMax    time.Duration
		msgContains []string
	}{
		{name: "429 seconds", status: 429, header: map[string]string{"retry-after": "2"},
			body: errBody("Rate limit reached", "requests", "rate_limit_exceeded"), kind: KindRateLimit,
			retryMin: 2 * time.Second, retryMax: 2 * time.Second, msgContains: []string{"Rate limit reached", "rate_limit_exceeded"}},
		{name: "429 ms", status: 429, header: map[string]string{"retry-after-ms": "150", "retry-after": "1"},
			body: errBody("slow down", "", ""), kind: KindRateLimit, retryMin: 150 * time.Millisecond, retryMax: 150 * time.Millisecond},
		{name: "429 date", status: 429, header: map[string]string{"retry-after": date},
			body: errBody("slow down", "", ""), kind: KindRateLimit, retryMin: time.Second, retryMax: 4 * time.Second},
		{name: "429 quota", status: 429, body: errBody("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
			kind: KindAuth, msgContains: []string{"OPENAI_API_KEY", "no quota"}},
		{name: "500", status: 500, body: errBody("The server had an error", "server_error", ""), kind: KindServer},
		{name: "502 html", status: 502, body: "<html>Bad Gateway</html>", kind: KindServer, msgContains: []string{"Bad Gateway"}},
		{name: "503 retry-after", status: 503, header: map[string]string{"retry-after": "7"}, body: "", kind: KindServer,
			retryMin: 7 * time.Second, retryMax: 7 * time.Second, msgContains: []string{"Service Unavailable"}},
		{name: "400", status: 400, body: errBody("max_tokens is too large", "invalid_request_error", ""), kind: KindBadRequest,
			msgContains: []string{"max_tokens is too large"}},
		{name: "413", status: 413, body: errBody("too large", "", ""), kind: KindBadRequest},
		{name: "422", status: 422, body: errBody("unprocessable", "", ""), kind: KindBadRequest},
		{name: "401", status: 401, body: errBody("Incorrect API key provided: "+testKey+".", "invalid_request_error", "invalid_api_key"),
			kind: KindAuth, msgContains: []string{"the API rejected the key in OPENAI_API_KEY (401): Incorrect API key provided"}},
		{name: "403", status: 403, body: errBody("Project does not have access", "", ""), kind: KindAuth,
			msgContains: []string{"OPENAI_API_KEY (403): Project does not have access"}},
		{name: "404", status: 404, body: errBody("The model `gpt-test` does not exist", "invalid_request_error", "model_not_found"),
			kind: KindNotFound, msgContains: []string{"does not exist"}},
		{name: "418", status: 418, body: "teapot", kind: KindOther},
		{name: "200 not JSON", status: 200, body: `{"choices": [`, kind: KindMalformed},
		{name: "200 no choices", status: 200, body: `{"id":"x","choices":[]}`, kind: KindMalformed, msgContains: []string{"no choices"}},
		{name: "200 error object", status: 200, body: `{"error":{"message":"oops"}}`, kind: KindMalformed},
		{name: "200 bad bytes", status: 200, body: `{"choices":[{"message":{"content":"x"},"logprobs":{"content":[{"token":"x","logprob":0,"bytes":[300]}]}}]}`,
			kind: KindMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("x-ratelimit-limit-requests", "60")
				w.Header().Set("x-ratelimit-reset-requests", "1s")
				writeJSON(w, tc.status, tc.body)
			})
			_, err := newTestOpenAI(t, srv.URL, nil).Complete(context.Background(), Request{MaxTokens: 1})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if e.Kind != tc.kind || e.Status != tc.status {
				t.Errorf("kind %s status %d, want %s %d (%v)", e.Kind, e.Status, tc.kind, tc.status, err)
			}
			if e.RetryAfter < tc.retryMin || e.RetryAfter > tc.retryMax {
				t.Errorf("retry-after %v, want [%v, %v]", e.RetryAfter, tc.retryMin, tc.retryMax)
			}
			if e.Rate.LimitRequests != 60 || e.Rate.ResetRequests != time.Second {
				t.Errorf("rate %+v", e.Rate)
			}
			for _, s := range tc.msgContains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q lacks %q", err, s)
				}
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("the key leaks: %q", err)
			}
		})
	}
}

func TestOpenAIClientConnection(t *testing.T) {
	hijack := func(write string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			buf.WriteString(write)
			buf.Flush()
			conn.Close()
		}
	}
	closed := func() string { // an address nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}
	for _, tc := range []struct {
		name string
		base func() string
	}{
		{"cut mid-body", func() string {
			return openAIServer(t, nil, hijack("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"choices\":[")).URL
		}},
		{"cut mid-chunk", func() string {
			return openAIServer(t, nil, hijack("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"choi")).URL
		}},
		{"closed before answering", func() string { return openAIServer(t, nil, hijack("")).URL }},
		{"refused", closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTestOpenAI(t, tc.base(), nil).Complete(context.Background(), Request{})
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindConnection {
				t.Fatalf("error %v, want a connection *Error", err)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("the key leaks: %q", err)
			}
		})
	}
}

// slowServer answers only when the request's context ends.
func slowServer(t *testing.T) *httptest.Server {
	stop := make(chan struct{})
	srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	t.Cleanup(func() { close(stop) }) // runs before srv.Close
	return srv
}

func TestOpenAIClientTimeoutAndCancel(t *testing.T) {
	srv := slowServer(t)
	t.Run("timeout", func(t *testing.T) {
		c := newTestOpenAI(t, srv.URL, func(o *OpenAIOptions) { o.Timeout = 50 * time.Millisecond })
		_, err := c.Complete(context.Background(), Request{})
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindTimeout {
			t.Fatalf("error %v, want a timeout *Error", err)
		}
	})
	t.Run("http.Client timeout", func(t *testing.T) {
		c := newTestOpenAI(t, srv.URL, func(o *OpenAIOptions) { o.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond} })
		_, err := c.Complete(context.Background(), Request{})
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindTimeout {
			t.Fatalf("error %v, want a timeout *Error", err)
		}
	})
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"caller cancels", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"caller deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			c := newTestOpenAI(t, srv.URL, func(o *OpenAIOptions) { o.Timeout = time.Minute })
			_, err := c.Complete(ctx, Request{})
			var e *Error
			if err != tc.want || errors.As(err, &e) {
				t.Fatalf("error %#v, want exactly %v", err, tc.want)
			}
		})
	}
}

func TestOpenAIClientAzure(t *testing.T) {
	var got captured
	srv := openAIServer(t, &got, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, okAnswer) })
	c, err := NewOpenAI(OpenAIOptions{BaseURL: srv.URL + "/", Model: "my-gpt4o", APIKey: testKey, AzureAPIVersion: "2024-10-21"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Complete(context.Background(), Request{}); err != nil {
		t.Fatal(err)
	}
	if got.path != "/openai/deployments/my-gpt4o/chat/completions" || got.query != "api-version=2024-10-21" {
		t.Errorf("URL %s?%s", got.path, got.query)
	}
	if got.header.Get("api-key") != testKey || got.header.Get("Authorization") != "" {
		t.Errorf("headers %v", got.header)
	}
}

func TestOpenAIClientOptions(t *testing.T) {
	for _, o := range []OpenAIOptions{
		{},
		{Model: "m", BaseURL: "ftp://x"},
		{Model: "m", BaseURL: "::"},
		{Model: "m", AzureAPIVersion: "2024-10-21"},
	} {
		if _, err := NewOpenAI(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	c, err := NewOpenAI(OpenAIOptions{Model: "m"})
	if err != nil || c.url != DefaultOpenAIBaseURL+"/chat/completions" {
		t.Errorf("default URL: %v %v", c, err)
	}
}

func TestOpenAIClientKeyInHeaderRedacted(t *testing.T) {
	// A provider echoing a custom secret header must not leak it either.
	secret := "azure-SECRET-abcdef"
	srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, `{"error":{"message":"bad header `+r.Header.Get("api-key")+`"}}`)
	})
	c := newTestOpenAI(t, srv.URL, func(o *OpenAIOptions) { o.APIKey = ""; o.Headers = map[string]string{"api-key": secret} })
	_, err := c.Complete(context.Background(), Request{})
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error %v", err)
	}
}
