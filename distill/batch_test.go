package distill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// batchSleeps records the delays a client asked for and sleeps at most a
// millisecond each.
type batchSleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *batchSleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return batchSleep(ctx, min(d, time.Millisecond))
}

func (s *batchSleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

const batchTestPoll = 3 * time.Millisecond

func newTestBatchClient(t *testing.T, f *fakeBatchAPI, edit func(*BatchOptions)) (*BatchClient, *batchSleeps) {
	t.Helper()
	s := &batchSleeps{}
	o := BatchOptions{
		BaseURL:      f.URL(),
		Model:        "gpt-test",
		APIKey:       f.Key,
		APIKeyEnv:    "DISTILLERY_TEST_KEY",
		PollInterval: batchTestPoll,
		Sleep:        s.sleep,
	}
	if edit != nil {
		edit(&o)
	}
	c, err := NewBatch(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

func batchTestItems(n int) []BatchItem {
	items := make([]BatchItem, n)
	for i := range items {
		items[i] = BatchItem{
			CustomID: fmt.Sprintf("req-%d", i),
			Request: Request{
				Messages: []Message{
					{Role: "system", Content: "be brief"},
					{Role: "user", Content: fmt.Sprintf("hello number %d é", i)},
				},
				MaxTokens:   16,
				TopLogprobs: 3,
			},
		}
	}
	return items
}

// waitAll waits for the batch and returns its results in report order.
func waitAll(t *testing.T, c *BatchClient, id string) ([]BatchResult, [][3]int, error) {
	t.Helper()
	var res []BatchResult
	var prog [][3]int
	err := c.Wait(context.Background(), id,
		func(done, failed, total int) { prog = append(prog, [3]int{done, failed, total}) },
		func(r BatchResult) error { res = append(res, r); return nil })
	return res, prog, err
}

func batchByID(t *testing.T, res []BatchResult) map[string]BatchResult {
	t.Helper()
	m := map[string]BatchResult{}
	for _, r := range res {
		if _, dup := m[r.CustomID]; dup {
			t.Errorf("custom id %s reported twice", r.CustomID)
		}
		m[r.CustomID] = r
	}
	return m
}

func batchErr(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e
}

func TestBatchRoundTrip(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.Key = "sk-test-good"
	c, _ := newTestBatchClient(t, f, nil)
	items := []BatchItem{
		{CustomID: "a", Request: Request{Messages: []Message{{Role: "user", Content: "the quick brown fox"}}, MaxTokens: 10, TopLogprobs: 3}},
		{CustomID: "b", Request: Request{Messages: []Message{
			{Role: "system", Content: "you are terse"},
			{Role: "user", Content: "one two three four five"},
		}, MaxTokens: 2, Temperature: 0.7, TopLogprobs: 1}},
		{CustomID: "c", Request: Request{Messages: []Message{{Role: "user", Content: "no logprobs here"}}}},
		{CustomID: "d", Request: Request{Messages: []Message{{Role: "user", Content: "naïve café"}}, TopLogprobs: 20}},
	}
	id, err := c.Submit(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	if id == "" {
		t.Fatal("empty batch id")
	}

	// The input file.
	lines := f.uploaded()
	if len(lines) != len(items) {
		t.Fatalf("uploaded %d lines, want %d", len(lines), len(items))
	}
	for i, l := range lines {
		var in struct {
			CustomID string         `json:"custom_id"`
			Method   string         `json:"method"`
			URL      string         `json:"url"`
			Body     map[string]any `json:"body"`
		}
		if err := json.Unmarshal([]byte(l), &in); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if in.CustomID != items[i].CustomID || in.Method != "POST" || in.URL != "/v1/chat/completions" {
			t.Errorf("line %d: %s %s %s", i, in.CustomID, in.Method, in.URL)
		}
		if in.Body["model"] != "gpt-test" {
			t.Errorf("line %d: model %v", i, in.Body["model"])
		}
		if temp, ok := in.Body["temperature"]; !ok || temp != items[i].Request.Temperature {
			t.Errorf("line %d: temperature %v (sent %v), want %v", i, temp, ok, items[i].Request.Temperature)
		}
		req := items[i].Request
		if mt, ok := in.Body["max_tokens"]; (req.MaxTokens > 0) != ok || (ok && mt != float64(req.MaxTokens)) {
			t.Errorf("line %d: max_tokens %v", i, mt)
		}
		if lp, _ := in.Body["logprobs"].(bool); lp != (req.TopLogprobs > 0) {
			t.Errorf("line %d: logprobs %v", i, in.Body["logprobs"])
		}
		if tl, ok := in.Body["top_logprobs"]; (req.TopLogprobs > 0) != ok || (ok && tl != float64(req.TopLogprobs)) {
			t.Errorf("line %d: top_logprobs %v", i, tl)
		}
		msgs, _ := in.Body["messages"].([]any)
		if len(msgs) != len(req.Messages) {
			t.Errorf("line %d: %d messages", i, len(msgs))
		}
	}

	res, prog, err := waitAll(t, c, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(items) {
		t.Fatalf("%d results, want %d", len(res), len(items))
	}
	for i, r := range res { // the output file is in input order
		if r.CustomID != items[i].CustomID {
			t.Errorf("result %d is %s, want %s", i, r.CustomID, items[i].CustomID)
		}
		if r.Err != nil {
			t.Errorf("%s: %v", r.CustomID, r.Err)
		}
	}
	if len(prog) < 3 {
		t.Errorf("progress reported %d times: %v", len(prog), prog)
	}
	if last := prog[len(prog)-1]; last != [3]int{4, 0, 4} {
		t.Errorf("last progress %v, want [4 0 4]", last)
	}

	m := batchByID(t, res)
	a := m["a"].Response
	if a.Text != "the quick brown fox" || a.FinishReason != "stop" || a.Model != "gpt-test" {
		t.Errorf("a: %+v", a)
	}
	if a.InputTokens != 4 || a.OutputTokens != 4 {
		t.Errorf("a: usage %d/%d", a.InputTokens, a.OutputTokens)
	}
	wantTok := []string{"the", " quick", " brown", " fox"}
	if len(a.Tokens) != len(wantTok) {
		t.Fatalf("a: %d tokens", len(a.Tokens))
	}
	for i, tok := range a.Tokens {
		if tok.Token != wantTok[i] || string(tok.Bytes) != wantTok[i] || math.Abs(tok.Logprob-(-float64(i+1)/10)) > 1e-12 {
			t.Errorf("a token %d: %+v", i, tok)
		}
		if len(tok.Top) != 3 || tok.Top[0].Token != wantTok[i] || tok.Top[1].Token != "alt1" || tok.Top[2].Token != "alt2" {
			t.Errorf("a token %d: top %+v", i, tok.Top)
			continue
		}
		if math.Abs(tok.Top[2].Logprob-(tok.Logprob-2)) > 1e-12 || string(tok.Top[1].Bytes) != "alt1" {
			t.Errorf("a token %d: top %+v", i, tok.Top)
		}
	}

	b := m["b"].Response
	if b.Text != "one two" || b.FinishReason != "length" || b.InputTokens != 8 || b.OutputTokens != 2 || len(b.Tokens) != 2 || len(b.Tokens[1].Top) != 1 {
		t.Errorf("b: %+v", b)
	}
	cr := m["c"].Response
	if cr.Text != "no logprobs here" || cr.Tokens != nil {
		t.Errorf("c: text %q tokens %v (want nil)", cr.Text, cr.Tokens)
	}
	d := m["d"].Response
	if d.Text != "naïve café" || len(d.Tokens) != 2 || len(d.Tokens[0].Top) != 20 || string(d.Tokens[1].Bytes) != " café" {
		t.Errorf("d: %+v", d)
	}
}

func TestBatchItemErrors(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.Fail = map[string]string{"req-1": "500", "req-2": "400", "req-3": "error"}
	c, _ := newTestBatchClient(t, f, nil)
	id, err := c.Submit(context.Background(), batchTestItems(5))
	if err != nil {
		t.Fatal(err)
	}
	res, prog, err := waitAll(t, c, id)
	if err != nil {
		t.Fatal(err)
	}
	order := make([]string, len(res))
	for i, r := range res {
		order[i] = r.CustomID
	}
	// output file first, then the error file
	if got, want := strings.Join(order, ","), "req-0,req-4,req-1,req-2,req-3"; got != want {
		t.Errorf("order %s, want %s", got, want)
	}
	if last := prog[len(prog)-1]; last != [3]int{2, 3, 5} {
		t.Errorf("last progress %v", last)
	}
	m := batchByID(t, res)
	for _, id := range []string{"req-0", "req-4"} {
		if m[id].Err != nil || m[id].Response.Text == "" {
			t.Errorf("%s: %+v", id, m[id])
		}
	}
	check := func(id string, kind ErrorKind, status int, msg string) {
		t.Helper()
		e := batchErr(t, m[id].Err)
		if e.Kind != kind || e.Status != status || !strings.Contains(e.Error(), msg) {
			t.Errorf("%s: %v (kind %s, status %d), want %s %d %q", id, e, e.Kind, e.Status, kind, status, msg)
		}
		if m[id].Response.Text != "" {
			t.Errorf("%s: failed result has a response", id)
		}
	}
	check("req-1", KindServer, 500, "fake failure 500")
	check("req-2", KindBadRequest, 400, "fake failure 400")
	check("req-3", KindOther, 0, "invalid_prompt: the prompt was refused")
}

func TestBatchExpired(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inErrors bool
		resume   bool
	}{
		{"missing", false, false},
		{"batch_expired lines", true, false},
		{"missing, resumed", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBatchAPI(t)
			f.ExpireAfter = 2
			f.ExpiredInErrors = tc.inErrors
			c, _ := newTestBatchClient(t, f, nil)
			id, err := c.Submit(context.Background(), batchTestItems(5))
			if err != nil {
				t.Fatal(err)
			}
			if tc.resume { // the missing ids must come from the input file
				c, _ = newTestBatchClient(t, f, nil)
			}
			res, _, err := waitAll(t, c, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 5 {
				t.Fatalf("%d results, want 5", len(res))
			}
			m := batchByID(t, res)
			for i := range 5 {
				r := m[fmt.Sprintf("req-%d", i)]
				if i < 2 {
					if r.Err != nil || r.Response.Text == "" {
						t.Errorf("req-%d: %+v", i, r)
					}
					continue
				}
				e := batchErr(t, r.Err)
				if e.Kind != KindOther || e.Msg != "not processed (batch expired)" {
					t.Errorf("req-%d: %v", i, e)
				}
			}
		})
	}
}

func TestBatchFailed(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.FailBatch = true
	c, _ := newTestBatchClient(t, f, nil)
	id, err := c.Submit(context.Background(), batchTestItems(2))
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := waitAll(t, c, id)
	if err == nil {
		t.Fatal("no error for a failed batch")
	}
	if len(res) != 0 {
		t.Errorf("%d results for a failed batch", len(res))
	}
	for _, want := range []string{id, "failed", "invalid_request: the batch was refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestBatchCancelled(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.CancelAfter = 1
	c, _ := newTestBatchClient(t, f, nil)
	id, err := c.Submit(context.Background(), batchTestItems(3))
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := waitAll(t, c, id)
	if err == nil || !strings.Contains(err.Error(), "cancelled") || !strings.Contains(err.Error(), "2 of 3") {
		t.Fatalf("error %v, want a cancelled batch with 2 of 3 missing", err)
	}
	if len(res) != 1 || res[0].CustomID != "req-0" || res[0].Err != nil {
		t.Errorf("partial results %+v", res)
	}
}

func TestBatchAuth(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.Key = "sk-right"
	const secret = "sk-wrong-secret-4242"
	c, sleeps := newTestBatchClient(t, f, func(o *BatchOptions) { o.APIKey = secret; o.APIKeyEnv = "MY_OPENAI_KEY" })
	_, err := c.Submit(context.Background(), batchTestItems(1))
	e := batchErr(t, err)
	if e.Kind != KindAuth || e.Status != 401 {
		t.Errorf("kind %s status %d", e.Kind, e.Status)
	}
	if !strings.Contains(err.Error(), "MY_OPENAI_KEY") {
		t.Errorf("error %q does not name the variable", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error %q shows the key", err)
	}
	if len(sleeps.all()) != 0 {
		t.Errorf("a 401 was retried: %v", sleeps.all())
	}
	// Wait on the same server with the bad key fails the same way.
	err = c.Wait(context.Background(), "batch-x", nil, func(BatchResult) error { return nil })
	if e := batchErr(t, err); e.Kind != KindAuth || !strings.Contains(err.Error(), "MY_OPENAI_KEY") {
		t.Errorf("Wait: %v", err)
	}

	// No key at all says so.
	c, _ = newTestBatchClient(t, f, func(o *BatchOptions) { o.APIKey = ""; o.APIKeyEnv = "MY_OPENAI_KEY" })
	_, err = c.Submit(context.Background(), batchTestItems(1))
	if !strings.Contains(err.Error(), "MY_OPENAI_KEY is empty") {
		t.Errorf("no key: %v", err)
	}
}

func TestBatchPoll503(t *testing.T) {
	for _, n := range []int{1, batchAttempts + 2} { // within one call's retries, and beyond
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFakeBatchAPI(t)
			c, sleeps := newTestBatchClient(t, f, nil)
			id, err := c.Submit(context.Background(), batchTestItems(3))
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			f.Poll503 = n
			f.mu.Unlock()
			res, _, err := waitAll(t, c, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 3 {
				t.Errorf("%d results", len(res))
			}
			d := sleeps.all()
			if len(d) == 0 || d[0] != time.Second {
				t.Errorf("sleeps %v, want a 1s backoff first", d)
			}
		})
	}
}

func TestBatchResume(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.Fail = map[string]string{"req-2": "500"}
	c1, _ := newTestBatchClient(t, f, nil)
	id, err := c1.Submit(context.Background(), batchTestItems(4))
	if err != nil {
		t.Fatal(err)
	}
	// The process "crashes" after one poll.
	ctx, cancel := context.WithCancel(context.Background())
	err = c1.Wait(ctx, id, func(int, int, int) { cancel() }, func(BatchResult) error {
		t.Error("result before the batch ended")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first Wait: %v", err)
	}
	c2, _ := newTestBatchClient(t, f, nil)
	res, _, err := waitAll(t, c2, id)
	if err != nil {
		t.Fatal(err)
	}
	m := batchByID(t, res)
	if len(m) != 4 {
		t.Fatalf("%d results", len(m))
	}
	for i := range 4 {
		r := m[fmt.Sprintf("req-%d", i)]
		if i == 2 {
			if e := batchErr(t, r.Err); e.Kind != KindServer {
				t.Errorf("req-2: %v", e)
			}
			continue
		}
		if want := fmt.Sprintf("hello number %d é", i); r.Err != nil || r.Response.Text != want || len(r.Response.Tokens) != 4 {
			t.Errorf("req-%d: %+v", i, r)
		}
	}
	// Waiting again on an ended batch reports the same results.
	again, _, err := waitAll(t, c2, id)
	if err != nil || len(again) != 4 {
		t.Errorf("second Wait: %d results, %v", len(again), err)
	}
	if _, uploads, creates, _, batches := f.counts(); uploads != 1 || creates != 1 || batches != 1 {
		t.Errorf("uploads %d creates %d batches %d", uploads, creates, batches)
	}
}

func TestBatchCancelWhilePolling(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.InProgressPolls = -1
	// The real sleep and a long interval: cancellation must cut the sleep.
	c, _ := newTestBatchClient(t, f, func(o *BatchOptions) { o.PollInterval = time.Hour; o.Sleep = nil })
	id, err := c.Submit(context.Background(), batchTestItems(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- c.Wait(ctx, id, func(int, int, int) { polled <- struct{}{} }, func(BatchResult) error { return nil })
	}()
	<-polled
	time.Sleep(5 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("Wait returned %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Wait took %v to return", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after cancellation")
	}
}

func TestBatchCreateRetryNoDuplicate(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.Create500 = 1 // the batch is made, but the reply is a 500
	c, _ := newTestBatchClient(t, f, nil)
	id, err := c.Submit(context.Background(), batchTestItems(2))
	if err != nil {
		t.Fatal(err)
	}
	_, _, creates, lists, batches := f.counts()
	if creates != 1 || batches != 1 || lists != 1 {
		t.Errorf("creates %d lists %d batches %d: want one batch, found by listing", creates, lists, batches)
	}
	res, _, err := waitAll(t, c, id)
	if err != nil || len(res) != 2 {
		t.Errorf("%d results, %v", len(res), err)
	}
}

func TestBatchDownloadCut(t *testing.T) {
	f := newFakeBatchAPI(t)
	f.CutContent = 2
	c, _ := newTestBatchClient(t, f, nil)
	id, err := c.Submit(context.Background(), batchTestItems(6))
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := waitAll(t, c, id)
	if err != nil {
		t.Fatal(err)
	}
	if m := batchByID(t, res); len(res) != 6 || len(m) != 6 {
		t.Errorf("%d results, %d distinct", len(res), len(m))
	}
}

func TestBatchNotFound(t *testing.T) {
	f := newFakeBatchAPI(t)
	c, _ := newTestBatchClient(t, f, nil)
	err := c.Wait(context.Background(), "batch-missing", nil, func(BatchResult) error { return nil })
	if e := batchErr(t, err); e.Kind != KindNotFound || e.Status != 404 || !strings.Contains(err.Error(), "batch-missing") {
		t.Errorf("%v", err)
	}
}

func TestBatchOnResultError(t *testing.T) {
	f := newFakeBatchAPI(t)
	c, _ := newTestBatchClient(t, f, nil)
	id, err := c.Submit(context.Background(), batchTestItems(4))
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("disk full")
	n := 0
	err = c.Wait(context.Background(), id, nil, func(BatchResult) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Errorf("Wait returned %v after %d results", err, n)
	}
}

func TestBatchSubmitChecks(t *testing.T) {
	f := newFakeBatchAPI(t)
	c, _ := newTestBatchClient(t, f, nil)
	dup := batchTestItems(2)
	dup[1].CustomID = dup[0].CustomID
	noID := batchTestItems(1)
	noID[0].CustomID = ""
	for name, items := range map[string][]BatchItem{"empty": nil, "duplicate": dup, "no id": noID} {
		_, err := c.Submit(context.Background(), items)
		if e := batchErr(t, err); e.Kind != KindBadRequest {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, uploads, _, _, _ := f.counts(); uploads != 0 {
		t.Errorf("%d uploads for refused batches", uploads)
	}
	if _, err := NewBatch(BatchOptions{BaseURL: "ftp://x", Model: "m"}); err == nil {
		t.Error("NewBatch accepted an ftp URL")
	}
	if _, err := NewBatch(BatchOptions{BaseURL: "http://x/v1"}); err == nil {
		t.Error("NewBatch accepted an empty model")
	}
}

func TestBatchParseCompletion(t *testing.T) {
	_, err := batchParseCompletion([]byte(`{"choices":[{"message":{"role":"assistant","content":"x"},"logprobs":{"content":[{"token":"x","logprob":-1,"bytes":[300],"top_logprobs":[]}]}}]}`))
	if e := batchErr(t, err); e.Kind != KindMalformed {
		t.Errorf("byte 300: %v", e)
	}
	_, err = batchParseCompletion([]byte(`{"choices":[]}`))
	if e := batchErr(t, err); e.Kind != KindMalformed {
		t.Errorf("no choices: %v", e)
	}
	r, err := batchParseCompletion([]byte(`{"model":"m","choices":[{"message":{"role":"assistant","content":[{"type":"text","text":"hi"}]},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`))
	if err != nil || r.Text != "hi" || r.Tokens != nil || r.InputTokens != 3 || r.OutputTokens != 1 || r.FinishReason != "stop" {
		t.Errorf("%+v %v", r, err)
	}
}

func TestBatchSubmitCancelled(t *testing.T) {
	f := newFakeBatchAPI(t)
	c, _ := newTestBatchClient(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Submit(ctx, batchTestItems(1)); err != context.Canceled {
		t.Errorf("Submit returned %v, want context.Canceled", err)
	}
}
