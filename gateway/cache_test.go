package gateway

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/distillery/distillery/openai"
)

// TestHNSWRecall compares the index's 10 nearest neighbours with brute
// force on clustered vectors (as embeddings are).
func TestHNSWRecall(t *testing.T) {
	for _, clustered := range []bool{true, false} {
		rng := rand.New(rand.NewPCG(7, 7))
		const n, dim, k, queries = 3000, 64, 10, 200
		centers := make([][]float32, 30)
		for i := range centers {
			centers[i] = randVec(rng, dim, nil, 0)
		}
		sample := func() []float32 {
			if clustered {
				return randVec(rng, dim, centers[rng.IntN(len(centers))], 1)
			}
			return randVec(rng, dim, nil, 0) // uniform on the sphere: the hard case
		}
		vecs := make([][]float32, n)
		h := newHNSW(16, 100, 100, 1)
		for i := range vecs {
			vecs[i] = sample()
			h.add(vecs[i])
		}
		var found, total int
		for range queries {
			q := sample()
			type sc struct {
				id int
				s  float32
			}
			all := make([]sc, n)
			for i, v := range vecs {
				all[i] = sc{i, dot(q, v)}
			}
			sort.Slice(all, func(a, b int) bool { return all[a].s > all[b].s })
			want := map[int32]bool{}
			for _, a := range all[:k] {
				want[int32(a.id)] = true
			}
			for _, r := range h.search(q, k) {
				if want[r.id] {
					found++
				}
			}
			total += k
		}
		recall := float64(found) / float64(total)
		t.Logf("HNSW recall@%d over %d vectors (dim %d, clustered %v): %.4f", k, n, dim, clustered, recall)
		if recall < 0.95 {
			t.Errorf("recall %.3f < 0.95 (clustered %v)", recall, clustered)
		}
	}
}

func randVec(rng *rand.Rand, dim int, center []float32, noise float32) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
		if center != nil {
			v[i] = center[i] + noise*v[i]/float32(math.Sqrt(float64(dim)))
		}
	}
	normalize(v)
	return v
}

func TestCacheScopesLRUAndTTL(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	c := newResponseCache(CacheConfig{MaxBytes: 64 << 10, TTL: time.Minute, Threshold: 0.95}, clock.now)
	emb := hashedEmbedder{dim: 512}
	zero := 0.0
	req := func(text, system string) *openai.ChatCompletionRequest {
		r := &openai.ChatCompletionRequest{Model: "m", Temperature: &zero}
		if system != "" {
			r.Messages = append(r.Messages, openai.ChatMessage{Role: "system", Content: openai.TextContent(system)})
		}
		r.Messages = append(r.Messages, openai.ChatMessage{Role: "user", Content: openai.TextContent(text)})
		return r
	}
	put := func(tenant string, r *openai.ChatCompletionRequest, answer string) {
		s := scopeKey(tenant, r)
		v, _ := emb.Embed(context.Background(), inputText(r.Messages))
		c.put(exactKey(s, r), scopeID{s, emb.ID()}, v, []byte(answer), answer, "m", TierPremium, openai.Usage{})
	}
	get := func(tenant string, r *openai.ChatCompletionRequest) *hit {
		s := scopeKey(tenant, r)
		if h := c.getExact(exactKey(s, r)); h != nil {
			return h
		}
		v, _ := emb.Embed(context.Background(), inputText(r.Messages))
		return c.getSemantic(scopeID{s, emb.ID()}, v)
	}
	base := req("what is the return policy for opened coffee bags", "")
	put("a", base, "A1")
	if h := get("a", base); h == nil || h.semantic || string(h.entry.body) != "A1" {
		t.Fatalf("exact: %+v", h)
	}
	if h := get("a", req("What is the return policy for opened coffee bags?", "")); h == nil || !h.semantic {
		t.Errorf("near-duplicate missed")
	}
	// Other tenants, system prompts and parameters never see it.
	if get("b", base) != nil {
		t.Error("crossed tenants")
	}
	if get("a", req("what is the return policy for opened coffee bags", "You are a pirate")) != nil {
		t.Error("crossed system prompts")
	}
	hot := *base
	one := 1.0
	hot.Temperature = &one
	if get("a", &hot) != nil {
		t.Error("crossed parameters")
	}
	// TTL.
	clock.add(2 * time.Minute)
	if get("a", base) != nil {
		t.Error("expired entry served")
	}
	// LRU by bytes: the memory stays under the bound.
	for i := range 2000 {
		put("a", req(fmt.Sprintf("question number %d about tea", i), ""), strings.Repeat("x", 500))
	}
	n, b := c.stats()
	if b > 64<<10 || n == 0 || n >= 2000 {
		t.Errorf("cache holds %d entries, %d bytes", n, b)
	}
	if get("a", req("question number 1999 about tea", "")) == nil {
		t.Error("most recent entry evicted")
	}
}

// paraphrases are pairs that should hit; nearMisses are pairs that must not
// (negations, other products, other quantities).
var paraphrases = [][2]string{
	{"What is your return policy for opened coffee bags?", "what is your return policy for opened coffee bags"},
	{"How long does shipping to Canada take?", "How long does shipping to Canada usually take?"},
	{"Can I change the delivery address of my order?", "Can I change the delivery address on my order?"},
	{"Do you sell decaf green tea?", "do you sell decaf green tea ?"},
	{"Is the dark roast coffee fair trade certified?", "Is your dark roast coffee fair trade certified?"},
	{"How do I cancel my subscription?", "How can I cancel my subscription?"},
	{"Where can I find my invoice?", "Where do I find my invoice?"},
	{"Does the oolong tea contain caffeine?", "Does the oolong tea have caffeine?"},
	{"My package arrived damaged, what should I do?", "My package arrived damaged. What should I do?"},
	{"Are the almond cookies gluten free?", "Are your almond cookies gluten free?"},
	{"What payment methods do you accept?", "Which payment methods do you accept?"},
	{"Can I get a refund for a late delivery?", "Can I get a refund for a delivery that was late?"},
}

var nearMisses = [][2]string{
	{"Is the dark roast coffee fair trade certified?", "Is the dark roast coffee not fair trade certified?"},
	{"Do you sell decaf green tea?", "Do you sell decaf black tea?"},
	{"Are the almond cookies gluten free?", "Are the peanut cookies gluten free?"},
	{"How long does shipping to Canada take?", "How long does shipping to Mexico take?"},
	{"Can I get a refund for a late delivery?", "Can I get a refund for an early delivery?"},
	{"Does the oolong tea contain caffeine?", "Does the oolong tea contain sugar?"},
	{"What is your return policy for opened coffee bags?", "What is your return policy for unopened coffee bags?"},
	{"I want to order 2 bags of coffee", "I want to order 20 bags of coffee"},
	{"How do I cancel my subscription?", "How do I start my subscription?"},
	{"My package arrived damaged, what should I do?", "My package never arrived, what should I do?"},
}

// TestCacheParaphraseRates reports the semantic cache's hit rate on
// paraphrases and its false-hit rate on near misses, at the default
// threshold and a sweep: for the hashed embedder, and, when a trained
// student is at hand (DISTILLERY_EMBED_MODEL, else the base LM that `make
// teacher` builds in build/teacher/base-lm), for the student embedders
// (student: the mean final hidden state; student-tokens: the mean input
// token embedding). Only the hashed embedder's default threshold is held
// to zero false hits: the student's rates depend on the model.
func TestCacheParaphraseRates(t *testing.T) {
	rates := func(name string, emb Embedder, strict bool) {
		sim := func(p [2]string) float64 {
			a, err := emb.Embed(context.Background(), p[0])
			if err != nil {
				t.Fatal(err)
			}
			b, err := emb.Embed(context.Background(), p[1])
			if err != nil {
				t.Fatal(err)
			}
			return cosine(a, b)
		}
		var ps, ns []float64
		for _, p := range paraphrases {
			ps = append(ps, sim(p))
		}
		for _, p := range nearMisses {
			ns = append(ns, sim(p))
		}
		for _, th := range []float64{0.80, 0.85, 0.90, 0.95, 0.97, 0.99} {
			hits, false_ := 0, 0
			for _, s := range ps {
				if s >= th {
					hits++
				}
			}
			for _, s := range ns {
				if s >= th {
					false_++
				}
			}
			t.Logf("%s embedder, threshold %.2f: paraphrase hit rate %d/%d = %.2f, near-miss false-hit rate %d/%d = %.2f",
				name, th, hits, len(ps), float64(hits)/float64(len(ps)), false_, len(ns), float64(false_)/float64(len(ns)))
			if strict && th == 0.95 && false_ > 0 {
				t.Errorf("%s: false hits at the default threshold: %d", name, false_)
			}
		}
		sort.Float64s(ps)
		sort.Float64s(ns)
		t.Logf("%s embedder: paraphrase cosine min %.4f median %.4f; near-miss cosine median %.4f max %.4f",
			name, ps[0], ps[len(ps)/2], ns[len(ns)/2], ns[len(ns)-1])
	}
	rates("hashed", hashedEmbedder{dim: 512}, true)

	dir := os.Getenv("DISTILLERY_EMBED_MODEL")
	if dir == "" {
		dir = "../build/teacher/base-lm"
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil || raceBuild {
		t.Logf("no student model at %s (or a -race build): student embedders not measured", dir)
		return
	}
	for _, kind := range []string{"student-tokens", "student"} {
		s := &student{embedMode: kind}
		_, emb, err := s.loadModel(dir, dir, "embed")
		if err != nil {
			t.Fatal(err)
		}
		if emb == nil {
			t.Fatalf("%s: no embedder", kind)
		}
		rates(kind+" ("+filepath.Base(dir)+")", emb, false)
	}
}

func TestCacheOverHTTP(t *testing.T) {
	e := newRouted(t, "cache: {enabled: true, embedder: hashed}\n")
	body := chatBody("chat", hardText, `,"temperature":0`)
	resp, first := e.post(t, "/v1/chat/completions", body)
	if resp.Header.Get(HeaderCache) != "miss" {
		t.Fatalf("first: %v", resp.Header)
	}
	calls := e.premium.Calls.Load()
	var again []byte
	waitFor(t, func() bool {
		resp, again = e.post(t, "/v1/chat/completions", body)
		return resp.Header.Get(HeaderCache) == "hit-exact"
	})
	if string(again) != string(first) || resp.Header.Get(HeaderTier) != TierCache || e.premium.Calls.Load() != calls {
		t.Errorf("exact hit: %v %s", resp.Header, again)
	}
	resp, _ = e.post(t, "/v1/chat/completions", chatBody("chat", hardText+" ", `,"temperature":0`))
	if resp.Header.Get(HeaderCache) != "hit-semantic" {
		t.Errorf("semantic: %v", resp.Header)
	}
	// Default temperature (1), streams and tools skip the cache.
	for _, c := range []struct{ extra, want string }{
		{``, "skip:temperature"},
		{`,"temperature":0,"stream":true`, "skip:stream"},
		{`,"temperature":0,"tools":[{"type":"function","function":{"name":"f"}}]`, "skip:tools"},
	} {
		resp, _ = e.post(t, "/v1/chat/completions", chatBody("chat", hardText, c.extra))
		if resp.Header.Get(HeaderCache) != c.want {
			t.Errorf("%s: %v", c.extra, resp.Header.Get(HeaderCache))
		}
	}
}
