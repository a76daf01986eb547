package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/distillery/distillery/openai"
)

// cacheable says whether a request may use the cache, and why not. A
// request with temperature > 0 (unset counts as OpenAI's default of 1,
// except for a routed student model, whose answers are greedy), tools or
// streaming skips it unless the config allows them; so do logprobs and n > 1.
func (c *call) cacheable() (bool, string) {
	cfg := c.g.cfg.Cache
	temp := 1.0
	if c.req.Temperature != nil {
		temp = *c.req.Temperature
	} else if c.sv != nil && c.sv.routes != nil {
		temp = 0
	}
	switch {
	case c.g.cache == nil:
		return false, "off"
	case temp > 0 && !cfg.AllowTemperature:
		return false, "skip:temperature"
	case isSet(c.req.Tools) && !cfg.AllowTools:
		return false, "skip:tools"
	case c.req.Stream && !cfg.AllowStream:
		return false, "skip:stream"
	case c.req.N != nil && *c.req.N > 1:
		return false, "skip:n"
	case c.req.Logprobs:
		return false, "skip:logprobs"
	}
	return true, ""
}

// embedder is the semantic cache's embedder for this request: the
// configured one, or the student's (its version names the space).
func (c *call) embedder() Embedder {
	if c.g.embedder != nil {
		return c.g.embedder
	}
	if c.sv != nil && c.sv.embed != nil {
		return c.sv.embed
	}
	return hashedEmbedder{dim: 512}
}

// tryCache answers from the cache when it can; done reports that it did.
func (c *call) tryCache(ctx context.Context) (status int, done bool) {
	ok, why := c.cacheable()
	if !ok {
		c.rec.Cache = why
		return 0, false
	}
	c.toCache = true
	c.rec.Cache = "miss"
	scope := scopeKey(c.key.name, &c.req)
	c.exactKey = exactKey(scope, &c.req)
	h := c.g.cache.getExact(c.exactKey)
	if h == nil && *c.g.cfg.Cache.Semantic {
		emb := c.embedder()
		c.sid = scopeID{scope: scope, embedder: emb.ID()}
		vec, err := emb.Embed(ctx, inputText(c.req.Messages))
		if err != nil {
			c.g.log.Warn("cache: embedding failed; semantic lookup skipped", "err", err)
		} else {
			c.vec = vec
			h = c.g.cache.getSemantic(c.sid, vec)
		}
	}
	if h == nil {
		return 0, false
	}
	e := h.entry
	kind := "hit-exact"
	if h.semantic {
		kind = "hit-semantic"
		c.because("cache hit (cosine %.3f) of a %s answer", h.similarity, e.tier)
	} else {
		c.because("cache hit (exact) of a %s answer", e.tier)
	}
	c.rec.Cache = kind
	c.toCache = false
	c.answered(TierCache, e.model, openai.Usage{})
	c.rec.PromptTokens, c.rec.CompletionTokens = int64(e.usage.PromptTokens), int64(e.usage.CompletionTokens)
	c.w.Header().Set("X-Distillery-Cache-Similarity", fmt.Sprintf("%.4f", h.similarity))
	if c.req.Stream {
		return c.replayStream(e.body), true
	}
	c.writeBody(e.body)
	return http.StatusOK, true
}

// store caches an answer (in the background: the client is not kept
// waiting for the index insert). Without a vector (semantic lookup off,
// or the embedding failed) only the exact path gets it.
func (c *call) store(body []byte, text, model, tier string) {
	if !c.toCache {
		return
	}
	c.toCache = false
	cache, key, sid, vec := c.g.cache, c.exactKey, c.sid, c.vec
	var us openai.Usage
	var resp struct {
		Usage *openai.Usage `json:"usage"`
	}
	if json.Unmarshal(body, &resp) == nil && resp.Usage != nil {
		us = *resp.Usage
	}
	c.enqueue(func() { cache.put(key, sid, vec, body, text, model, tier, us) })
}

func (c *call) enqueue(f func()) {
	select {
	case c.g.cacheq <- f:
	default: // the cache is behind: skip this answer rather than wait
	}
}
