package distill

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTeacher answers with fn; it counts calls.
type fakeTeacher struct {
	calls atomic.Int64
	fn    func(ctx context.Context, call int) (Response, error)
}

func (f *fakeTeacher) Model() string  { return "fake" }
func (f *fakeTeacher) Logprobs() bool { return true }
func (f *fakeTeacher) Complete(ctx context.Context, req Request) (Response, error) {
	return f.fn(ctx, int(f.calls.Add(1))-1)
}

// scripted fails call i with errs[i] (nil: success) and succeeds after.
func scripted(errs ...error) *fakeTeacher {
	return &fakeTeacher{fn: func(ctx context.Context, call int) (Response, error) {
		if call < len(errs) && errs[call] != nil {
			return Response{}, errs[call]
		}
		return Response{Text: "ok", InputTokens: 1, OutputTokens: 1}, nil
	}}
}

// fakeFlow is a Flow on a fake clock with jitter fixed at rnd.
func fakeFlow(t Teacher, o FlowOptions, rnd float64) (*Flow, *fakeClock) {
	clk := newFakeClock()
	o.Now, o.Sleep, o.Rand = clk.Now, clk.Sleep, func() float64 { return rnd }
	return NewFlow(t, o), clk
}

func TestFlowRetriesUntilSuccess(t *testing.T) {
	tt := scripted(
		&Error{Kind: KindServer, Status: 500},
		&Error{Kind: KindRateLimit, Status: 429},
		&Error{Kind: KindTimeout},
		&Error{Kind: KindConnection},
		&Error{Kind: KindMalformed, Status: 200},
	)
	f, clk := fakeFlow(tt, FlowOptions{BaseDelay: 100 * time.Millisecond}, 1)
	resp, attempts, err := f.Do(context.Background(), Request{}, 10)
	if err != nil || resp.Text != "ok" {
		t.Fatalf("Do: %v %v", resp, err)
	}
	ms := time.Millisecond
	want := []Attempt{{KindServer, 500, 100 * ms}, {KindRateLimit, 429, 200 * ms}, {KindTimeout, 0, 400 * ms},
		{KindConnection, 0, 800 * ms}, {KindMalformed, 200, 1600 * ms}}
	if !reflect.DeepEqual(attempts, want) {
		t.Errorf("attempts\n got %v\nwant %v", attempts, want)
	}
	if got := clk.Slept(); !reflect.DeepEqual(got, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms}) {
		t.Errorf("slept %v", got)
	}
	s := f.Stats()
	if s.Requests != 6 || s.Retries != 5 || s.RetriesByKind[KindServer] != 1 || s.RetriesByKind[KindMalformed] != 1 ||
		len(s.FailuresByKind) != 0 || s.Backoff != 3100*ms {
		t.Errorf("stats %+v", s)
	}
}

func TestFlowRetriesRunOut(t *testing.T) {
	fail := &Error{Kind: KindServer, Status: 503}
	tt := &fakeTeacher{fn: func(context.Context, int) (Response, error) { return Response{}, fail }}
	f, _ := fakeFlow(tt, FlowOptions{MaxRetries: 8, BaseDelay: time.Second, MaxDelay: 10 * time.Second}, 1)
	_, attempts, err := f.Do(context.Background(), Request{}, 10)
	if err != fail {
		t.Fatalf("err %v, want the last *Error", err)
	}
	var waits []time.Duration
	for _, a := range attempts {
		waits = append(waits, a.Wait/time.Second)
	}
	// Doubling from 1s, capped at 10s; the last attempt has no wait.
	if want := []time.Duration{1, 2, 4, 8, 10, 10, 10, 10, 0}; !reflect.DeepEqual(waits, want) {
		t.Errorf("waits (s) %v, want %v", waits, want)
	}
	if s := f.Stats(); s.Requests != 9 || s.FailuresByKind[KindServer] != 1 {
		t.Errorf("stats %+v", s)
	}
	// No retries at all.
	tt.calls.Store(0)
	f, _ = fakeFlow(tt, FlowOptions{MaxRetries: -1}, 1)
	if _, attempts, _ := f.Do(context.Background(), Request{}, 10); len(attempts) != 1 || tt.calls.Load() != 1 {
		t.Errorf("MaxRetries -1: %d attempts, %d calls", len(attempts), tt.calls.Load())
	}
}

func TestFlowNoRetry(t *testing.T) {
	for _, e := range []*Error{
		{Kind: KindBadRequest, Status: 400}, {Kind: KindBadRequest, Status: 413},
		{Kind: KindAuth, Status: 401}, {Kind: KindNotFound, Status: 404}, {Kind: KindOther, Status: 418},
	} {
		t.Run(e.Error(), func(t *testing.T) {
			tt := scripted(e)
			f, clk := fakeFlow(tt, FlowOptions{}, 1)
			_, attempts, err := f.Do(context.Background(), Request{}, 10)
			if err != e || tt.calls.Load() != 1 || len(clk.Slept()) != 0 {
				t.Fatalf("err %v after %d calls", err, tt.calls.Load())
			}
			if want := []Attempt{{e.Kind, e.Status, 0}}; !reflect.DeepEqual(attempts, want) {
				t.Errorf("attempts %v", attempts)
			}
			if s := f.Stats(); s.FailuresByKind[e.Kind] != 1 || s.Retries != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestFlowPlainErrorIsOther(t *testing.T) {
	f, _ := fakeFlow(scripted(errors.New("boom")), FlowOptions{}, 1)
	_, _, err := f.Do(context.Background(), Request{}, 10)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindOther {
		t.Fatalf("err %v", err)
	}
}

func TestFlowAuthSticky(t *testing.T) {
	auth := &Error{Kind: KindAuth, Status: 401, Msg: "the API rejected the key in OPENAI_API_KEY (401): bad key"}
	tt := scripted(auth)
	f, _ := fakeFlow(tt, FlowOptions{}, 1)
	if _, _, err := f.Do(context.Background(), Request{}, 10); err != auth {
		t.Fatalf("first: %v", err)
	}
	for range 3 {
		_, attempts, err := f.Do(context.Background(), Request{}, 10)
		if err != auth || attempts != nil {
			t.Fatalf("later: %v %v", err, attempts)
		}
	}
	if n := tt.calls.Load(); n != 1 {
		t.Errorf("%d calls after an auth failure, want 1", n)
	}

	// A request sleeping in backoff when the key is rejected stops too.
	release := make(chan struct{})
	tt = &fakeTeacher{fn: func(ctx context.Context, call int) (Response, error) {
		if call == 0 {
			return Response{}, &Error{Kind: KindServer, Status: 500}
		}
		return Response{}, auth
	}}
	sleeping := make(chan struct{})
	f = NewFlow(tt, FlowOptions{Sleep: func(ctx context.Context, d time.Duration) error {
		close(sleeping)
		<-release
		return nil
	}})
	done := make(chan error)
	go func() { _, _, err := f.Do(context.Background(), Request{}, 10); done <- err }()
	<-sleeping
	if _, _, err := f.Do(context.Background(), Request{}, 10); err != auth {
		t.Fatalf("second request: %v", err)
	}
	close(release)
	if err := <-done; err != auth {
		t.Fatalf("retried request: %v", err)
	}
	if n := tt.calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

func TestFlowRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter time.Duration
		base       time.Duration
		want       time.Duration
	}{
		{"retry-after longer than backoff", 5 * time.Second, 100 * time.Millisecond, 5 * time.Second},
		{"backoff longer than retry-after", time.Second, 3 * time.Second, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := fakeFlow(scripted(&Error{Kind: KindRateLimit, Status: 429, RetryAfter: tc.retryAfter}),
				FlowOptions{BaseDelay: tc.base}, 1)
			_, attempts, err := f.Do(context.Background(), Request{}, 10)
			if err != nil || len(attempts) != 1 || attempts[0].Wait != tc.want {
				t.Fatalf("%v %v, want one attempt waiting %v", attempts, err, tc.want)
			}
		})
	}

	// Other requests are held for the retry-after too.
	f, clk := fakeFlow(scripted(&Error{Kind: KindRateLimit, Status: 429, RetryAfter: 30 * time.Second}),
		FlowOptions{MaxRetries: -1}, 0)
	if _, _, err := f.Do(context.Background(), Request{}, 10); err == nil {
		t.Fatal("want the 429")
	}
	if _, _, err := f.Do(context.Background(), Request{}, 10); err != nil {
		t.Fatal(err)
	}
	if got := clk.Slept(); !reflect.DeepEqual(got, []time.Duration{30 * time.Second}) {
		t.Errorf("slept %v, want the 30s pause", got)
	}
	if s := f.Stats(); s.Waited != 30*time.Second {
		t.Errorf("waited %v", s.Waited)
	}
}

func TestFlowRequestsPerMinute(t *testing.T) {
	f, clk := fakeFlow(scripted(), FlowOptions{RequestsPerMinute: 120}, 1)
	start := clk.Now()
	for range 125 {
		if _, _, err := f.Do(context.Background(), Request{}, 1); err != nil {
			t.Fatal(err)
		}
	}
	// 120 at once, then 2 per second.
	if got := clk.Now().Sub(start); got != 2500*time.Millisecond {
		t.Errorf("125 requests at 120/min took %v, want 2.5s", got)
	}
	if s := f.Stats(); s.Waited != 2500*time.Millisecond || s.Requests != 125 {
		t.Errorf("stats %+v", s)
	}
}

func TestFlowTokensPerMinute(t *testing.T) {
	for _, tc := range []struct {
		name      string
		est, used int
		n         int
		want      time.Duration
	}{
		// 6000/min = 100/s: six 1000-token requests at once, then one per 10s.
		{"estimate used", 1000, 1000, 8, 20 * time.Second},
		// The worst case is charged up front and the surplus given back.
		{"corrected by usage", 3000, 500, 6, 0}, // uncorrected, the 3rd would wait
		{"usage unknown keeps the estimate", 3000, 0, 3, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := &fakeTeacher{fn: func(context.Context, int) (Response, error) {
				return Response{InputTokens: tc.used / 2, OutputTokens: tc.used - tc.used/2}, nil
			}}
			f, clk := fakeFlow(tt, FlowOptions{TokensPerMinute: 6000}, 1)
			start := clk.Now()
			for range tc.n {
				if _, _, err := f.Do(context.Background(), Request{}, tc.est); err != nil {
					t.Fatal(err)
				}
			}
			if got := clk.Now().Sub(start); got != tc.want {
				t.Errorf("took %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFlowEstimateFromRequest(t *testing.T) {
	req := Request{Messages: []Message{{"user", "hello"}}, MaxTokens: 100}
	est := estimateTokens(req)
	if est <= 100 {
		t.Fatalf("estimate %d ignores the prompt", est)
	}
	// A bucket of 1.2 requests: the second waits for 0.8 of a request.
	noUsage := &fakeTeacher{fn: func(context.Context, int) (Response, error) { return Response{}, nil }}
	f, clk := fakeFlow(noUsage, FlowOptions{TokensPerMinute: 1.2 * float64(est)}, 1)
	start := clk.Now()
	for range 2 {
		if _, _, err := f.Do(context.Background(), req, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := clk.Now().Sub(start), 40*time.Second; got < want-time.Millisecond || got > want+time.Millisecond {
		t.Errorf("took %v, want %v", got, want)
	}
}

func TestFlowHeaderPause(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate RateInfo
		err  bool // carried by a 429 instead of an answer
		est  int
		want time.Duration
	}{
		{"no requests left", RateInfo{LimitRequests: 100, RemainingRequests: 0, ResetRequests: 7 * time.Second}, false, 10, 7 * time.Second},
		{"requests left", RateInfo{LimitRequests: 100, RemainingRequests: 5, ResetRequests: 7 * time.Second}, false, 10, 0},
		{"too few tokens", RateInfo{LimitTokens: 10000, RemainingTokens: 500, ResetTokens: 3 * time.Second}, false, 1000, 3 * time.Second},
		{"enough tokens", RateInfo{LimitTokens: 10000, RemainingTokens: 500, ResetTokens: 3 * time.Second}, false, 400, 0},
		{"from a 429", RateInfo{LimitRequests: 100, RemainingRequests: 0, ResetRequests: 4 * time.Second}, true, 10, 4 * time.Second},
		{"no headers", RateInfo{}, false, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := &fakeTeacher{fn: func(_ context.Context, call int) (Response, error) {
				if call > 0 {
					return Response{}, nil
				}
				if tc.err {
					return Response{}, &Error{Kind: KindRateLimit, Status: 429, Rate: tc.rate}
				}
				return Response{Rate: tc.rate}, nil
			}}
			f, clk := fakeFlow(tt, FlowOptions{MaxRetries: -1}, 0)
			f.Do(context.Background(), Request{}, tc.est)
			start := clk.Now()
			if _, _, err := f.Do(context.Background(), Request{}, tc.est); err != nil {
				t.Fatal(err)
			}
			if got := clk.Now().Sub(start); got != tc.want {
				t.Errorf("paused %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFlowConcurrencyLimit(t *testing.T) {
	var inFlight, peak atomic.Int64
	tt := &fakeTeacher{fn: func(context.Context, int) (Response, error) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		return Response{}, nil
	}}
	f := NewFlow(tt, FlowOptions{Concurrency: 3})
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			if _, _, err := f.Do(context.Background(), Request{}, 1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak in flight %d, want 3", p)
	}
	if s := f.Stats(); s.Requests != 40 {
		t.Errorf("requests %d", s.Requests)
	}
}

func TestFlowCancel(t *testing.T) {
	blocked := make(chan struct{})
	defer close(blocked)
	for _, tc := range []struct {
		name    string
		teacher *fakeTeacher
		opts    FlowOptions
		prime   bool // one request first, to fill the slot or empty the bucket
	}{
		{"waiting for the rate limit", scripted(), FlowOptions{RequestsPerMinute: 1}, true},
		{"sleeping in backoff", &fakeTeacher{fn: func(context.Context, int) (Response, error) {
			return Response{}, &Error{Kind: KindServer, Status: 500}
		}}, FlowOptions{BaseDelay: time.Hour, MaxDelay: time.Hour}, false},
		{"waiting for a slot", &fakeTeacher{fn: func(ctx context.Context, call int) (Response, error) {
			if call == 0 {
				<-blocked
			}
			return Response{}, nil
		}}, FlowOptions{Concurrency: 1}, true},
		{"inside the request", &fakeTeacher{fn: func(ctx context.Context, call int) (Response, error) {
			<-ctx.Done()
			return Response{}, ctx.Err()
		}}, FlowOptions{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Rand = func() float64 { return 1 }
			f := NewFlow(tc.teacher, tc.opts)
			if tc.prime {
				go f.Do(context.Background(), Request{}, 1)
				for tc.teacher.calls.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			start := time.Now()
			_, _, err := f.Do(ctx, Request{}, 1)
			if err != context.Canceled {
				t.Fatalf("err %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("returned after %v", d)
			}
		})
	}
}

// TestFlowOpenAIClient runs a Flow on the real client: a 429 with
// retry-after-ms, then a 500, then an answer.
func TestFlowOpenAIClient(t *testing.T) {
	var calls atomic.Int64
	srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.Header().Set("retry-after-ms", "30")
			writeJSON(w, 429, `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`)
		case 2:
			writeJSON(w, 500, `{"error":{"message":"oops","type":"server_error"}}`)
		default:
			writeJSON(w, 200, okAnswer)
		}
	})
	f := NewFlow(newTestOpenAI(t, srv.URL, nil), FlowOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	start := time.Now()
	resp, attempts, err := f.Do(context.Background(), Request{MaxTokens: 2, TopLogprobs: 2}, 0)
	if err != nil || resp.Text != "Hi!" || len(resp.Tokens) != 2 {
		t.Fatalf("%+v %v", resp, err)
	}
	if len(attempts) != 2 || attempts[0].Kind != KindRateLimit || attempts[0].Wait < 30*time.Millisecond ||
		attempts[1].Kind != KindServer || attempts[1].Status != 500 {
		t.Errorf("attempts %+v", attempts)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("retry-after-ms not honoured")
	}
}

func TestFlowFailedAttemptGivesTokensBack(t *testing.T) {
	f, _ := fakeFlow(scripted(&Error{Kind: KindServer, Status: 500}), FlowOptions{TokensPerMinute: 6000}, 0)
	if _, attempts, err := f.Do(context.Background(), Request{}, 6000); err != nil || len(attempts) != 1 {
		t.Fatal(attempts, err)
	}
	if s := f.Stats(); s.Waited != 0 {
		t.Errorf("the retry waited %v for tokens the failed attempt did not use", s.Waited)
	}
}
