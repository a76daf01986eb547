package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distillery/distillery/openai"
)

func TestCompletions(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{})
	resp, body := do(t, ts, "POST", "/v1/completions",
		`{"model":"test-model","prompt":["a b c","héllo wörld"],"logprobs":2,"stop":" c","max_tokens":10}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var r openai.CompletionResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Object != "text_completion" || !strings.HasPrefix(r.ID, "cmpl-") || len(r.Choices) != 2 {
		t.Fatalf("reply %s", body)
	}
	c0, c1 := r.Choices[0], r.Choices[1]
	if c0.Text != "a b" || c0.FinishReason != "stop" || c1.Text != "héllo wörld" || c1.Index != 1 {
		t.Errorf("choices %+v %+v", c0, c1)
	}
	lp := c1.Logprobs
	if strings.Join(lp.Tokens, "|") != "héllo| wörld" || len(lp.TokenLogprobs) != 2 || lp.TokenLogprobs[1] != -0.25 {
		t.Errorf("logprobs %+v", lp)
	}
	if len(lp.TopLogprobs) != 2 || len(lp.TopLogprobs[0]) != 2 || lp.TopLogprobs[0]["alt1"] != -1.125 {
		t.Errorf("top logprobs %+v", lp.TopLogprobs)
	}
	if lp.TextOffset[0] != 0 || lp.TextOffset[1] != 5 { // characters, not bytes
		t.Errorf("text offsets %v", lp.TextOffset)
	}
	if r.Usage.PromptTokens != 5 || r.Usage.CompletionTokens != 5 || r.Usage.TotalTokens != 10 {
		t.Errorf("usage %+v", r.Usage)
	}
	// The legacy logprobs shape has exactly these four arrays.
	var raw struct {
		Choices []struct {
			Logprobs map[string]json.RawMessage `json:"logprobs"`
		} `json:"choices"`
	}
	json.Unmarshal(body, &raw)
	if len(raw.Choices[0].Logprobs) != 4 {
		t.Errorf("logprobs keys %v", raw.Choices[0].Logprobs)
	}
}

func TestCompletionsStream(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{})
	resp, body := do(t, ts, "POST", "/v1/completions",
		`{"model":"test-model","prompt":["x y","z"],"stream":true,"stream_options":{"include_usage":true},"logprobs":0}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	events := sseEvents(t, body)
	if events[len(events)-1] != "[DONE]" {
		t.Fatalf("no [DONE]: %q", events)
	}
	texts := map[int]string{}
	finishes := map[int]string{}
	var usage *openai.Usage
	for _, e := range events[:len(events)-1] {
		var c openai.CompletionResponse
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		if c.Object != "text_completion" {
			t.Fatalf("object %q", c.Object)
		}
		if c.Usage != nil {
			usage = c.Usage
			continue
		}
		ch := c.Choices[0]
		texts[ch.Index] += ch.Text
		if ch.FinishReason != "" {
			finishes[ch.Index] = string(ch.FinishReason)
		} else if ch.Logprobs == nil || len(ch.Logprobs.Tokens) != 1 || len(ch.Logprobs.TopLogprobs[0]) != 0 {
			t.Errorf("chunk logprobs %+v", ch.Logprobs)
		}
	}
	if texts[0] != "x y" || texts[1] != "z" || finishes[0] != "stop" || finishes[1] != "stop" {
		t.Errorf("texts %v finishes %v", texts, finishes)
	}
	if usage == nil || usage.PromptTokens != 3 || usage.CompletionTokens != 3 {
		t.Errorf("usage %+v", usage)
	}
}

func TestModelsAndHealth(t *testing.T) {
	ts := newTestServer(t, newEcho(), Options{})
	resp, body := do(t, ts, "GET", "/v1/models", "")
	var list openai.ModelList
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != "test-model" ||
		list.Data[0].Object != "model" || list.Data[0].OwnedBy != "distillery" || list.Data[0].Created == 0 {
		t.Errorf("list %+v", list)
	}
	resp, body = do(t, ts, "GET", "/v1/models/test-model", "")
	var m openai.Model
	if err := json.Unmarshal(body, &m); err != nil || resp.StatusCode != 200 || m != list.Data[0] {
		t.Errorf("model %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, ts, "GET", "/healthz", "")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok","model":"test-model"}` {
		t.Errorf("healthz %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, ts, "HEAD", "/healthz", "")
	if resp.StatusCode != 200 {
		t.Errorf("HEAD healthz %d", resp.StatusCode)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	b := newEcho()
	b.gate = make(chan struct{})
	ts := newTestServer(t, b, Options{MaxConcurrent: 2})
	const n = 5
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Go(func() {
			resp, _ := do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`}`)
			statuses <- resp.StatusCode
		})
	}
	// Two generations start and wait at the gate; the others wait for a slot.
	waitFor(t, func() bool { return b.active.Load() == 2 })
	time.Sleep(50 * time.Millisecond)
	if a := b.active.Load(); a != 2 {
		t.Fatalf("%d generations running, want 2", a)
	}
	for range n {
		b.gate <- struct{}{}
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("status %d", s)
		}
	}
	if m := b.maxActive.Load(); m != 2 {
		t.Errorf("at most %d generations ran at once, want 2", m)
	}
}

func TestWaitingRequestTimesOut(t *testing.T) {
	b := newEcho()
	b.gate = make(chan struct{})
	b.stubborn = true // the first request keeps its slot past its deadline
	ts := newTestServer(t, b, Options{MaxConcurrent: 1, RequestTimeout: 300 * time.Millisecond})
	first := make(chan int)
	go func() {
		resp, _ := do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`}`)
		first <- resp.StatusCode
	}()
	waitFor(t, func() bool { return b.active.Load() == 1 })
	resp, body := do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`}`)
	checkError(t, resp, body, 503, "server_error", "server_busy", "", "server is busy")
	b.gate <- struct{}{}
	// The first one finds its deadline passed once it may generate: 504.
	if s := <-first; s != 504 {
		t.Errorf("first request: %d, want 504", s)
	}
}

// TestClientCancel checks that a client that goes away mid-stream cancels
// the generation, and that the request log says so.
func TestClientCancel(t *testing.T) {
	b := newEcho()
	var logs syncBuffer
	ts := newTestServer(t, b, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"test-model","stream":true,"messages":[{"role":"user","content":"a b BLOCK c"}]}`))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Read the role chunk and both tokens, then hang up.
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		br.ReadString('\n')
	}
	select {
	case <-b.blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("generation never reached BLOCK")
	}
	cancel()
	select {
	case err := <-b.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("generation ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("generation not cancelled after the client left")
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), `"client_canceled":true`) })
	if !strings.Contains(logs.String(), `"completion_tokens":2`) {
		t.Errorf("log %s", logs.String())
	}
}

func TestRequestLog(t *testing.T) {
	var logs syncBuffer
	ts := newTestServer(t, newEcho(), Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	do(t, ts, "POST", "/v1/chat/completions", `{`+chatOK+`}`)
	do(t, ts, "GET", "/v1/models/nope", "")
	do(t, ts, "POST", "/v1/completions", `{"model":"test-model","prompt":"FAIL"}`)
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), logs.String())
	}
	ok := lines[0]
	if ok["msg"] != "request" || ok["method"] != "POST" || ok["path"] != "/v1/chat/completions" || ok["status"] != 200.0 ||
		ok["prompt_tokens"] != 3.0 || ok["completion_tokens"] != 2.0 || ok["model"] != "test-model" || ok["duration"] == nil {
		t.Errorf("line %v", ok)
	}
	if lines[1]["status"] != 404.0 {
		t.Errorf("line %v", lines[1])
	}
	if lines[2]["status"] != 500.0 || lines[2]["level"] != "ERROR" || !strings.Contains(lines[2]["error"].(string), "exploded") {
		t.Errorf("line %v", lines[2])
	}
}

// quietDefaultLog silences slog.Default (Serve logs through it) for a test.
func quietDefaultLog(t *testing.T) {
	old := slog.Default()
	slog.SetDefault(discardLogger())
	t.Cleanup(func() { slog.SetDefault(old) })
}

func TestServeListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := newEcho()
	b.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, NewServer(b, Options{Logger: discardLogger()}).Handler()) }()
	base := URL(ln.Addr())

	// A request in flight when shutdown starts still completes.
	inflight := make(chan string, 1)
	go func() {
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(`{`+chatOK+`}`))
		if err != nil {
			inflight <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- string(body)
	}()
	waitFor(t, func() bool { return b.active.Load() == 1 })
	cancel()
	time.Sleep(50 * time.Millisecond)
	b.gate <- struct{}{}
	if got := <-inflight; !strings.Contains(got, `"content":"hello there"`) {
		t.Errorf("in-flight request: %s", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not return after cancel")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answering after shutdown")
	}
}

func TestServeForcedShutdown(t *testing.T) {
	quietDefaultLog(t)
	old := shutdownGrace
	shutdownGrace = 100 * time.Millisecond
	t.Cleanup(func() { shutdownGrace = old })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	b := newEcho()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, NewServer(b, Options{Logger: discardLogger()}).Handler()) }()
	go http.Post(URL(ln.Addr())+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"test-model","messages":[{"role":"user","content":"BLOCK"}]}`))
	<-b.blocked
	cancel()
	select {
	case err := <-b.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("generation ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("generation not cancelled after the grace period")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServe(t *testing.T) {
	quietDefaultLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", http.NotFoundHandler()) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := Serve(context.Background(), "256.0.0.1:bad", nil); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("bad address: %v", err)
	}
	if got := URL(&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}); got != "http://localhost:80" {
		t.Errorf("URL = %q", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
