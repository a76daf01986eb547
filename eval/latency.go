package eval

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/distillery/distillery/routes"
)

// LatencyStats summarise request durations.
type LatencyStats struct {
	N      int     `json:"n" doc:"Requests timed."`
	MeanMS float64 `json:"mean_ms" doc:"Mean latency in milliseconds."`
	P50MS  float64 `json:"p50_ms" doc:"Median latency (linear interpolation between ranks) in milliseconds."`
	P95MS  float64 `json:"p95_ms" doc:"95th percentile (linear interpolation between ranks) in milliseconds."`
	MaxMS  float64 `json:"max_ms" doc:"Slowest request in milliseconds."`
	// Tokens is the total of the per-request token counts (prompt +
	// completion), and TokensPerSec that total over the summed durations:
	// the throughput of requests served one at a time.
	Tokens       int64   `json:"tokens" doc:"Tokens (prompt + completion) of the timed requests."`
	TokensPerSec float64 `json:"tokens_per_s" doc:"tokens / total request seconds: throughput serving one request at a time (0 without token counts)."`
}

// Latency summarises durations; tokens (optional, parallel to durations)
// are the tokens each request processed (prompt + completion).
func Latency(durations []time.Duration, tokens []int) (LatencyStats, error) {
	if tokens != nil && len(tokens) != len(durations) {
		return LatencyStats{}, fmt.Errorf("eval: %d token counts for %d durations", len(tokens), len(durations))
	}
	s := LatencyStats{N: len(durations)}
	if len(durations) == 0 {
		return s, nil
	}
	ms := make([]float64, len(durations))
	var total time.Duration
	for i, d := range durations {
		if d < 0 {
			return LatencyStats{}, fmt.Errorf("eval: negative duration %v of request %d", d, i)
		}
		ms[i] = float64(d) / float64(time.Millisecond)
		s.MeanMS += ms[i]
		total += d
	}
	s.MeanMS /= float64(len(ms))
	sort.Float64s(ms)
	s.P50MS = Percentile(ms, 50)
	s.P95MS = Percentile(ms, 95)
	s.MaxMS = ms[len(ms)-1]
	for i, t := range tokens {
		if t < 0 {
			return LatencyStats{}, fmt.Errorf("eval: negative token count %d of request %d", t, i)
		}
		s.Tokens += int64(t)
	}
	s.TokensPerSec = TokensPerSecond(s.Tokens, total)
	return s, nil
}

// Percentile returns the p-th percentile (0-100) of ascending values by
// linear interpolation between the closest ranks (NumPy's default):
// rank = p/100·(n−1). It is 0 for no values.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := math.Min(math.Max(p, 0), 100) / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (rank-float64(lo))*(sorted[hi]-sorted[lo])
}

// TokensPerSecond is tokens over elapsed seconds (0 when elapsed is 0).
func TokensPerSecond(tokens int64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(tokens) / elapsed.Seconds()
}

// USDPerMTok is the hardware cost of a million tokens: usdPerHour over the
// tokens served in an hour at tokensPerSec. It is 0 when either is not
// positive (unknown).
func USDPerMTok(usdPerHour, tokensPerSec float64) float64 {
	if usdPerHour <= 0 || tokensPerSec <= 0 {
		return 0
	}
	return usdPerHour / (tokensPerSec * 3600) * 1e6
}

// TeacherUSDPer1MRequests is what a million requests cost at the teacher's
// prices, with meanIn and meanOut tokens per request:
// 1e6 · (meanIn·input + meanOut·output) / 1e6 = meanIn·input + meanOut·output.
func TeacherUSDPer1MRequests(meanIn, meanOut float64, p routes.Price) float64 {
	return meanIn*p.InputPerMTok + meanOut*p.OutputPerMTok
}

// StudentUSDPer1MRequests is what a million requests of meanTokens tokens
// (prompt + completion) cost at usdPerMTok.
func StudentUSDPer1MRequests(meanTokens, usdPerMTok float64) float64 {
	return meanTokens * usdPerMTok
}
