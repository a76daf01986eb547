package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distillery/distillery/pipeline"
)

// bin is the distillery binary built once for these tests: the CLI is
// exercised as users run it, as a process with exit codes.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "distillery-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "distillery")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return runWithEnv(t, nil, dir, args...)
}

// runWithEnv runs the binary in dir with extra environment variables.
func runWithEnv(t *testing.T, env []string, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func repoRoot(t *testing.T) string {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestExitCodesAndHelp(t *testing.T) {
	root := repoRoot(t)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "Exit codes: 0 ok, 1 failure, 2 invalid input, 3 quality gate failed"},
		{[]string{"version"}, 0, "distillery "},
		{[]string{"validate"}, 2, "give at least one recipe"},
		{[]string{"validate", "--bogus", "x"}, 2, "flag provided but not defined"},
		{[]string{"validate", "recipes/testdata/bad.yaml"}, 2, "recipes/testdata/bad.yaml:13:3: train.learning_rte: unknown key"},
		{[]string{"validate", "does-not-exist.yaml"}, 2, "no such file"},
		{[]string{"run"}, 2, "give a recipe file"},
		{[]string{"run", "--only", "nope", "recipes/examples/quickstart.yaml"}, 2, `--only "nope": unknown stage`},
		{[]string{"runs", "show", "no-such-run"}, 2, "not found"},
		{[]string{"data", "inspect"}, 2, "give one file"},
		{[]string{"data", "import", "x.jsonl"}, 2, "--out FILE is required"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCLI(t, root, append([]string{"--runs-dir", t.TempDir()}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), output:\n%s%s\nwant it to contain %q", r.code, tc.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
	// --help works on every command and subcommand.
	var walk func(prefix []string, cmds []string)
	walk = func(prefix []string, cmds []string) {
		for _, c := range cmds {
			args := append(append([]string{}, prefix...), c, "--help")
			if r := runCLI(t, root, args...); r.code != 0 || !strings.Contains(r.stdout, "USAGE") {
				t.Errorf("%v: exit %d\n%s", args, r.code, r.stdout+r.stderr)
			}
		}
	}
	walk(nil, []string{"validate", "run", "runs", "data", "version", "model", "generate", "tokenize", "tokenizer", "serve"})
	walk([]string{"model"}, []string{"init", "logits", "bench", "prune"})
	walk([]string{"tokenizer"}, []string{"train"})
	walk([]string{"runs"}, []string{"list", "show"})
	walk([]string{"data"}, []string{"import", "inspect", "stats"})
}

// The acceptance recipe: all three errors at once, each with line:col.
func TestValidateReportsAllErrors(t *testing.T) {
	r := runCLI(t, repoRoot(t), "validate", "recipes/testdata/bad.yaml")
	if r.code != 2 {
		t.Fatalf("exit %d", r.code)
	}
	for _, want := range []string{
		`bad.yaml:13:3: train.learning_rte: unknown key (did you mean "learning_rate"?)`,
		`bad.yaml:14:15: train.batch_size: expected an integer, got string "sixteen"`,
		`bad.yaml:7:1: teacher.model: missing required field`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("missing %q in:\n%s", want, r.stderr)
		}
	}
	js := runCLI(t, repoRoot(t), "validate", "--json", "recipes/testdata/bad.yaml", "recipes/examples/quickstart.yaml")
	var out []struct {
		File   string
		OK     bool
		Errors []struct {
			Line, Col int
			Key       string
		}
	}
	if err := json.Unmarshal([]byte(js.stdout), &out); err != nil || js.code != 2 {
		t.Fatalf("validate --json: exit %d, %v\n%s", js.code, err, js.stdout)
	}
	if len(out) != 2 || out[0].OK || len(out[0].Errors) != 4 || out[0].Errors[0].Line != 7 || !out[1].OK {
		t.Errorf("validate --json: %+v", out)
	}
}

func TestValidateExamplesAndOverrides(t *testing.T) {
	root := repoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "recipes/examples/*.yaml"))
	r := runCLI(t, root, append([]string{"validate"}, files...)...)
	if r.code != 0 {
		t.Fatalf("examples invalid: %s", r.stderr)
	}
	r = runCLI(t, root, "validate", "--set", "train.lr=1e-4", "--set", "lora.rank=0", "recipes/examples/quickstart.yaml")
	if r.code != 2 || !strings.Contains(r.stderr, "--set lora.rank=0: lora.rank: 0 is out of range: must be >= 1") {
		t.Errorf("bad override: exit %d\n%s", r.code, r.stderr)
	}
}

func TestSecretsNeverWritten(t *testing.T) {
	dir := t.TempDir()
	root := repoRoot(t)
	recipe := strings.ReplaceAll(readFile(t, filepath.Join(root, "recipes/examples/support-intents.yaml")), "data/support-tickets.jsonl", filepath.Join(root, "recipes/examples/data/support-tickets.jsonl"))
	recipe = strings.Replace(recipe, "  system_prompt:", "  # the secret must not leak even when a user interpolates it\n  system_prompt: \"token ${MY_SECRET_TOKEN}\"\n  #", 1)
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(recipe), 0o644)
	cmd := exec.Command(bin, "--runs-dir", filepath.Join(dir, "runs"), "run", "--until", "data", "r.yaml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MY_SECRET_TOKEN=hunter2-very-secret", "OPENAI_API_KEY=sk-live-should-never-appear-anywhere")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte("hunter2")) || bytes.Contains(data, []byte("sk-live")) {
			t.Errorf("%s contains a secret", p)
		}
		return nil
	})
	if bytes.Contains(out, []byte("hunter2")) {
		t.Error("output contains a secret")
	}
}

func TestDataCommands(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ff.parquet")
	r := runCLI(t, root, "data", "import", "--out", out, "--label-field", "label", "--id-field", "id", "--split", "0.9,0.1,0", "--no-dedupe",
		"data/fine-foods/train.jsonl", "data/fine-foods/test.jsonl:test")
	if r.code != 0 || !strings.Contains(r.stdout, "5000 rows") {
		t.Fatalf("import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, root, "data", "inspect", "--limit", "3", out)
	if r.code != 0 || len(strings.Split(strings.TrimSpace(r.stdout), "\n")) != 4 || !strings.Contains(r.stdout, "train-0") {
		t.Errorf("inspect table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, root, "data", "inspect", "--format", "jsonl", "-n", "2", out)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var row map[string]any
	if r.code != 0 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &row) != nil || row["text"] == nil {
		t.Errorf("inspect jsonl: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, root, "data", "stats", "--json", out)
	var st struct {
		Rows    int64            `json:"rows"`
		BySplit map[string]int64 `json:"by_split"`
		ByLabel map[string]int64 `json:"by_label"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Rows != 5000 || st.BySplit["test"] != 1000 || st.ByLabel["great"] != 3258 {
		t.Errorf("stats: %v %+v\n%s", err, st, r.stdout)
	}

	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"text\": \"fine\"}\n{\"text\": \"\"}\n{\"txt\": \"x\"}\n"), 0o644)
	r = runCLI(t, dir, "data", "import", "--out", "x.parquet", "bad.jsonl")
	if r.code != 2 || !strings.Contains(r.stderr, "bad.jsonl:2") || !strings.Contains(r.stderr, "bad.jsonl:3") {
		t.Errorf("bad rows: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.parquet")); !os.IsNotExist(err) {
		t.Error("a failed import left an output file")
	}
}

// TestInterruptAndResume stops a real run with SIGINT during the data stage
// and resumes it by run id.
func TestInterruptAndResume(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 300000 {
		fmt.Fprintf(&b, `{"text": "row %d: the coffee was fine but the bag arrived torn and half empty", "label": "%s"}`+"\n", i, []string{"a", "b"}[i%2])
	}
	os.WriteFile(filepath.Join(dir, "big.jsonl"), []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(`name: big
task: {kind: classification, labels: [a, b]}
data: {source: big.jsonl, label_field: label}
teacher: {kind: labels}
student: {base: s}
`), 0o644)
	cmd := exec.Command(bin, "--runs-dir", "runs", "run", "--until", "data", "--progress", "json", "r.yaml")
	cmd.Dir = dir
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var runID string
	for sc.Scan() {
		var e pipeline.Event
		json.Unmarshal(sc.Bytes(), &e)
		if e.Stage == "data" && e.Event == "start" {
			runID = e.Run
			cmd.Process.Signal(syscall.SIGINT)
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("interrupted run: %v", err)
	}
	m, err := pipeline.ReadManifest(filepath.Join(dir, "runs", "big", runID))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != pipeline.StatusInterrupted || m.Stage("data").Status != pipeline.StatusInterrupted {
		t.Fatalf("after SIGINT: %s, data %s", m.Status, m.Stage("data").Status)
	}
	start := time.Now()
	r := runCLI(t, dir, "--runs-dir", "runs", "run", "--until", "data", "--resume", runID)
	if r.code != 0 {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	m, _ = pipeline.ReadManifest(filepath.Join(dir, "runs", "big", runID))
	if m.Stage("data").Status != pipeline.StatusDone || fmt.Sprint(m.Stage("data").Summary["rows"]) != "300000" {
		t.Errorf("after resume (%s): data %s %v", time.Since(start), m.Stage("data").Status, m.Stage("data").Summary)
	}
}

func readFile(t *testing.T, p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
