package gateway

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/distillery/distillery/openai"
)

// LookupTimes are percentiles of the semantic cache's lookup.
type LookupTimes struct{ P50, P99, EmbedP50 time.Duration }

// SemanticLookupBench fills a cache scope with n entries (hashed
// embedder) and times q semantic lookups, embedding included. It backs
// gateway/loadbench's report and BenchmarkSemanticLookup.
func SemanticLookupBench(n, q int) LookupTimes {
	c := newResponseCache(CacheConfig{MaxBytes: 1 << 30, TTL: time.Hour, Threshold: 0.95}, nil)
	emb := hashedEmbedder{dim: 512}
	sid := scopeID{embedder: emb.ID()}
	for i := range n {
		text := fmt.Sprintf("question %d: how long does shipping of order %d to region %d take", i, i*7, i%13)
		v, _ := emb.Embed(context.Background(), text)
		var k [32]byte
		copy(k[:], fmt.Sprint(i))
		c.put(k, sid, v, []byte("{}"), "", "m", TierPremium, openai.Usage{})
	}
	var all, embed []time.Duration
	for i := range q {
		text := fmt.Sprintf("question %d: how long does shipping of order %d to region %d take?", i*3, i, i%7)
		t0 := time.Now()
		v, _ := emb.Embed(context.Background(), text)
		t1 := time.Now()
		c.getSemantic(sid, v)
		all = append(all, time.Since(t0))
		embed = append(embed, t1.Sub(t0))
	}
	p := func(d []time.Duration, q float64) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[int(float64(len(d)-1)*q)]
	}
	return LookupTimes{P50: p(all, 0.5), P99: p(all, 0.99), EmbedP50: p(embed, 0.5)}
}
