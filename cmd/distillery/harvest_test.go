package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/pipeline"
)

// localTeacher serves a small random Qwen3-shaped model with the real Qwen3
// tokenizer under the quickstart's teacher name, as `distillery serve`.
func localTeacher(t *testing.T) (base, id string) {
	dir := qwenCheckpoint(t, 512)
	id = "fine-foods-teacher"
	link := filepath.Join(t.TempDir(), id)
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	return startServer(t, link) + "/v1", id
}

// TestExampleRecipesRun runs every example recipe through every built
// stage, with `distillery serve` on loopback as the teacher, so none of
// them rots.
func TestExampleRecipesRun(t *testing.T) {
	root := repoRoot(t)
	base, id := localTeacher(t)
	runs := t.TempDir()
	env := []string{"DISTILLERY_TEACHER_URL=" + base, "OPENAI_BASE_URL=" + base, "OPENAI_API_KEY=sk-test-local-000000000000", "EXTRACTION_TEACHER_MODEL=" + id}
	files, _ := filepath.Glob(filepath.Join(root, "recipes/examples/*.yaml"))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := runWithEnv(t, env, root, "--runs-dir", runs, "run", "--json", "--until", "harvest",
				"--set", "data.max_examples=12", "--set", "teacher.model="+id, "--set", "teacher.max_tokens=6", f)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			var m pipeline.Manifest
			if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
				t.Fatalf("run --json output: %v\n%s", err, r.stdout)
			}
			h := m.Stage("harvest")
			if m.Stage("data").Status != pipeline.StatusDone || h.Status != pipeline.StatusDone {
				t.Fatalf("stages: %+v", m.Stages)
			}
			rows, err := datasets.ReadSoftLabels(filepath.Join(runs, m.RecipeName, m.RunID, "harvest", pipeline.SoftLabelsFile))
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) < 12 || fmt.Sprint(h.Summary["harvested"]) != fmt.Sprint(len(rows)) || h.Summary["requests"] == nil {
				t.Errorf("%d rows, summary %v", len(rows), h.Summary)
			}
			show := runCLI(t, root, "--runs-dir", runs, "runs", "show", m.RunID)
			if !strings.Contains(show.stdout, "cost_usd=") || !strings.Contains(show.stdout, "latency_p95_ms=") {
				t.Errorf("runs show lacks the harvest summary:\n%s", show.stdout)
			}
			raw, _ := os.ReadFile(filepath.Join(runs, m.RecipeName, m.RunID, "manifest.json"))
			if strings.Contains(string(raw), "sk-test-local") {
				t.Error("the API key leaked into the manifest")
			}
		})
	}
}

// TestHarvestMatchesDirectCalls harvests Fine Foods prompts from the local
// server and checks each row's text, tokens and top-k log-probabilities
// against a direct call with the same prompt.
func TestHarvestMatchesDirectCalls(t *testing.T) {
	root := repoRoot(t)
	base, id := localTeacher(t)
	runs := t.TempDir()
	env := []string{"DISTILLERY_TEACHER_URL=" + base}
	r := runWithEnv(t, env, root, "--runs-dir", runs, "run", "--json", "--until", "harvest", "--set", "data.max_examples=8",
		"--set", "teacher.max_tokens=3", "--set", "teacher.top_logprobs=5", filepath.Join(root, "recipes/examples/quickstart.yaml"))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var m pipeline.Manifest
	json.Unmarshal([]byte(r.stdout), &m)
	rows, err := datasets.ReadSoftLabels(filepath.Join(runs, m.RecipeName, m.RunID, "harvest", pipeline.SoftLabelsFile))
	if err != nil || len(rows) < 8 {
		t.Fatalf("%d rows: %v", len(rows), err)
	}
	for _, row := range rows[:4] {
		code, body := post(t, strings.TrimSuffix(base, "/v1")+"/v1/chat/completions", fmt.Sprintf(
			`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":3,"temperature":0,"logprobs":true,"top_logprobs":5}`, id, row.Prompt))
		if code != 200 {
			t.Fatalf("direct call: %d %s", code, body)
		}
		var resp struct {
			Choices []struct {
				Message  struct{ Content string }
				Logprobs struct {
					Content []struct {
						Logprob     float64
						TopLogprobs []struct {
							Token   string
							Logprob float64
						} `json:"top_logprobs"`
					}
				}
			}
			Usage struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		json.Unmarshal(body, &resp)
		c := resp.Choices[0]
		if c.Message.Content != row.Completion || int64(resp.Usage.PromptTokens) != row.InputTokens || int64(resp.Usage.CompletionTokens) != row.OutputTokens {
			t.Errorf("row %s: %q %d+%d, direct %q %d+%d", row.ID, row.Completion, row.InputTokens, row.OutputTokens, c.Message.Content, resp.Usage.PromptTokens, resp.Usage.CompletionTokens)
		}
		if len(c.Logprobs.Content) != len(row.TopK) {
			t.Fatalf("row %s: %d positions, direct %d", row.ID, len(row.TopK), len(c.Logprobs.Content))
		}
		for p, pos := range c.Logprobs.Content {
			if math.Abs(pos.Logprob-float64(row.CompletionLogprobs[p])) > 1e-5 || len(pos.TopLogprobs) != len(row.TopK[p].Tokens) {
				t.Errorf("row %s position %d differs", row.ID, p)
				continue
			}
			for k, alt := range pos.TopLogprobs {
				if alt.Token != row.TopK[p].Tokens[k] || math.Abs(alt.Logprob-float64(row.TopK[p].Logprobs[k])) > 1e-5 {
					t.Errorf("row %s position %d alt %d: %q %v vs %q %v", row.ID, p, k, row.TopK[p].Tokens[k], row.TopK[p].Logprobs[k], alt.Token, alt.Logprob)
				}
			}
		}
		if len(row.LabelDist) != 3 {
			t.Errorf("row %s: label dist %v", row.ID, row.LabelDist)
		}
	}
}

// TestDryRunEstimates prices the harvest without any teacher reachable.
func TestDryRunEstimates(t *testing.T) {
	root := repoRoot(t)
	r := runWithEnv(t, []string{"DISTILLERY_TEACHER_URL=http://127.0.0.1:1/v1"}, root, "--runs-dir", t.TempDir(), "run", "--dry-run", "--json",
		"--set", "student.tokenizer="+sharedTokenizer(t, "qwen3"), filepath.Join(root, "recipes/examples/quickstart.yaml"))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var est struct {
		Examples      int     `json:"examples"`
		UniquePrompts int     `json:"unique_prompts"`
		InputTokens   int64   `json:"input_tokens"`
		ExpectedUSD   float64 `json:"expected_usd"`
		WorstCaseUSD  float64 `json:"worst_case_usd"`
		Tokenizer     string
	}
	if err := json.Unmarshal([]byte(r.stdout), &est); err != nil {
		t.Fatal(err)
	}
	// The quickstart's max_examples: 800 reviews of ~280 characters, tens of tokens each.
	if est.Examples != 800 || est.UniquePrompts < 790 || est.InputTokens < 40_000 || est.ExpectedUSD <= 0 || est.WorstCaseUSD < est.ExpectedUSD || !strings.Contains(est.Tokenizer, "qwen3") {
		t.Errorf("estimate %+v", est)
	}
}
