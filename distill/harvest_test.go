package distill

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distillery/distillery/datasets"
)

// teacherServer is a real OpenAI-compatible server on loopback that answers
// deterministically from the prompt: the label whose first letter matches
// the prompt's last word, with top-2 log-probabilities. It counts the
// requests it answered (and so "billed") per prompt.
type teacherServer struct {
	URL     string
	mu      sync.Mutex
	billed  map[string]int
	inTok   int
	outTok  int
	status  int // when set, every request fails with this status
	delay   time.Duration
	answers atomic.Int64
}

func startTeacher(t testing.TB) *teacherServer {
	ts := &teacherServer{billed: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(ts.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ts.URL = "http://" + ln.Addr().String() + "/v1"
	return ts
}

func (ts *teacherServer) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model       string
		Messages    []Message
		MaxTokens   int  `json:"max_tokens"`
		Logprobs    bool `json:"logprobs"`
		TopLogprobs int  `json:"top_logprobs"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`, 400)
		return
	}
	if ts.status != 0 {
		w.WriteHeader(ts.status)
		fmt.Fprintf(w, `{"error":{"message":"nope","type":"invalid_request_error","code":"invalid_api_key"}}`)
		return
	}
	if ts.delay > 0 {
		time.Sleep(ts.delay)
	}
	last := req.Messages[len(req.Messages)-1].Content
	words := strings.Fields(last)
	answer := "other"
	if strings.HasPrefix(strings.ToLower(words[len(words)-1]), "g") {
		answer = "great"
	}
	in := len(strings.Fields(last)) + 5
	ts.mu.Lock()
	ts.billed[last]++
	ts.inTok += in
	ts.outTok++
	ts.mu.Unlock()
	ts.answers.Add(1)
	alt := map[string]string{"great": "other", "other": "great"}[answer]
	resp := map[string]any{
		"id": "x", "object": "chat.completion", "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": answer},
			"logprobs": map[string]any{"content": []any{map[string]any{"token": answer, "logprob": math.Log(0.8), "bytes": byteInts(answer),
				"top_logprobs": []any{map[string]any{"token": answer, "logprob": math.Log(0.8)}, map[string]any{"token": alt, "logprob": math.Log(0.15)}}}}},
		}},
		"usage": map[string]any{"prompt_tokens": in, "completion_tokens": 1, "total_tokens": in + 1},
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// faultProxy sits between the harvest and the teacher on loopback and
// fails requests at random in every way a flaky provider does.
type faultProxy struct {
	URL    string
	faults map[string]*atomic.Int64
	seen   atomic.Int64
}

func startFaultProxy(t testing.TB, upstream string, rate float64, seed uint64) *faultProxy {
	target, _ := url.Parse(strings.TrimSuffix(upstream, "/v1"))
	rp := httputil.NewSingleHostReverseProxy(target)
	fp := &faultProxy{faults: map[string]*atomic.Int64{}}
	kinds := []string{"429", "429-retry-after", "500", "503", "slow-ok", "timeout", "cut", "malformed", "cut-body"}
	for _, k := range kinds {
		fp.faults[k] = &atomic.Int64{}
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 9))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.seen.Add(1)
		mu.Lock()
		roll, kind := rng.Float64(), kinds[rng.IntN(len(kinds))]
		mu.Unlock()
		if roll >= rate {
			rp.ServeHTTP(w, r)
			return
		}
		fp.faults[kind].Add(1)
		io.Copy(io.Discard, r.Body)
		switch kind {
		case "429":
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`)
		case "429-retry-after":
			w.Header().Set("retry-after-ms", "20")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`)
		case "500", "503":
			w.WriteHeader(map[string]int{"500": 500, "503": 503}[kind])
			io.WriteString(w, `{"error":{"message":"oops","type":"server_error"}}`)
		case "slow-ok":
			time.Sleep(50 * time.Millisecond) // slow, but within the client's timeout
			rp.ServeHTTP(w, r)
		case "timeout":
			<-r.Context().Done() // never answered: the client gives up first
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		case "cut":
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case "cut-body":
			conn, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":\"x\",\"cho")
			buf.Flush()
			conn.Close()
		case "malformed":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id": "x", "choices": [ {"message": `)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	fp.URL = "http://" + ln.Addr().String() + "/v1"
	return fp
}

func reviews(n int) []Example {
	words := []string{"good", "great", "bad", "awful", "gorgeous", "meh", "grim", "okay"}
	var ex []Example
	for i := range n {
		// The last tenth repeat earlier texts in other case and spacing:
		// identical after normalisation, so asked once.
		base := i % (n - n/10)
		text := fmt.Sprintf("Review %d was %s", base, words[base%len(words)])
		if i != base {
			text = strings.ToLower(text) + "  "
		}
		ex = append(ex, Example{ID: fmt.Sprint("r", i), Text: text, Split: "train"})
	}
	return ex
}

func harvestOpts(t testing.TB, url, dir string) HarvestOptions {
	teacher, err := NewOpenAI(OpenAIOptions{BaseURL: url, Model: "teacher-1", APIKey: "k", APIKeyEnv: "TEACHER_KEY", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return HarvestOptions{
		Teacher: teacher, Prompt: PromptSpec{Template: "Rate: {text}"}, Labels: []string{"great", "other"},
		MaxTokens: 2, TopLogprobs: 2, Price: Price{InputPerMTok: 1000, OutputPerMTok: 2000},
		Dir: dir, Out: filepath.Join(dir, "soft_labels.parquet"),
		Flow: FlowOptions{Concurrency: 8, MaxRetries: 12, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond},
	}
}

// TestHarvestUnderFaults: a flaky provider (429s with and without
// retry-after, 500, 503, timeouts, cut connections, malformed and truncated
// bodies) still yields every example exactly once; a rerun sends nothing.
func TestHarvestUnderFaults(t *testing.T) {
	teacher := startTeacher(t)
	proxy := startFaultProxy(t, teacher.URL, 0.3, 1)
	dir := t.TempDir()
	examples := reviews(300)
	sum, err := Harvest(context.Background(), examples, harvestOpts(t, proxy.URL, dir))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := datasets.ReadSoftLabels(filepath.Join(dir, "soft_labels.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, r := range rows {
		ids[r.ID]++
		want := "other"
		if f := strings.Fields(r.Prompt); strings.HasPrefix(f[len(f)-1], "g") {
			want = "great"
		}
		if r.Label != want || len(r.TopK) != 1 || len(r.TopK[0].Tokens) != 2 || math.Abs(float64(r.TopK[0].TailMass)-0.05) > 1e-4 {
			t.Fatalf("row %s: %+v", r.ID, r)
		}
	}
	for _, ex := range examples {
		if ids[ex.ID] != 1 {
			t.Fatalf("example %s appears %d times", ex.ID, ids[ex.ID])
		}
	}
	// Every distinct prompt was answered (billed) exactly once upstream.
	for p, n := range teacher.billed {
		if n != 1 {
			t.Errorf("prompt %q billed %d times", p, n)
		}
	}
	var injected int64
	for _, c := range proxy.faults {
		injected += c.Load()
	}
	if sum.Retries == 0 || int64(sum.Retries) < injected/2 || sum.Harvested != len(examples) || sum.UniquePrompts != 270 || len(teacher.billed) != 270 {
		t.Errorf("summary %+v, %d faults injected", sum, injected)
	}
	t.Logf("faults injected %d, retries %d by kind %v, requests %d, unique prompts %d, p50 %.1fms p95 %.1fms",
		injected, sum.Retries, sum.RetriesByKind, sum.Requests, sum.UniquePrompts, sum.LatencyP50MS, sum.LatencyP95MS)

	// A rerun asks nothing: every answer is in the journal.
	before := proxy.seen.Load()
	sum2, err := Harvest(context.Background(), examples, harvestOpts(t, proxy.URL, dir))
	if err != nil {
		t.Fatal(err)
	}
	if proxy.seen.Load() != before || sum2.Asked != 0 || sum2.FromJournal != sum.UniquePrompts || sum2.Harvested != len(examples) {
		t.Errorf("rerun sent %d requests: %+v", proxy.seen.Load()-before, sum2)
	}
}

// TestHarvestBudget: with a known price, the harvest stops before the cap
// and what the provider billed never exceeds it, in-flight calls included.
func TestHarvestBudget(t *testing.T) {
	teacher := startTeacher(t)
	teacher.delay = 5 * time.Millisecond
	dir := t.TempDir()
	o := harvestOpts(t, teacher.URL, dir)
	o.BudgetUSD = 0.05
	sum, err := Harvest(context.Background(), reviews(400), o)
	if !errors.Is(err, ErrBudget) || sum.StoppedBy != "budget" {
		t.Fatalf("want budget stop, got %v (%+v)", err, sum)
	}
	billed := o.Price.Cost(teacher.inTok, teacher.outTok)
	if billed > o.BudgetUSD || math.Abs(billed-sum.CostUSD) > 1e-9 || sum.Unharvested == 0 {
		t.Fatalf("billed $%.5f, reported $%.5f, budget $%.2f, unharvested %d", billed, sum.CostUSD, o.BudgetUSD, sum.Unharvested)
	}
	if !strings.Contains(err.Error(), "unharvested") || !strings.Contains(err.Error(), "$0.05") {
		t.Errorf("message: %v", err)
	}
	// A larger budget reuses every paid answer and asks only the rest.
	paid := teacher.answers.Load()
	o.BudgetUSD = 0
	sum2, err := Harvest(context.Background(), reviews(400), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum2.FromJournal != int(paid) || int64(sum2.Asked)+paid != int64(sum2.UniquePrompts) {
		t.Errorf("second harvest: %+v after %d paid", sum2, paid)
	}
}

// TestHarvestStopsOn401 names the key's env var and stops at once.
func TestHarvestStopsOn401(t *testing.T) {
	teacher := startTeacher(t)
	teacher.status = 401
	proxy := startFaultProxy(t, teacher.URL, 0, 1)
	_, err := Harvest(context.Background(), reviews(200), harvestOpts(t, proxy.URL, t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "TEACHER_KEY") {
		t.Fatalf("want an auth error naming TEACHER_KEY, got %v", err)
	}
	if n := proxy.seen.Load(); n > 8 {
		t.Errorf("%d requests sent after a 401 (concurrency 8)", n)
	}
}

// BenchmarkHarvestVsLoadGenerator compares harvest throughput (examples/s,
// Parquet and journal writes included) with a plain HTTP load generator
// at the same concurrency against the same zero-latency local server.
func BenchmarkHarvestVsLoadGenerator(b *testing.B) {
	teacher := startTeacherProcess(b)
	const n = 2000
	conc := benchConcurrency()
	body := `{"model":"teacher-1","messages":[{"role":"user","content":"Rate: review 1 was good"}],"max_tokens":2,"logprobs":true,"top_logprobs":2}`
	b.Run("loadgen", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
		for b.Loop() {
			var wg sync.WaitGroup
			var next atomic.Int64
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= n {
						resp, err := client.Post(teacher.URL+"/chat/completions", "application/json", strings.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "examples/s")
	})
	b.Run("harvest", func(b *testing.B) {
		ex := make([]Example, n)
		for i := range ex {
			ex[i] = Example{ID: fmt.Sprint(i), Text: fmt.Sprintf("review %d was good", i), Split: "train"}
		}
		for b.Loop() {
			dir := b.TempDir()
			o := harvestOpts(b, teacher.URL, dir)
			o.Flow.Concurrency = conc
			if _, err := Harvest(context.Background(), ex, o); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "examples/s")
	})
}

func byteInts(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

// startTeacherProcess runs the teacher server in a child process (this test
// binary), so that neither side of the benchmark pays for the other's
// garbage collection.
func startTeacherProcess(b *testing.B) *teacherServer {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTeacherServer$")
	cmd.Env = append(os.Environ(), "DISTILL_TEACHER_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return &teacherServer{URL: strings.TrimSpace(line)}
}

// TestHelperTeacherServer is the child process of startTeacherProcess.
func TestHelperTeacherServer(t *testing.T) {
	if os.Getenv("DISTILL_TEACHER_HELPER") != "1" {
		t.Skip("helper process for BenchmarkHarvestVsLoadGenerator")
	}
	ts := startTeacher(t)
	fmt.Println(ts.URL)
	select {}
}

// TestHarvestAnthropicHardLabels: a teacher without log-probabilities gives
// one-hot label distributions from its text, and the log says so.
func TestHarvestAnthropicHardLabels(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req struct{ Messages []Message }
		json.NewDecoder(r.Body).Decode(&req)
		answer := "Other."
		if strings.Contains(req.Messages[len(req.Messages)-1].Content, "great") {
			answer = "great"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"m","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":%q}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":2}}`, answer)
	}))
	defer srv.Close()
	teacher, err := NewAnthropic(AnthropicOptions{BaseURL: srv.URL + "/v1", Model: "claude-x", APIKey: "k", APIKeyEnv: "ANTHROPIC_API_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var logs strings.Builder
	o := HarvestOptions{Teacher: teacher, Prompt: PromptSpec{Template: "{text}"}, Labels: []string{"great", "other"}, MaxTokens: 4,
		Price: Price{InputPerMTok: 3, OutputPerMTok: 15}, Dir: dir, Out: filepath.Join(dir, "out.parquet"),
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	sum, err := Harvest(context.Background(), []Example{{ID: "a", Text: "a great tea"}, {ID: "b", Text: "stale"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := datasets.ReadSoftLabels(o.Out)
	if len(rows) != 2 || sum.Logprobs || !strings.Contains(logs.String(), "no log-probabilities") {
		t.Fatalf("rows %v, summary %+v, log %q", rows, sum, logs.String())
	}
	for _, r := range rows {
		want := map[string]string{"a": "great", "b": "other"}[r.ID]
		if r.Label != want || len(r.TopK) != 0 || r.LabelDist[map[string]int{"great": 0, "other": 1}[want]].Prob != 1 {
			t.Errorf("row %+v", r)
		}
	}
	if math.Abs(sum.CostUSD-2*o.Price.Cost(12, 2)) > 1e-12 {
		t.Errorf("cost %v", sum.CostUSD)
	}
}

// benchConcurrency is the concurrency of both sides of the throughput
// benchmark: $HARVEST_BENCH_CONCURRENCY, default 32 (where the load
// generator is at its peak on a 2-core machine, and the journal's fsyncs
// are shared by enough answers).
func benchConcurrency() int {
	if v, err := strconv.Atoi(os.Getenv("HARVEST_BENCH_CONCURRENCY")); err == nil && v > 0 {
		return v
	}
	return 32
}
