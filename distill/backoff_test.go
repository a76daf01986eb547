package distill

import (
	"context"
	"testing"
	"time"
)

func TestBackoffGrowthAndCap(t *testing.T) {
	base, maxDelay := 500*time.Millisecond, 10*time.Second
	for _, tc := range []struct {
		n    int
		rnd  float64
		want time.Duration
	}{
		{0, 1, 500 * time.Millisecond},
		{1, 1, time.Second},
		{2, 1, 2 * time.Second},
		{4, 1, 8 * time.Second},
		{5, 1, 10 * time.Second}, // capped
		{2000, 1, 10 * time.Second},
		{3, 0.5, 2 * time.Second},
		{3, 0, 0},
		{9, 0.25, 2500 * time.Millisecond},
	} {
		if got := backoff(tc.n, base, maxDelay, func() float64 { return tc.rnd }); got != tc.want {
			t.Errorf("backoff(%d, rand %v) = %v, want %v", tc.n, tc.rnd, got, tc.want)
		}
	}
}

func TestBackoffSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if err := sleepCtx(ctx, time.Minute); err != context.Canceled {
		t.Fatalf("err %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("sleep did not stop with ctx")
	}
	if err := sleepCtx(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
