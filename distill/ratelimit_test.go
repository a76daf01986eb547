package distill

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestRateLimitHeaderParsing(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{
		{"1s", time.Second}, {"6m0s", 6 * time.Minute}, {"20ms", 20 * time.Millisecond},
		{"1.5s", 1500 * time.Millisecond}, {"1h2m3s", time.Hour + 2*time.Minute + 3*time.Second},
		{"2", 2 * time.Second}, {"0.25", 250 * time.Millisecond}, {"", 0}, {"soon", 0}, {"-1s", 0},
	} {
		h := http.Header{"X-Ratelimit-Reset-Tokens": {tc.value}}
		if got := headerDuration(h, "x-ratelimit-reset-tokens"); got != tc.want {
			t.Errorf("duration %q = %v, want %v", tc.value, got, tc.want)
		}
	}
	for _, tc := range []struct {
		header map[string]string
		want   time.Duration
	}{
		{map[string]string{"retry-after": "3"}, 3 * time.Second},
		{map[string]string{"retry-after": "0.5"}, 500 * time.Millisecond},
		{map[string]string{"retry-after": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{map[string]string{"retry-after": now.Add(-time.Hour).Format(http.TimeFormat)}, 0},
		{map[string]string{"retry-after-ms": "250", "retry-after": "9"}, 250 * time.Millisecond},
		{map[string]string{"retry-after-ms": "junk", "retry-after": "9"}, 9 * time.Second},
		{map[string]string{"retry-after": "whenever"}, 0},
		{nil, 0},
	} {
		h := http.Header{}
		for k, v := range tc.header {
			h.Set(k, v)
		}
		if got := retryAfter(h, now); got != tc.want {
			t.Errorf("retry-after %v = %v, want %v", tc.header, got, tc.want)
		}
	}
	h := http.Header{}
	h.Set("reset", now.Add(1500*time.Millisecond).Format(time.RFC3339Nano))
	if got := headerResetTime(h, "reset", now); got != 1500*time.Millisecond {
		t.Errorf("RFC 3339 reset = %v", got)
	}
	h.Set("n", "12.0")
	h.Set("bad", "x")
	if headerInt(h, "n") != 12 || headerInt(h, "bad") != 0 || headerInt(h, "absent") != 0 {
		t.Error("headerInt")
	}
}

// fakeClock is a clock that only moves when someone sleeps on it.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept = append(c.slept, d)
	return nil
}

func (c *fakeClock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

func TestRateLimitBucket(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(120, 0, clk.Now) // 2 per second, 120 at once
	var waits []time.Duration
	for range 123 {
		_, w, err := l.wait(context.Background(), 1, clk.Sleep)
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
	}
	for i, w := range waits[:120] {
		if w != 0 {
			t.Fatalf("request %d waited %v inside the burst", i, w)
		}
	}
	for i, w := range waits[120:] {
		if w != 500*time.Millisecond {
			t.Errorf("request %d waited %v, want 500ms", 120+i, w)
		}
	}
}

func TestRateLimitOversizedRequest(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(0, 600, clk.Now) // 10 tokens/s
	// Larger than a minute's worth: goes at once while the bucket is full...
	if _, w, _ := l.wait(context.Background(), 5000, clk.Sleep); w != 0 {
		t.Fatalf("first oversized request waited %v", w)
	}
	// ...and the next one waits for the bucket to fill again, not forever.
	if _, w, _ := l.wait(context.Background(), 5000, clk.Sleep); w != time.Minute {
		t.Fatalf("second oversized request waited %v, want 1m", w)
	}
}

func TestRateLimitCancelGivesBack(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(60, 0, clk.Now)
	for range 60 {
		l.wait(context.Background(), 1, clk.Sleep)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.wait(ctx, 1, clk.Sleep); err != context.Canceled {
		t.Fatalf("err %v", err)
	}
	// The cancelled reservation was returned: the next waits 1s, not 2s.
	if _, w, _ := l.wait(context.Background(), 1, clk.Sleep); w != time.Second {
		t.Fatalf("waited %v, want 1s", w)
	}
}
