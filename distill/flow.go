package distill

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// FlowOptions shape the traffic to a teacher. Zero values take defaults.
type FlowOptions struct {
	Concurrency       int     // requests in flight at once (default 8)
	RequestsPerMinute float64 // 0: unlimited
	TokensPerMinute   float64 // 0: unlimited
	// MaxRetries is the number of retries after the first attempt
	// (default 6; negative: none).
	MaxRetries int
	// BaseDelay and MaxDelay shape the backoff: base*2^retry with full
	// jitter, capped at MaxDelay (defaults 500ms and 60s).
	BaseDelay, MaxDelay time.Duration
	// Sleep waits for d or until ctx ends (default: a timer); it is used for
	// backoff and rate-limit waits alike. Tests inject it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand is the jitter source in [0, 1), called from concurrent Do calls
	// (default math/rand/v2).
	Rand func() float64
	// Now is the limiter's clock (default time.Now).
	Now func() time.Time
}

// Attempt is one failed attempt of a request: how it failed and how long
// Flow waited before the next one (0 after the last).
type Attempt struct {
	Kind   ErrorKind
	Status int
	Wait   time.Duration
}

// FlowStats count what a Flow did.
type FlowStats struct {
	Requests       int               // attempts sent to the teacher
	Retries        int               // attempts that followed a failure
	RetriesByKind  map[ErrorKind]int // retries, by the failure before them
	FailuresByKind map[ErrorKind]int // requests that failed for good, by their last error
	Waited         time.Duration     // waiting for rate limits and provider pauses
	Backoff        time.Duration     // sleeping between attempts
}

// Flow sends requests to a teacher within a concurrency limit and rate
// limits, retrying what may succeed when sent again. It is safe for
// concurrent use.
type Flow struct {
	t     Teacher
	o     FlowOptions
	slots chan struct{}
	lim   *limiter

	mu    sync.Mutex
	stats FlowStats
	fatal *Error // an auth failure: every later request fails with it
}

// NewFlow returns a Flow in front of t.
func NewFlow(t Teacher, o FlowOptions) *Flow {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 6
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 60 * time.Second
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Flow{
		t:     t,
		o:     o,
		slots: make(chan struct{}, o.Concurrency),
		lim:   newLimiter(o.RequestsPerMinute, o.TokensPerMinute, o.Now),
		stats: FlowStats{RetriesByKind: map[ErrorKind]int{}, FailuresByKind: map[ErrorKind]int{}},
	}
}

// Do sends req, waiting for a concurrency slot and the rate limits, and
// retries retryable failures with backoff (longer when the provider says
// retry-after). estTokens is the request's worst case, prompt plus
// max_tokens (<= 0: estimated from req); it is charged up front and
// corrected with the real usage.
//
// It returns the response and the failed attempts before it. On failure
// the error is the last *Error, and the attempts include that last one;
// after an auth failure every call fails at once with that same error.
// The end of ctx returns ctx.Err() promptly, also while waiting.
func (f *Flow) Do(ctx context.Context, req Request, estTokens int) (Response, []Attempt, error) {
	if estTokens <= 0 {
		estTokens = estimateTokens(req)
	}
	var attempts []Attempt
	for try := 0; ; try++ {
		resp, err := f.once(ctx, req, estTokens)
		if err == nil {
			return resp, attempts, nil
		}
		if ctx.Err() != nil {
			return Response{}, attempts, ctx.Err()
		}
		e, sent := f.asError(err)
		if !sent { // the sticky error: nothing was sent
			return Response{}, attempts, e
		}
		if !e.Kind.Retryable() || try >= f.o.MaxRetries {
			attempts = append(attempts, Attempt{Kind: e.Kind, Status: e.Status})
			f.fail(e)
			return Response{}, attempts, e
		}
		wait := max(backoff(try, f.o.BaseDelay, f.o.MaxDelay, f.o.Rand), e.RetryAfter)
		attempts = append(attempts, Attempt{Kind: e.Kind, Status: e.Status, Wait: wait})
		f.mu.Lock()
		f.stats.Retries++
		f.stats.RetriesByKind[e.Kind]++
		f.stats.Backoff += wait
		f.mu.Unlock()
		if wait > 0 {
			if err := f.o.Sleep(ctx, wait); err != nil {
				return Response{}, attempts, ctxErr(ctx, err)
			}
		}
	}
}

// errSticky marks the return of the sticky fatal error by once.
type errSticky struct{ e *Error }

func (s errSticky) Error() string { return s.e.Error() }

// once sends one attempt: slot, rate limits, request, bookkeeping.
func (f *Flow) once(ctx context.Context, req Request, est int) (Response, error) {
	if e := f.fatalErr(); e != nil {
		return Response{}, errSticky{e}
	}
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return Response{}, ctx.Err()
	}
	defer func() { <-f.slots }()
	t, waited, err := f.lim.wait(ctx, est, f.o.Sleep)
	f.mu.Lock()
	f.stats.Waited += waited
	f.mu.Unlock()
	if err != nil {
		return Response{}, ctxErr(ctx, err)
	}
	if e := f.fatalErr(); e != nil {
		f.lim.cancel(t)
		return Response{}, errSticky{e}
	}
	f.mu.Lock()
	f.stats.Requests++
	f.mu.Unlock()
	resp, err := f.t.Complete(ctx, req)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			f.lim.observe(e.Rate, e.RetryAfter)
			f.lim.refund(t)
		}
		return Response{}, err
	}
	f.lim.observe(resp.Rate, 0)
	f.lim.settle(t, resp.InputTokens+resp.OutputTokens)
	return resp, nil
}

// asError turns a failure into an *Error; sent is false for the sticky
// error, which no request was sent for.
func (f *Flow) asError(err error) (e *Error, sent bool) {
	var s errSticky
	if errors.As(err, &s) {
		return s.e, false
	}
	if errors.As(err, &e) {
		return e, true
	}
	return &Error{Kind: KindOther, Msg: "teacher " + f.t.Model(), Err: err}, true
}

// fail counts a final failure and makes an auth failure sticky.
func (f *Flow) fail(e *Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.FailuresByKind[e.Kind]++
	if e.Kind == KindAuth && f.fatal == nil {
		f.fatal = e
	}
}

func (f *Flow) fatalErr() *Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal
}

// Stats returns a copy of the counters.
func (f *Flow) Stats() FlowStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.RetriesByKind = make(map[ErrorKind]int, len(f.stats.RetriesByKind))
	for k, v := range f.stats.RetriesByKind {
		s.RetriesByKind[k] = v
	}
	s.FailuresByKind = make(map[ErrorKind]int, len(f.stats.FailuresByKind))
	for k, v := range f.stats.FailuresByKind {
		s.FailuresByKind[k] = v
	}
	return s
}

// ctxErr prefers ctx's own error when ctx has ended, so that callers can
// tell an interruption from a failure.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
