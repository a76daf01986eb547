package distill

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bucket is a token bucket holding one minute's worth, refilled
// continuously. Takers reserve: the level may go below zero, and a taker
// waits until its debt is paid, so that waiters are served in order and a
// large request is not starved by small ones.
type bucket struct {
	rate     float64 // per second
	capacity float64
	level    float64
	last     time.Time
}

// newBucket returns a full bucket, or nil (no limit) for perMinute <= 0.
func newBucket(perMinute float64, now time.Time) *bucket {
	if perMinute <= 0 {
		return nil
	}
	return &bucket{rate: perMinute / 60, capacity: perMinute, level: perMinute, last: now}
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.level = math.Min(b.capacity, b.level+dt.Seconds()*b.rate)
		b.last = now
	}
}

// take charges n, at most the capacity so that a request larger than a
// minute's worth still goes once the bucket is full, and returns what it
// charged and how long until the debt is paid.
func (b *bucket) take(now time.Time, n float64) (float64, time.Duration) {
	b.refill(now)
	n = math.Min(n, b.capacity)
	b.level -= n
	if b.level >= 0 {
		return n, 0
	}
	return n, time.Duration(math.Ceil(-b.level / b.rate * float64(time.Second)))
}

// give returns n to the bucket (a negative n charges more), keeping the
// level within one minute's worth either way.
func (b *bucket) give(now time.Time, n float64) {
	b.refill(now)
	b.level = math.Max(-b.capacity, math.Min(b.capacity, b.level+n))
}

// providerView is what the provider last said about one of its limits:
// remaining until a reset time. It is spent locally by each request and
// forgotten after the reset.
type providerView struct {
	remaining int
	until     time.Time
}

// take spends n and returns the zero time, or, when fewer than n remain,
// the reset time to wait for.
func (v *providerView) take(now time.Time, n int) time.Time {
	if !now.Before(v.until) {
		return time.Time{}
	}
	if v.remaining >= n {
		v.remaining -= n
		return time.Time{}
	}
	return v.until
}

// limiter combines the configured RPM/TPM buckets with what the provider's
// headers said and with pauses the provider asked for (retry-after).
type limiter struct {
	mu         sync.Mutex
	now        func() time.Time
	req, tok   *bucket // nil: unlimited
	reqView    providerView
	tokView    providerView
	pauseUntil time.Time
}

// ticket is what a request took from the limiter, to settle or give back.
type ticket struct{ tokens float64 }

func newLimiter(rpm, tpm float64, now func() time.Time) *limiter {
	t := now()
	return &limiter{now: now, req: newBucket(rpm, t), tok: newBucket(tpm, t)}
}

// wait takes one request and est tokens, sleeping until all limits allow
// it. On ctx's end it gives back what it took and returns the error.
func (l *limiter) wait(ctx context.Context, est int, sleep func(context.Context, time.Duration) error) (ticket, time.Duration, error) {
	l.mu.Lock()
	now := l.now()
	var t ticket
	ready := now
	later := func(d time.Duration) {
		if at := now.Add(d); at.After(ready) {
			ready = at
		}
	}
	if l.req != nil {
		_, d := l.req.take(now, 1)
		later(d)
	}
	if l.tok != nil {
		var d time.Duration
		t.tokens, d = l.tok.take(now, float64(est))
		later(d)
	}
	for _, at := range []time.Time{l.reqView.take(now, 1), l.tokView.take(now, est)} {
		if at.After(ready) {
			ready = at
		}
	}
	l.mu.Unlock()

	var waited time.Duration
	for {
		l.mu.Lock()
		now := l.now()
		if l.pauseUntil.After(ready) {
			ready = l.pauseUntil
		}
		l.mu.Unlock()
		d := ready.Sub(now)
		if d <= 0 {
			return t, waited, nil
		}
		if err := sleep(ctx, d); err != nil {
			l.cancel(t)
			return ticket{}, waited, err
		}
		waited += d
	}
}

// cancel gives back a ticket whose request was not sent.
func (l *limiter) cancel(t ticket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.req != nil {
		l.req.give(now, 1)
	}
	if l.tok != nil {
		l.tok.give(now, t.tokens)
	}
}

// refund gives back a ticket's tokens after a failed attempt: the
// provider spent none on it, while the attempt still counts as a request.
func (l *limiter) refund(t ticket) {
	if l.tok == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tok.give(l.now(), t.tokens)
}

// settle corrects the token charge with the tokens a request really used
// (0: unknown, keep the estimate).
func (l *limiter) settle(t ticket, used int) {
	if l.tok == nil || used <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tok.give(l.now(), t.tokens-float64(used))
}

// observe learns from a reply's rate headers and retry-after. A limit
// header must be present (non-zero) for its remaining count to mean
// anything, since RateInfo's zero also means "absent".
func (l *limiter) observe(r RateInfo, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if r.LimitRequests > 0 && r.ResetRequests > 0 {
		l.reqView = providerView{remaining: r.RemainingRequests, until: now.Add(r.ResetRequests)}
	}
	if r.LimitTokens > 0 && r.ResetTokens > 0 {
		l.tokView = providerView{remaining: r.RemainingTokens, until: now.Add(r.ResetTokens)}
	}
	if retryAfter > 0 {
		if at := now.Add(retryAfter); at.After(l.pauseUntil) {
			l.pauseUntil = at
		}
	}
}

// estimateTokens is the worst case of a request when the caller gives no
// estimate: the bound on its input tokens plus the answer's max_tokens.
func estimateTokens(req Request) int { return maxInputTokens(req) + req.MaxTokens }

// headerInt reads a count header; absent or unreadable is 0.
func headerInt(h http.Header, name string) int {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		return max(n, 0)
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f < math.MaxInt32 {
		return int(f)
	}
	return 0
}

// headerDuration reads a duration header in Go's form ("1s", "6m0s",
// "20ms", "1.5s", as OpenAI sends) or as plain seconds.
func headerDuration(h http.Header, name string) time.Duration {
	return parseSeconds(strings.TrimSpace(h.Get(name)), true)
}

// parseSeconds reads "1.5" as seconds and, when goForm, "1m30s" too;
// negative or unreadable is 0.
func parseSeconds(v string, goForm bool) time.Duration {
	if v == "" {
		return 0
	}
	if goForm {
		if d, err := time.ParseDuration(v); err == nil {
			return max(d, 0)
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f > 1e9 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// headerResetTime reads an RFC 3339 reset time (Anthropic's) as the
// duration from now; a duration form is accepted too.
func headerResetTime(h http.Header, name string, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get(name))
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return max(t.Sub(now), 0)
	}
	return parseSeconds(v, true)
}

// retryAfter reads retry-after-ms (milliseconds) or else retry-after
// (seconds or an HTTP date); absent is 0.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f < 1e12 {
			return time.Duration(f * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("retry-after"))
	if d := parseSeconds(v, false); d > 0 {
		return d
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
