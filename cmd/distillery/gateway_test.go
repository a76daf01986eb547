package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distillery/distillery/gateway"
	"github.com/distillery/distillery/routes"
)

// startProcess runs a command and returns it with its output buffer.
func startProcess(t *testing.T, logs *bytes.Buffer, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func waitReady(t *testing.T, url string, logs *bytes.Buffer) {
	for start := time.Now(); time.Since(start) < 60*time.Second; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
	}
	t.Fatalf("%s did not come up:\n%s", url, logs.String())
}

// TestGatewayEndToEnd runs three processes on loopback: `distillery serve
// --model` as the student host, a stub OpenAI-compatible provider as the
// premium tier, and `distillery serve --config` in front of both. Then it
// reads the records back with `distillery serve cost`.
func TestGatewayEndToEnd(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	stubBin := filepath.Join(tmp, "stubserver")
	build := exec.Command("go", "build", "-o", stubBin, "./gateway/gatewaytest/stubserver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build stub: %v\n%s", err, out)
	}
	stubAddr := freePort(t)
	var stubLogs bytes.Buffer
	stub := startProcess(t, &stubLogs, stubBin, "-addr", stubAddr, "-key", "sk-premium", "-prefix", "premium: ")
	t.Cleanup(func() { stub.Process.Kill(); stub.Wait() })

	dir := qwenCheckpoint(t, 256)
	student := startServer(t, dir)
	id := filepath.Base(dir)

	r := routes.Example()
	r.Model, r.ConfidenceThreshold = id, 0.5
	rpath := filepath.Join(tmp, "routes.json")
	if err := r.Write(rpath); err != nil {
		t.Fatal(err)
	}
	gwAddr := freePort(t)
	cfg := fmt.Sprintf(`listen: %s
models:
  - name: general
    student:
      upstream: {base_url: %s/v1, model: %s}
      threshold: 0
  - name: sentiment
    student:
      upstream: {base_url: %s/v1, model: %s}
      routes: %s
tiers:
  premium: {base_url: http://%s/v1, model: stub-premium, api_key_env: E2E_PREMIUM_KEY, price: {input_per_mtok: 5, output_per_mtok: 15}}
premium_cap: {share: 0.9, state: %s/cap.json}
accounting: {dir: %s/records}
keys:
  - {name: app, sha256: %s, rpm: 1000}
`, gwAddr, student, id, student, id, rpath, stubAddr, tmp, tmp, gatewayHash(t, "sk-client"))
	cfgPath := filepath.Join(tmp, "gateway.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	var gwLogs bytes.Buffer
	gw := exec.Command(bin, "serve", "--config", cfgPath)
	gw.Env = append(os.Environ(), "E2E_PREMIUM_KEY=sk-premium")
	gw.Stderr = &gwLogs
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + gwAddr
	waitReady(t, base+"/readyz", &gwLogs)
	defer func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", gwLogs.String())
		}
	}()
	do := func(body string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-client")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp, b.String()
	}
	// An easy request: the student host answers.
	resp, body := do(`{"model":"general","messages":[{"role":"user","content":"Is this tea good?"}],"max_tokens":4}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Distillery-Tier") != "student" || !strings.Contains(resp.Header.Get("X-Distillery-Model"), id) {
		t.Fatalf("student: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// A random student names no label: the cascade escalates to premium.
	resp, body = do(`{"model":"sentiment","messages":[{"role":"user","content":"Loved it. LABEL:great"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Distillery-Tier") != "premium" || resp.Header.Get("X-Distillery-Escalated") != "student→premium" ||
		!strings.Contains(body, `"great"`) {
		t.Fatalf("cascade: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// A hard request streams from premium.
	resp, body = do(`{"model":"general","stream":true,"messages":[{"role":"user","content":"Prove that there are infinitely many primes of the form 4k+3, then generalize the argument and explain where it fails for 4k+1."}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Distillery-Tier") != "premium" || !strings.HasSuffix(strings.TrimSpace(body), "data: [DONE]") {
		t.Fatalf("premium stream: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// A wrong key.
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer nope")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("wrong key: %v %v", resp, err)
	}
	mresp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(mresp.Body)
	found := false
	for sc.Scan() {
		found = found || strings.HasPrefix(sc.Text(), `distillery_gateway_requests_total{cache=`)
	}
	mresp.Body.Close()
	if !found {
		t.Error("no request counter in /metrics")
	}
	// Graceful stop: records flushed, no key or prompt in the log.
	gw.Process.Signal(os.Interrupt)
	if err := gw.Wait(); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	if strings.Contains(gwLogs.String(), "sk-client") || strings.Contains(gwLogs.String(), "Loved it") {
		t.Error("key or prompt text in the log")
	}
	res := runCLI(t, root, "serve", "cost", "--config", cfgPath, "--gpu-usd-per-hour", "2", "--student-tokens-per-sec", "500", filepath.Join(tmp, "records"))
	if res.code != 0 || !strings.Contains(res.stdout, "all-premium cost") || !strings.Contains(res.stdout, "break-even") {
		t.Fatalf("cost: %d %s %s", res.code, res.stdout, res.stderr)
	}
	t.Logf("distillery serve cost:\n%s", res.stdout)
}

// gatewayHash hashes a key with `distillery serve --hash-key` and checks
// it against gateway.HashKey.
func gatewayHash(t *testing.T, key string) string {
	cmd := exec.Command(bin, "serve", "--hash-key")
	cmd.Stdin = strings.NewReader(key + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	h := strings.TrimSpace(string(out))
	if h != gateway.HashKey(key) {
		t.Fatalf("--hash-key printed %q, want %q", h, gateway.HashKey(key))
	}
	return h
}
