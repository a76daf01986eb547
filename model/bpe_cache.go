package model

import (
	"strings"
	"sync"
)

// bpeCacheMaxWord is the longest word (in bytes) whose result is cached.
const bpeCacheMaxWord = 256

// bpeCacheMaxEntries bounds the cache; it is emptied when full.
const bpeCacheMaxEntries = 1 << 16

// bpeCache remembers the ids of recently seen words. It is safe for
// concurrent use.
type bpeCache struct {
	mu sync.RWMutex
	m  map[string][]int
}

func bpeNewCache() *bpeCache { return &bpeCache{m: make(map[string][]int)} }

func (c *bpeCache) get(word string) ([]int, bool) {
	c.mu.RLock()
	ids, ok := c.m[word]
	c.mu.RUnlock()
	return ids, ok
}

func (c *bpeCache) put(word string, ids []int) {
	cp := append([]int(nil), ids...)
	c.mu.Lock()
	if len(c.m) >= bpeCacheMaxEntries {
		clear(c.m)
	}
	c.m[strings.Clone(word)] = cp // word may be a slice of a large text
	c.mu.Unlock()
}
