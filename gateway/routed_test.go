package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/distillery/distillery/gateway/gatewaytest"
	"github.com/distillery/distillery/openai"
	"github.com/distillery/distillery/routes"
)

// labelBackend is a scripted classification student: it answers "great"
// with probability 0.97, or 0.40 when the prompt holds LOW; NOLABEL makes
// it answer "banana", LONG makes it ramble for max_tokens tokens.
type labelBackend struct{ calls atomic.Int32 }

func (b *labelBackend) ID() string      { return "tiny-student" }
func (b *labelBackend) MaxContext() int { return 512 }

func (b *labelBackend) Chat(ctx context.Context, msgs []openai.ChatMessage, p Params, emit func(Token) error) (Result, error) {
	return b.Complete(ctx, msgs[len(msgs)-1].Content.String(), p, emit)
}

func (b *labelBackend) Complete(ctx context.Context, prompt string, p Params, emit func(Token) error) (Result, error) {
	b.calls.Add(1)
	conf, label := 0.97, "great"
	if strings.Contains(prompt, "LOW") {
		conf = 0.40
	}
	if strings.Contains(prompt, "NOLABEL") {
		label = "banana"
	}
	n := 1
	if strings.Contains(prompt, "LONG") {
		n = p.MaxTokens
	}
	res := Result{PromptTokens: len(strings.Fields(prompt)), FinishReason: "stop"}
	for i := range n {
		t := Token{Text: label, Logprob: math.Log(conf)}
		if i > 0 {
			t = Token{Text: " more", Logprob: -0.1}
		}
		if p.Logprobs {
			t.Top = []TopToken{{Text: t.Text, Logprob: t.Logprob}, {Text: "meh", Logprob: math.Log(1 - conf - 0.01)}, {Text: "zzz", Logprob: math.Log(0.01)}}
			if i > 0 {
				t.Top = t.Top[:1]
			}
		}
		if err := emit(t); err != nil {
			return res, err
		}
		res.CompletionTokens++
	}
	if n > 1 {
		res.FinishReason = "length"
	}
	return res, nil
}

// testRoutes is the example routes.json with the scripted student's labels.
func testRoutes() *routes.Routes {
	r := routes.Example()
	r.Model = "tiny-student"
	r.Version = "v1"
	r.ConfidenceThreshold = 0.8
	return r
}

type routedEnv struct {
	g              *Gateway
	ts             *httptest.Server
	mid, premium   *gatewaytest.Upstream
	student        *labelBackend
	midURL, preURL string
}

// newRouted starts a gateway with a scripted student (model "sentiment",
// routes.json as testRoutes), a mid and a premium stub; yaml is appended
// to the config.
func newRouted(t *testing.T, yaml string) *routedEnv {
	t.Helper()
	e := &routedEnv{mid: &gatewaytest.Upstream{Prefix: "mid: "}, premium: &gatewaytest.Upstream{Prefix: "premium: ", Key: "sk-upstream"}, student: &labelBackend{}}
	midTS := httptest.NewServer(e.mid)
	preTS := httptest.NewServer(e.premium)
	t.Cleanup(midTS.Close)
	t.Cleanup(preTS.Close)
	t.Setenv("TEST_PREMIUM_KEY", "sk-upstream")
	cfgText := fmt.Sprintf(`
models:
  - name: sentiment
  - name: chat
tiers:
  mid: {base_url: %s/v1, model: mid-model, price: {input_per_mtok: 0.5, output_per_mtok: 1.5}}
  premium: {base_url: %s/v1, model: premium-model, api_key_env: TEST_PREMIUM_KEY, price: {input_per_mtok: 5, output_per_mtok: 15}}
%s`, midTS.URL, preTS.URL, yaml)
	cfg, err := ParseConfig("test.yaml", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGateway(context.Background(), cfg, GatewayOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	injectStudent(g, "sentiment", e.student, testRoutes())
	e.g = g
	e.ts = httptest.NewServer(g.Handler())
	t.Cleanup(e.ts.Close)
	return e
}

// injectStudent gives a model a scripted student version.
func injectStudent(g *Gateway, model string, b Backend, r *routes.Routes) {
	st := &student{name: model, cfg: StudentConfig{MaxConcurrent: 4}, slots: make(chan struct{}, 4), log: g.log}
	sv := &studentVersion{id: b.ID(), version: "v1", local: b, usdPerTok: 0.1 / 1e6}
	if r != nil {
		sv.routes, sv.threshold, sv.band = r, r.ConfidenceThreshold, r.ComplexityBand
	} else {
		sv.band = []int{1, 2}
	}
	st.cur.Store(sv)
	g.models[model].student = st
}

func (e *routedEnv) post(t *testing.T, path, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func chatBody(model, text string, extra string) string {
	b, _ := json.Marshal(text)
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%s}]%s}`, model, b, extra)
}

func content(t *testing.T, body []byte) string {
	t.Helper()
	var r openai.ChatCompletionResponse
	if err := json.Unmarshal(body, &r); err != nil || len(r.Choices) == 0 {
		t.Fatalf("not a chat completion: %s", body)
	}
	return r.Choices[0].Message.Content.String()
}

const hardText = "Design a globally distributed, strongly consistent key-value store with multi-region writes; specify the consensus protocol, failure handling, latency budget, and prove the linearizability argument informally."

func TestRoutingByComplexity(t *testing.T) {
	e := newRouted(t, "")
	// An easy review: the student's band, confident: the student answers.
	resp, body := e.post(t, "/v1/chat/completions", chatBody("sentiment", "Loved this tea, will buy again", ""))
	if resp.StatusCode != 200 || resp.Header.Get(HeaderTier) != TierStudent || content(t, body) != "great" {
		t.Fatalf("easy: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if h := resp.Header; h.Get(HeaderModel) != "tiny-student@v1" || !strings.Contains(h.Get(HeaderReason), "student band") ||
		h.Get(HeaderConfidence) == "" || h.Get(HeaderComplexity) == "" {
		t.Errorf("headers: %v", h)
	}
	// The student saw the training prompt, rendered.
	// A hard request on the generic model goes to premium, with the key.
	resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", hardText, ""))
	if resp.StatusCode != 200 || resp.Header.Get(HeaderTier) != TierPremium || !strings.HasPrefix(content(t, body), "premium: ") {
		t.Fatalf("hard: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// A middling one goes to mid.
	resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", "Explain the difference between TCP and UDP with examples of when to use each.", ""))
	if resp.StatusCode != 200 || resp.Header.Get(HeaderTier) != TierMid {
		t.Fatalf("mid: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// Tools skip the student and pass through to the upstream.
	resp, body = e.post(t, "/v1/chat/completions", chatBody("sentiment", "Loved this tea", `,"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}}],"response_format":{"type":"text"}`))
	if resp.StatusCode != 200 || resp.Header.Get(HeaderTier) == TierStudent || !strings.Contains(string(body), `"tool_calls"`) {
		t.Fatalf("tools: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if !strings.Contains(string(e.mid.LastRequest()), `"tools"`) || !strings.Contains(string(e.mid.LastRequest()), `"response_format"`) {
		t.Errorf("tools/response_format not passed through: %s", e.mid.LastRequest())
	}
	// Unknown model: 404 in OpenAI's shape.
	resp, body = e.post(t, "/v1/chat/completions", chatBody("nope", "hi", ""))
	if resp.StatusCode != 404 || !strings.Contains(string(body), "model_not_found") {
		t.Errorf("unknown model: %d %s", resp.StatusCode, body)
	}
}

func TestCascade(t *testing.T) {
	e := newRouted(t, "")
	// Low confidence: escalated to the next tier (mid), which gets the
	// rendered training prompt.
	resp, body := e.post(t, "/v1/chat/completions", chatBody("sentiment", "LOW so-so tea", ""))
	h := resp.Header
	if resp.StatusCode != 200 || h.Get(HeaderTier) != TierMid || h.Get(HeaderEscalated) != "student→mid" ||
		!strings.Contains(h.Get(HeaderReason), "confidence 0.400 < threshold 0.800") || h.Get(HeaderConfidence) != "0.4000" {
		t.Fatalf("low confidence: %d %v %s", resp.StatusCode, h, body)
	}
	if !strings.Contains(string(e.mid.LastRequest()), `Review: LOW so-so tea\nAnswer:`) {
		t.Errorf("mid did not get the rendered prompt: %s", e.mid.LastRequest())
	}
	// An answer that names no label escalates too.
	resp, _ = e.post(t, "/v1/chat/completions", chatBody("sentiment", "NOLABEL odd tea", ""))
	if resp.Header.Get(HeaderTier) != TierMid || !strings.Contains(resp.Header.Get(HeaderReason), "names no label") {
		t.Errorf("no label: %v", resp.Header)
	}
	// The client's logprobs are honoured; the student's internal top-20 are not leaked.
	resp, body = e.post(t, "/v1/chat/completions", chatBody("sentiment", "Great tea", ""))
	if resp.Header.Get(HeaderTier) != TierStudent || strings.Contains(string(body), `"top_logprobs"`) {
		t.Errorf("confident: %v %s", resp.Header, body)
	}
	resp, body = e.post(t, "/v1/chat/completions", chatBody("sentiment", "Great tea", `,"logprobs":true,"top_logprobs":2`))
	var r openai.ChatCompletionResponse
	json.Unmarshal(body, &r)
	if r.Choices[0].Logprobs == nil || len(r.Choices[0].Logprobs.Content[0].TopLogprobs) != 2 {
		t.Errorf("logprobs: %s", body)
	}
}

func TestCascadeDisabled(t *testing.T) {
	e := newRouted(t, "cascade: {enabled: false}\n")
	resp, _ := e.post(t, "/v1/chat/completions", chatBody("sentiment", "LOW so-so tea", ""))
	if resp.Header.Get(HeaderTier) != TierStudent {
		t.Errorf("cascade off: %v", resp.Header)
	}
}

// readSSE returns the data payloads of an SSE body.
func readSSE(t *testing.T, body []byte) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func streamText(t *testing.T, body []byte) string {
	var b strings.Builder
	for _, d := range readSSE(t, body) {
		if d == "[DONE]" {
			continue
		}
		var ch openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(d), &ch); err != nil {
			t.Fatalf("bad chunk %s", d)
		}
		for _, c := range ch.Choices {
			if c.Delta.Content != nil {
				b.WriteString(*c.Delta.Content)
			}
		}
	}
	return b.String()
}

func TestCascadeStreamBuffer(t *testing.T) {
	e := newRouted(t, "cascade: {stream: buffer, buffer_max_tokens: 8}\n")
	stream := `,"stream":true,"stream_options":{"include_usage":true}`
	// Confident: the buffered student answer is streamed.
	resp, body := e.post(t, "/v1/chat/completions", chatBody("sentiment", "Great tea", stream))
	ev := readSSE(t, body)
	if resp.Header.Get(HeaderTier) != TierStudent || streamText(t, body) != "great" || ev[len(ev)-1] != "[DONE]" ||
		!strings.Contains(ev[len(ev)-2], `"usage"`) || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("buffer confident: %v %s", resp.Header, body)
	}
	// Unsure: decided before the first byte; the mid tier's stream is passed on.
	resp, body = e.post(t, "/v1/chat/completions", chatBody("sentiment", "LOW meh", stream))
	if resp.Header.Get(HeaderTier) != TierMid || !strings.HasPrefix(streamText(t, body), "mid: ") || resp.Header.Get(HeaderEscalated) == "" {
		t.Fatalf("buffer escalated: %v %s", resp.Header, body)
	}
	// Too long for the buffer: escalated.
	e.g.models["sentiment"].student.current().routes.Parser.MaxTokens = 50
	resp, _ = e.post(t, "/v1/chat/completions", chatBody("sentiment", "LONG tea", stream))
	if resp.Header.Get(HeaderTier) != TierMid || !strings.Contains(resp.Header.Get(HeaderReason), "buffer_max_tokens 8") {
		t.Errorf("long: %v", resp.Header)
	}
	// Without include_usage there is no usage chunk from upstream either.
	resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", hardText, `,"stream":true`))
	if strings.Contains(string(body), `"usage"`) || resp.Header.Get(HeaderTier) != TierPremium {
		t.Errorf("usage leaked or tier: %v %s", resp.Header, body)
	}
}

func TestCascadeStreamSkip(t *testing.T) {
	e := newRouted(t, "cascade: {stream: skip}\n")
	resp, body := e.post(t, "/v1/chat/completions", chatBody("sentiment", "LOW meh", `,"stream":true`))
	if resp.Header.Get(HeaderTier) != TierStudent || streamText(t, body) != "great" ||
		!strings.Contains(resp.Header.Get(HeaderReason), "cascade skipped") {
		t.Fatalf("skip: %v %s", resp.Header, body)
	}
	// Non-streamed requests still cascade.
	resp, _ = e.post(t, "/v1/chat/completions", chatBody("sentiment", "LOW meh", ""))
	if resp.Header.Get(HeaderTier) != TierMid {
		t.Errorf("non-stream: %v", resp.Header)
	}
}

func newHTTPTest(t testing.TB, h http.Handler) *httptest.Server {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}
