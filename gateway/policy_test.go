package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/distillery/distillery/datasets"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestPremiumCapReplay replays 10,000 mixed requests (30% want premium)
// over a simulated day against a 10% request cap, restarting the cap
// halfway through from its state file. After the first 1,000 requests the
// share stays within one point below the cap and never above it, and no
// premium request is refused while it would have fit.
func TestPremiumCapReplay(t *testing.T) {
	state := filepath.Join(t.TempDir(), "cap.json")
	clock := &fakeClock{t: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)}
	cfg := CapConfig{Share: 0.10, Basis: "requests", Window: 24 * time.Hour, OverCap: "downgrade", State: state}
	c, err := newPremiumCap(cfg, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var admitted, total, wanted, refusedUnder int
	worst, best := 1.0, 0.0
	for i := range 10000 {
		if i == 5000 {
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if c, err = newPremiumCap(cfg, clock.now); err != nil {
				t.Fatal(err)
			}
			if p, tot := c.stats(); int(p) != admitted || int(tot) != total {
				t.Fatalf("after restart: %v/%v, want %d/%d", p, tot, admitted, total)
			}
		}
		clock.add(8 * time.Second) // 10,000 requests over ~22 hours: all in the window
		c.count(1)
		total++
		if rng.Float64() < 0.3 {
			wanted++
			fits := float64(admitted+1) <= 0.10*float64(total)+1e-9
			if c.admit(1) {
				admitted++
			} else if fits {
				refusedUnder++
			}
		}
		share := float64(admitted) / float64(total)
		if share > 0.10+1e-12 {
			t.Fatalf("request %d: share %.4f above the cap", i, share)
		}
		if i >= 1000 {
			worst, best = min(worst, share), max(best, share)
		}
	}
	c.Close()
	t.Logf("premium wanted by %d of %d requests, admitted %d (%.2f%%); share after the first 1,000 in [%.4f, %.4f]",
		wanted, total, admitted, 100*float64(admitted)/float64(total), worst, best)
	if worst < 0.09 || best > 0.10 {
		t.Errorf("share out of [0.09, 0.10]: [%.4f, %.4f]", worst, best)
	}
	if refusedUnder > 0 {
		t.Errorf("%d premium requests refused while under the cap", refusedUnder)
	}
	// The window rolls: a day later the counts are gone.
	c2, _ := newPremiumCap(cfg, clock.now)
	defer c2.Close()
	clock.add(25 * time.Hour)
	if p, tot := c2.stats(); p != 0 || tot != 0 {
		t.Errorf("after a day: %v/%v", p, tot)
	}
}

func TestPremiumCapTokens(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	c, _ := newPremiumCap(CapConfig{Share: 0.5, Basis: "tokens", Window: time.Hour}, clock.now)
	c.count(100)
	if !c.admit(40) {
		t.Fatal("40 of 100 tokens refused under a 50% cap")
	}
	c.count(100)
	if c.admit(70) { // 110 > 100
		t.Fatal("110 of 200 tokens admitted under a 50% cap")
	}
	c.settle(-20, true) // the admitted one used 20 fewer tokens
	if p, tot := c.stats(); p != 20 || tot != 180 {
		t.Errorf("settled: %v/%v", p, tot)
	}
}

func TestPremiumCapOverHTTP(t *testing.T) {
	// downgrade: the first hard request fills the 50% cap's room, the next
	// is downgraded with a header saying so.
	e := newRouted(t, "premium_cap: {share: 0.5, over_cap: downgrade}\n")
	var tiers []string
	for range 4 {
		resp, _ := e.post(t, "/v1/chat/completions", chatBody("chat", hardText, ""))
		tiers = append(tiers, resp.Header.Get(HeaderTier))
		if resp.Header.Get(HeaderTier) == TierMid && !strings.Contains(resp.Header.Get(HeaderReason), "premium cap reached") {
			t.Errorf("downgrade without a reason: %v", resp.Header)
		}
	}
	if strings.Join(tiers, ",") != "mid,premium,mid,premium" {
		t.Errorf("tiers %v", tiers)
	}
	// refuse: 429 in OpenAI's shape.
	e = newRouted(t, "premium_cap: {share: 0.5, over_cap: refuse}\n")
	resp, body := e.post(t, "/v1/chat/completions", chatBody("chat", hardText, ""))
	if resp.StatusCode != 429 || !strings.Contains(string(body), "premium_cap_reached") {
		t.Errorf("refuse: %d %s", resp.StatusCode, body)
	}
	resp, _ = e.post(t, "/v1/chat/completions", chatBody("chat", hardText, ""))
	if resp.StatusCode != 200 || resp.Header.Get(HeaderTier) != TierPremium {
		t.Errorf("second: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestKeysRateLimitsAndBudgets(t *testing.T) {
	e := newRouted(t, fmt.Sprintf(`keys:
  - {name: team-a, sha256: %s, rpm: 3}
  - {name: team-b, sha256: %s, budget_usd_per_day: 0.0001}
`, HashKey("sk-a"), HashKey("sk-b")))
	auth := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	resp, body := e.post(t, "/v1/chat/completions", chatBody("chat", "hi", ""))
	if resp.StatusCode != 401 || !strings.Contains(string(body), "missing_api_key") {
		t.Errorf("no key: %d %s", resp.StatusCode, body)
	}
	resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", "hi", ""), auth("sk-wrong")...)
	if resp.StatusCode != 401 || !strings.Contains(string(body), "invalid_api_key") {
		t.Errorf("wrong key: %d %s", resp.StatusCode, body)
	}
	for i := range 4 {
		resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", "hi", ""), auth("sk-a")...)
		if want := map[bool]int{true: 200, false: 429}[i < 3]; resp.StatusCode != want {
			t.Errorf("request %d of team-a: %d %s", i, resp.StatusCode, body)
		}
	}
	// team-b's budget cannot cover a premium call: refused before the call.
	calls := e.premium.Calls.Load()
	resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", hardText, ""), auth("sk-b")...)
	if resp.StatusCode != 429 || !strings.Contains(string(body), "budget_exceeded") || e.premium.Calls.Load() != calls {
		t.Errorf("budget: %d %s (premium calls %d→%d)", resp.StatusCode, body, calls, e.premium.Calls.Load())
	}
	// The student costs nothing against the budget.
	resp, _ = e.post(t, "/v1/chat/completions", chatBody("sentiment", "Great tea", ""), auth("sk-b")...)
	if resp.StatusCode != 200 {
		t.Errorf("student under budget: %d", resp.StatusCode)
	}
}

func TestBadInput(t *testing.T) {
	e := newRouted(t, "limits: {max_body_bytes: 4096, read_timeout: 300ms}\n")
	for _, c := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed", `{"model":"chat","messages":[`, 400, "invalid_json"},
		{"not an object", `[1,2]`, 400, "invalid_type"},
		{"wrong type", `{"model":"chat","messages":"hi"}`, 400, "invalid_type"},
		{"wrong temperature type", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, 400, "invalid_type"},
		{"temperature range", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":3}`, 400, "decimal_above_max_value"},
		{"bad role", `{"model":"chat","messages":[{"role":"wizard","content":"hi"}]}`, 400, "invalid_value"},
		{"empty messages", `{"model":"chat","messages":[]}`, 400, "empty_array"},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "missing_required_parameter"},
		{"empty body", ``, 400, "invalid_json"},
		{"huge body", `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("x", 10000) + `"}]}`, 413, "request_too_large"},
	} {
		resp, body := e.post(t, "/v1/chat/completions", c.body)
		if resp.StatusCode != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
	}
	resp, body := e.post(t, "/v1/models", "")
	if resp.StatusCode != 405 {
		t.Errorf("POST /v1/models: %d %s", resp.StatusCode, body)
	}

	// Slow clients, on a real listener: headers trickling in are cut off at
	// read_timeout; a body that stalls gets 408.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.g.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	conn, _ := net.Dial("tcp", ln.Addr().String())
	start := time.Now()
	conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"))
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(buf)
	if err == nil && !strings.Contains(string(buf), "408") {
		t.Errorf("slow headers: got %q", buf)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("slow headers held the connection for %v", time.Since(start))
	}
	conn.Close()
	conn, _ = net.Dial("tcp", ln.Addr().String())
	conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	if !strings.Contains(string(buf[:n]), "408") {
		t.Errorf("slow body: got %q", buf[:n])
	}
	conn.Close()
}

func TestCaptureAndRecords(t *testing.T) {
	dir := t.TempDir()
	e := newRouted(t, fmt.Sprintf(`accounting: {dir: %s/records}
`, dir))
	// Capture for the generic model: premium and mid answers, redacted.
	m := e.g.models["chat"]
	m.cfg.Capture = CaptureConfig{Enabled: true, Dir: dir + "/capture", Tiers: []string{TierPremium, TierMid}}
	m.redact = chainRedactors([]string{"email"}, func(s string) string { return strings.ReplaceAll(s, "secret", "[X]") })
	w, err := newRotatingWriter(dir+"/capture", "capture", 100, time.Hour, discardLogger(), openSoftLabels)
	if err != nil {
		t.Fatal(err)
	}
	m.capture = w
	e.post(t, "/v1/chat/completions", chatBody("chat", hardText+" Mail bob@example.com the secret.", ""))
	e.post(t, "/v1/chat/completions", chatBody("sentiment", "Great tea", ""))
	e.post(t, "/v1/chat/completions", chatBody("sentiment", "LOW tea", ""))
	e.g.Flush()
	files, _ := filepath.Glob(dir + "/capture/capture-*.parquet")
	if len(files) != 1 {
		t.Fatalf("capture files %v", files)
	}
	rows, err := parquet.ReadFile[datasets.SoftLabel](files[0])
	if err != nil || len(rows) != 1 {
		t.Fatalf("capture rows %v %v", rows, err)
	}
	r := rows[0]
	if strings.Contains(r.Prompt, "bob@example.com") || strings.Contains(r.Prompt, "secret") || !strings.Contains(r.Completion, "[EMAIL]") ||
		r.TeacherModel != "premium-model" || len(r.TopK) == 0 || r.Validate() != nil {
		t.Errorf("capture row %+v", r)
	}
	recs, err := ReadRecords(dir + "/records")
	if err != nil || len(recs) != 3 {
		t.Fatalf("records %d %v", len(recs), err)
	}
	tiers := map[string]bool{}
	for _, rec := range recs {
		tiers[rec.Tier] = true
		if rec.Tenant != "anonymous" || rec.Status != 200 || rec.LatencyMS <= 0 {
			t.Errorf("record %+v", rec)
		}
		if rec.Escalated && (rec.EscalatedFrom != TierStudent || rec.Confidence >= 0.8 || rec.CostUSD <= 0) {
			t.Errorf("escalated record %+v", rec)
		}
	}
	if !tiers[TierPremium] || !tiers[TierStudent] || !tiers[TierMid] {
		t.Errorf("tiers %v", tiers)
	}
}

func TestConfigStrict(t *testing.T) {
	_, err := ParseConfig("g.yaml", []byte("models:\n  - name: a\n    studnet: {}\ncache:\n  treshold: 0.9\n"))
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "g.yaml:3:5: models[0].studnet: unknown key (did you mean \"student\"?)") ||
		!strings.Contains(err.Error(), "g.yaml:5:3: cache.treshold: unknown key") {
		t.Errorf("unknown keys: %v", err)
	}
	_, err = ParseConfig("g.yaml", []byte("models:\n  - name: a\npremium_cap: {share: lots}\n"))
	if err == nil || !strings.Contains(err.Error(), "g.yaml:3:") {
		t.Errorf("wrong type: %v", err)
	}
	_, err = ParseConfig("g.yaml", []byte("models:\n  - name: a\npremium_cap:\n  share: 1.5\n  over_cap: drop\ntiers:\n  premium: {base_url: ftp://x, model: m, api_key_env: sk-live-123}\n"))
	for _, want := range []string{"g.yaml:4:10: premium_cap.share", "g.yaml:5:13: premium_cap.over_cap", "tiers.premium.base_url", "tiers.premium.api_key_env"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	cfg, err := LoadConfig("../examples/gateway.yaml")
	if err != nil {
		t.Fatalf("examples/gateway.yaml: %v", err)
	}
	if cfg.Cap.Share != 0.1 || len(cfg.Models) == 0 {
		t.Errorf("example: %+v", cfg)
	}
}

func TestAnthropicTier(t *testing.T) {
	e := newRouted(t, "")
	ts := httptestServer(t, e.premium)
	u, err := newUpstream(TierPremium, UpstreamConfig{Kind: "anthropic", BaseURL: ts + "/v1", Model: "claude-x", Timeout: 5 * time.Second, MaxTokens: 100})
	if err != nil {
		t.Fatal(err)
	}
	u.key = "sk-upstream"
	e.g.premium = u
	resp, body := e.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"`+hardText+`"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get(HeaderModel) != "claude-x" || !strings.HasPrefix(content(t, body), "premium: Design") {
		t.Fatalf("anthropic: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if !strings.Contains(string(e.premium.LastRequest()), `"system":"be brief"`) {
		t.Errorf("system not translated: %s", e.premium.LastRequest())
	}
	resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", hardText, `,"stream":true,"stream_options":{"include_usage":true}`))
	if resp.StatusCode != 200 || !strings.HasPrefix(streamText(t, body), "premium: Design") || !strings.Contains(string(body), `"usage"`) {
		t.Fatalf("anthropic stream: %d %s", resp.StatusCode, body)
	}
	resp, body = e.post(t, "/v1/chat/completions", chatBody("chat", hardText, `,"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}}]`))
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"lookup"`) || !strings.Contains(string(body), `"tool_calls"`) {
		t.Errorf("anthropic tools: %d %s", resp.StatusCode, body)
	}
}

func httptestServer(t *testing.T, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
