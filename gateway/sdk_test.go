package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// openaiSDKVersion pins the OpenAI Node SDK the protocol is checked against
// (the 6.x line still runs on Node 20; 7.x needs Node 22).
const openaiSDKVersion = "6.49.0"

// TestOpenAINodeSDK runs the official OpenAI Node SDK against a real server
// on a loopback port: what a real client does with our replies is the test
// that matters. It installs the SDK once into a cache folder outside the
// repository and is skipped only when node or npm is missing.
func TestOpenAINodeSDK(t *testing.T) {
	node, err1 := exec.LookPath("node")
	npm, err2 := exec.LookPath("npm")
	if err1 != nil || err2 != nil {
		t.Skip("node and npm are needed for the OpenAI Node SDK test; install Node.js to run it")
	}
	sdk := installSDK(t, npm)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewServer(newEcho(), Options{Logger: discardLogger()}).Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "sdk_client.mjs"))
	cmd.Env = append(os.Environ(), "OPENAI_BASE_URL="+URL(ln.Addr())+"/v1", "OPENAI_SDK_DIR="+sdk)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node sdk_client.mjs: %v\n%s", err, stderr.String())
	}

	var got struct {
		SDKVersion string `json:"sdkVersion"`
		Chat       struct {
			ID, Object, Content, Role, Finish string
			Logprobs                          []struct {
				Token   string
				Logprob float64
				Bytes   []int
				Top     []string
			}
			Usage map[string]int
		}
		Stream struct {
			Text, Finish  string
			Roles         []string
			Usage         map[string]int
			Chunks        int
			LogprobTokens []string
		}
		Completion struct {
			Object, Text, Finish string
			Tokens               []string
			Usage                map[string]int
		}
		Models                          []string
		Retrieved                       string
		BadRequest, NotFound, MidStream struct {
			Thrown, IsAPIError bool
			Status             *int
			Code, Param, Type  *string
			Message            string
		}
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("script output: %v\n%s", err, stdout)
	}
	t.Logf("OpenAI Node SDK %s", got.SDKVersion)
	if testing.Verbose() {
		t.Logf("script output: %s", stdout)
	}

	c := got.Chat
	if c.Object != "chat.completion" || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Role != "assistant" ||
		c.Content != "hello brave " || c.Finish != "stop" {
		t.Errorf("chat: %+v", c)
	}
	if len(c.Logprobs) != 3 || c.Logprobs[1].Token != " brave" || c.Logprobs[1].Logprob != -0.25 ||
		!reflect.DeepEqual(c.Logprobs[1].Bytes, []int{32, 98, 114, 97, 118, 101}) ||
		!reflect.DeepEqual(c.Logprobs[1].Top, []string{" brave", "alt1"}) {
		t.Errorf("chat logprobs: %+v", c.Logprobs)
	}
	if c.Usage["prompt_tokens"] != 8 || c.Usage["completion_tokens"] != 3 || c.Usage["total_tokens"] != 11 {
		t.Errorf("chat usage: %v", c.Usage)
	}

	s := got.Stream
	if s.Text != "stream these four words" || s.Finish != "stop" || !reflect.DeepEqual(s.Roles, []string{"assistant"}) ||
		s.Chunks != 7 || s.Usage["completion_tokens"] != 4 ||
		!reflect.DeepEqual(s.LogprobTokens, []string{"stream", " these", " four", " words"}) {
		t.Errorf("stream: %+v", s)
	}

	cm := got.Completion
	if cm.Object != "text_completion" || cm.Text != "one two" || cm.Finish != "length" ||
		!reflect.DeepEqual(cm.Tokens, []string{"one", " two"}) || cm.Usage["total_tokens"] != 5 {
		t.Errorf("completion: %+v", cm)
	}

	if !reflect.DeepEqual(got.Models, []string{"test-model"}) || got.Retrieved != "test-model" {
		t.Errorf("models: %v %q", got.Models, got.Retrieved)
	}

	br := got.BadRequest
	if !br.Thrown || !br.IsAPIError || br.Status == nil || *br.Status != 400 || br.Param == nil || *br.Param != "temperature" ||
		br.Code == nil || *br.Code != "decimal_above_max_value" || br.Type == nil || *br.Type != "invalid_request_error" {
		t.Errorf("bad request: %+v", br)
	}
	nf := got.NotFound
	if !nf.Thrown || !nf.IsAPIError || nf.Status == nil || *nf.Status != 404 || nf.Code == nil || *nf.Code != "model_not_found" ||
		!strings.Contains(nf.Message, "The model `no-such-model` does not exist") {
		t.Errorf("not found: %+v", nf)
	}
	ms := got.MidStream
	if !ms.Thrown || !ms.IsAPIError || !strings.Contains(ms.Message, "exploded mid-way") {
		t.Errorf("mid-stream error: %+v", ms)
	}
}

// installSDK installs the pinned openai package once into the user's cache
// folder and returns the --prefix folder holding it.
func installSDK(t *testing.T, npm string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "distillery", "npm-openai-"+openaiSDKVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err == nil {
		return dir
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	// Install into a fresh folder and rename it into place, so that an
	// interrupted install never leaves a half-filled cache behind.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "npm-openai-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", tmp, "--no-audit", "--no-fund", "--loglevel=error",
		"openai@"+openaiSDKVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install openai@%s: %v\n%s", openaiSDKVersion, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) {
		if _, statErr := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); statErr != nil {
			t.Fatalf("install the SDK into %s: %v", dir, err)
		}
	}
	return dir
}
