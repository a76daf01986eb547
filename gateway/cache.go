package gateway

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/json"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/distillery/distillery/openai"
)

// Embedder turns a request's text into a vector for the semantic cache.
type Embedder interface {
	Embed(ctx context.Context, text string) ([]float32, error)
	// ID names the embedding space; vectors of different IDs never meet.
	ID() string
}

// responseCache holds answers by scope. A scope is the API key, the model,
// the sampling parameters and the system prompt (scopeKey): a lookup only
// ever sees entries of its own scope, through the exact map (keyed by the
// scope and the whole conversation) or the scope's own HNSW index. Memory
// is bounded by an LRU over the entries' bytes; entries expire after TTL.
type responseCache struct {
	mu        sync.Mutex
	maxBytes  int64
	bytes     int64
	ttl       time.Duration
	threshold float32
	now       func() time.Time
	lru       *list.List // front: most recent; values *cacheEntry
	exact     map[[32]byte]*cacheEntry
	scopes    map[scopeID]*scopeIndex
}

type scopeID struct {
	scope    [32]byte
	embedder string
}

type scopeIndex struct {
	idx     *hnsw
	entries map[int32]*cacheEntry
}

// cacheEntry is a cached answer.
type cacheEntry struct {
	key     [32]byte
	sid     scopeID
	node    int32 // -1: not in a semantic index
	body    []byte
	text    string
	model   string
	tier    string
	usage   openai.Usage
	size    int64
	expires time.Time
	elem    *list.Element
}

// entryOverhead approximates an entry's bookkeeping bytes.
const entryOverhead = 256

func newResponseCache(cfg CacheConfig, now func() time.Time) *responseCache {
	if now == nil {
		now = time.Now
	}
	return &responseCache{maxBytes: cfg.MaxBytes, ttl: cfg.TTL, threshold: float32(cfg.Threshold), now: now,
		lru: list.New(), exact: map[[32]byte]*cacheEntry{}, scopes: map[scopeID]*scopeIndex{}}
}

// scopeKey hashes what an answer depends on besides the conversation: the
// tenant (API key name), the model, every parameter but the messages and
// the streaming flags, and the system prompt.
func scopeKey(tenant string, req *openai.ChatCompletionRequest) [32]byte {
	p := *req
	p.Messages, p.Stream, p.StreamOptions, p.User = nil, false, nil, ""
	params, _ := json.Marshal(p)
	h := sha256.New()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write(params)
	h.Write([]byte{0})
	for _, m := range req.Messages {
		if m.Role == openai.RoleSystem || m.Role == openai.RoleDeveloper {
			h.Write([]byte(m.Content.String()))
			h.Write([]byte{0})
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// exactKey hashes the scope and the whole conversation.
func exactKey(scope [32]byte, req *openai.ChatCompletionRequest) [32]byte {
	msgs, _ := json.Marshal(req.Messages)
	h := sha256.New()
	h.Write(scope[:])
	h.Write(msgs)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// hit is a cache answer.
type hit struct {
	entry      *cacheEntry
	semantic   bool
	similarity float32
}

// getExact looks up the exact key.
func (c *responseCache) getExact(key [32]byte) *hit {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.exact[key]
	if !ok {
		return nil
	}
	if c.now().After(e.expires) {
		c.removeLocked(e)
		return nil
	}
	c.lru.MoveToFront(e.elem)
	return &hit{entry: e, similarity: 1}
}

// getSemantic finds the nearest entry of the scope at or above the
// threshold.
func (c *responseCache) getSemantic(sid scopeID, vec []float32) *hit {
	c.mu.Lock()
	si := c.scopes[sid]
	c.mu.Unlock()
	if si == nil {
		return nil
	}
	res := si.idx.search(vec, 4)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, r := range res {
		if r.dist < c.threshold {
			break
		}
		e := si.entries[r.id]
		if e == nil {
			continue
		}
		if now.After(e.expires) {
			c.removeLocked(e)
			continue
		}
		c.lru.MoveToFront(e.elem)
		return &hit{entry: e, semantic: true, similarity: r.dist}
	}
	return nil
}

// put stores an answer under its exact key and, with a vector, in the
// scope's semantic index.
func (c *responseCache) put(key [32]byte, sid scopeID, vec []float32, body []byte, text, model, tier string, us openai.Usage) {
	size := int64(len(body)+len(text)+4*len(vec)) + entryOverhead
	if size > c.maxBytes/4 {
		return // one answer may not take a quarter of the cache
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.exact[key]; ok {
		c.removeLocked(old)
	}
	e := &cacheEntry{key: key, sid: sid, node: -1, body: body, text: text, model: model, tier: tier, usage: us, size: size, expires: c.now().Add(c.ttl)}
	if vec != nil {
		si := c.scopes[sid]
		if si == nil {
			si = &scopeIndex{idx: newHNSW(16, 100, 100, 1), entries: map[int32]*cacheEntry{}}
			c.scopes[sid] = si
		}
		e.node = si.idx.add(vec)
		si.entries[e.node] = e
	}
	e.elem = c.lru.PushFront(e)
	c.exact[key] = e
	c.bytes += size
	for c.bytes > c.maxBytes {
		c.removeLocked(c.lru.Back().Value.(*cacheEntry))
	}
}

// removeLocked drops an entry; callers hold mu.
func (c *responseCache) removeLocked(e *cacheEntry) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	if c.exact[e.key] == e {
		delete(c.exact, e.key)
	}
	c.bytes -= e.size
	if e.node < 0 {
		return
	}
	si := c.scopes[e.sid]
	if si == nil {
		return
	}
	delete(si.entries, e.node)
	si.idx.remove(e.node)
	if len(si.entries) == 0 {
		delete(c.scopes, e.sid)
		return
	}
	if live, dead := si.idx.size(); dead > 2*live+64 {
		c.rebuildLocked(si)
	}
}

// rebuildLocked re-indexes a scope's live entries without the deleted nodes.
func (c *responseCache) rebuildLocked(si *scopeIndex) {
	idx := newHNSW(16, 100, 100, 1)
	entries := make(map[int32]*cacheEntry, len(si.entries))
	for _, e := range si.entries {
		old := e.node
		si.idx.mu.RLock()
		v := si.idx.nodes[old].vec
		si.idx.mu.RUnlock()
		e.node = idx.add(v)
		entries[e.node] = e
	}
	si.idx, si.entries = idx, entries
}

// stats reports the cache's entries and bytes.
func (c *responseCache) stats() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}

// hashedEmbedder embeds text without a model: word unigrams and bigrams
// and character trigrams, hashed with a sign into dim buckets, TF weighted
// and L2-normalised. It captures lexical overlap, not meaning.
type hashedEmbedder struct{ dim int }

func (e hashedEmbedder) ID() string { return "hashed" }

func (e hashedEmbedder) Embed(_ context.Context, text string) ([]float32, error) {
	v := make([]float32, e.dim)
	add := func(s string, w float32) {
		h := fnv.New64a()
		h.Write([]byte(s))
		x := h.Sum64()
		i := int(x % uint64(e.dim))
		if x>>63 == 1 {
			w = -w
		}
		v[i] += w
	}
	lower := strings.ToLower(text)
	words := strings.FieldsFunc(lower, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '\'' })
	for i, w := range words {
		add("w:"+w, 1)
		if i > 0 {
			add("b:"+words[i-1]+"_"+w, 1)
		}
		padded := "^" + w + "$"
		for j := 0; j+3 <= len(padded); j++ {
			add("c:"+padded[j:j+3], 0.3)
		}
	}
	normalize(v)
	return v, nil
}

// upstreamEmbedder uses an OpenAI /embeddings endpoint.
type upstreamEmbedder struct{ u *upstream }

func (e upstreamEmbedder) ID() string { return "endpoint:" + e.u.cfg.BaseURL + "/" + e.u.cfg.Model }

func (e upstreamEmbedder) Embed(ctx context.Context, text string) ([]float32, error) {
	v, err := e.u.embed(ctx, text)
	if err != nil {
		return nil, err
	}
	normalize(v)
	return v, nil
}

// cosine of two vectors (not assumed normalised).
func cosine(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return d / math.Sqrt(na*nb)
}
