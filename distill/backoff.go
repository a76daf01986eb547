package distill

import (
	"context"
	"math"
	"time"
)

// backoff is the wait before retry number n (0 for the first retry): full
// jitter, a uniform draw in [0, min(base*2^n, maxDelay)), so that clients
// refused together do not come back together.
func backoff(n int, base, maxDelay time.Duration, rnd func() float64) time.Duration {
	ceiling := float64(base) * math.Pow(2, float64(n))
	if ceiling > float64(maxDelay) || math.IsInf(ceiling, 0) {
		ceiling = float64(maxDelay)
	}
	return time.Duration(ceiling * rnd())
}

// sleepCtx waits for d or until ctx ends, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
