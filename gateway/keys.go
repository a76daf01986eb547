package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/distillery/distillery/openai"
)

// HashKey is the hex sha256 of an API key, as gateway.yaml stores it.
func HashKey(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// apiKey is one configured key with its limits and spend.
type apiKey struct {
	name   string
	hash   [32]byte
	rpm    int
	budget float64

	mu     sync.Mutex
	tokens float64 // rate-limit bucket
	last   time.Time
	day    int64   // day (UTC) the spend counts for
	spent  float64 // settled spend today
	held   float64 // reserved for calls in flight
}

// keyring authenticates requests; with no keys it lets everyone in as
// tenant "anonymous".
type keyring struct {
	byHash map[[32]byte]*apiKey
	open   *apiKey
	now    func() time.Time
}

func newKeyring(cfg []KeyConfig, now func() time.Time) *keyring {
	if now == nil {
		now = time.Now
	}
	k := &keyring{byHash: map[[32]byte]*apiKey{}, now: now}
	for _, c := range cfg {
		var h [32]byte
		b, _ := hex.DecodeString(strings.ToLower(c.SHA256))
		copy(h[:], b)
		k.byHash[h] = &apiKey{name: c.Name, hash: h, rpm: c.RPM, budget: c.BudgetUSDPerDay, tokens: float64(c.RPM)}
	}
	if len(cfg) == 0 {
		k.open = &apiKey{name: "anonymous"}
	}
	return k
}

// auth finds the request's key from "Authorization: Bearer KEY" (or
// x-api-key). It never logs or keeps the key itself.
func (k *keyring) auth(r *http.Request) (*apiKey, *apiError) {
	if k.open != nil {
		return k.open, nil
	}
	key := ""
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		key = strings.TrimSpace(a[7:])
	} else {
		key = r.Header.Get("X-Api-Key")
	}
	if key == "" {
		return nil, &apiError{status: http.StatusUnauthorized, typ: openai.InvalidRequestError, code: "missing_api_key",
			msg: "You didn't provide an API key. Provide it as 'Authorization: Bearer YOUR_KEY'."}
	}
	h := sha256.Sum256([]byte(key))
	ak, ok := k.byHash[h]
	if !ok || subtle.ConstantTimeCompare(ak.hash[:], h[:]) != 1 {
		return nil, &apiError{status: http.StatusUnauthorized, typ: openai.InvalidRequestError, code: "invalid_api_key",
			msg: "Incorrect API key provided."}
	}
	return ak, nil
}

// allow takes one request from the key's per-minute bucket.
func (k *apiKey) allow(now time.Time) bool {
	if k.rpm <= 0 {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.last.IsZero() {
		k.tokens = min(float64(k.rpm), k.tokens+now.Sub(k.last).Minutes()*float64(k.rpm))
	}
	k.last = now
	if k.tokens < 1 {
		return false
	}
	k.tokens--
	return true
}

func (k *apiKey) roll(now time.Time) {
	if d := now.UTC().Unix() / 86400; d != k.day {
		k.day, k.spent = d, 0
	}
}

// reserve holds usd of the key's daily budget for a call about to be made;
// false when it does not fit.
func (k *apiKey) reserve(usd float64, now time.Time) bool {
	if k.budget <= 0 {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.roll(now)
	if k.spent+k.held+usd > k.budget {
		return false
	}
	k.held += usd
	return true
}

// settle replaces a reservation by the real cost.
func (k *apiKey) settle(reserved, actual float64, now time.Time) {
	if k.budget <= 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.roll(now)
	k.held = max(0, k.held-reserved)
	k.spent += actual
}
