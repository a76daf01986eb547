package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// premiumCap keeps premium at most Share of the traffic (requests or
// tokens) over a rolling window. The window is cut into buckets (1,440 for
// a day: one a minute); a bucket older than the window is dropped whole.
//
// Admission is exact on the request basis: a premium request is admitted
// only when premium+1 <= share × total with the request itself counted in
// total, so the share never goes above the cap, and every premium request
// that fits is admitted. On the token basis the admission uses the
// request's estimated tokens and the counts are settled with the real ones
// afterwards, so the share can overshoot by one request's estimation error.
//
// The counters persist to a JSON file, written atomically (temp file,
// fsync, rename) at most every persistEvery and on Close, so a restart
// resumes the window where it was (a crash loses at most persistEvery of
// counts).
type premiumCap struct {
	share   float64
	tokens  bool
	window  time.Duration
	path    string
	now     func() time.Time
	mu      sync.Mutex
	buckets []capBucket
	total   float64 // sums over the live buckets
	premium float64
	dirty   bool
	persist *flusher // saves the state every persistEvery when path is set
}

type capBucket struct {
	Start   int64   `json:"start"` // bucket index (unix time / bucket width)
	Total   float64 `json:"total"`
	Premium float64 `json:"premium"`
}

// capBuckets is how many buckets a window holds.
const capBuckets = 1440

var persistEvery = 200 * time.Millisecond

func newPremiumCap(cfg CapConfig, now func() time.Time) (*premiumCap, error) {
	if now == nil {
		now = time.Now
	}
	c := &premiumCap{share: cfg.Share, tokens: cfg.Basis == "tokens", window: cfg.Window, path: cfg.State, now: now}
	if c.window <= 0 {
		c.window = 24 * time.Hour
	}
	if c.path != "" {
		if err := c.load(); err != nil {
			return nil, err
		}
		c.persist = startFlusher(persistEvery, func() { c.save() })
	}
	return c, nil
}

func (c *premiumCap) width() time.Duration { return c.window / capBuckets }

// advance drops buckets that left the window; callers hold mu.
func (c *premiumCap) advance() int64 {
	cur := c.now().UnixNano() / int64(c.width())
	oldest := cur - capBuckets + 1
	i := 0
	for i < len(c.buckets) && c.buckets[i].Start < oldest {
		c.total -= c.buckets[i].Total
		c.premium -= c.buckets[i].Premium
		i++
	}
	if i > 0 {
		c.buckets = append(c.buckets[:0], c.buckets[i:]...)
		c.dirty = true
		if len(c.buckets) == 0 {
			c.total, c.premium = 0, 0 // no float drift on an empty window
		}
	}
	if n := len(c.buckets); n == 0 || c.buckets[n-1].Start != cur {
		c.buckets = append(c.buckets, capBucket{Start: cur})
	}
	return cur
}

func (c *premiumCap) last() *capBucket { return &c.buckets[len(c.buckets)-1] }

// count adds a request (weight 1, or its estimated tokens) to the total.
func (c *premiumCap) count(weight float64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	if !c.tokens {
		weight = 1
	}
	c.last().Total += weight
	c.total += weight
	c.dirty = true
}

// admit decides whether a request already counted may go to premium, with
// its weight (1, or estimated tokens). A disabled cap admits everything.
func (c *premiumCap) admit(weight float64) bool {
	if c == nil || c.share <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	if !c.tokens {
		weight = 1
	}
	if c.premium+weight > c.share*c.total+1e-9 {
		return false
	}
	c.last().Premium += weight
	c.premium += weight
	c.dirty = true
	return true
}

// settle replaces a request's estimated tokens by the real ones (token
// basis): delta is real minus estimate, added to the total and, when it
// went to premium, to premium.
func (c *premiumCap) settle(delta float64, premium bool) {
	if c == nil || !c.tokens || delta == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	b := c.last()
	b.Total += delta
	c.total += delta
	if premium {
		b.Premium += delta
		c.premium += delta
	}
	c.dirty = true
}

// stats returns the window's premium and total.
func (c *premiumCap) stats() (premium, total float64) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	return c.premium, c.total
}

type capState struct {
	Version  int         `json:"version"`
	Basis    string      `json:"basis"`
	WindowNS int64       `json:"window_ns"`
	Buckets  []capBucket `json:"buckets"`
}

func (c *premiumCap) basis() string {
	if c.tokens {
		return "tokens"
	}
	return "requests"
}

func (c *premiumCap) load() error {
	raw, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("premium cap state: %w", err)
	}
	var st capState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("premium cap state %s: %w", c.path, err)
	}
	if st.Basis != c.basis() || st.WindowNS != int64(c.window) {
		return nil // the cap changed: start a fresh window
	}
	c.buckets = st.Buckets
	for _, b := range c.buckets {
		c.total += b.Total
		c.premium += b.Premium
	}
	c.mu.Lock()
	c.advance()
	c.mu.Unlock()
	return nil
}

// save writes the state atomically when it changed.
func (c *premiumCap) save() error {
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	st := capState{Version: 1, Basis: c.basis(), WindowNS: int64(c.window), Buckets: append([]capBucket(nil), c.buckets...)}
	c.dirty = false
	c.mu.Unlock()
	raw, _ := json.Marshal(st)
	return writeAtomic(c.path, raw)
}

// Close stops persisting and writes the final state.
func (c *premiumCap) Close() error {
	if c == nil || c.persist == nil {
		return nil
	}
	c.persist.stop()
	c.persist = nil
	return c.save()
}

// writeAtomic writes data to path through a temp file, fsync and rename.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
