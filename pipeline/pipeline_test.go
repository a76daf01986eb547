package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/store"
)

// chainStage stands in for a later stage: it reads every upstream output,
// hashes them together with its config, and writes the result in chunks
// through an atomic write, pausing between chunks so tests can kill it
// mid-write.
type chainStage struct {
	name   string
	pause  time.Duration
	runs   *atomic.Int32
	fail   error
	chunks int
}

func (s chainStage) Name() string { return s.name }

func (s chainStage) Key(_ context.Context, r *recipes.Recipe) (Key, error) {
	return Key{Version: "1", Config: r.Section("train")}, nil
}

func (s chainStage) Run(ctx context.Context, sc *StageContext) error {
	if s.runs != nil {
		s.runs.Add(1)
	}
	if s.fail != nil {
		return s.fail
	}
	h := sha256.New()
	h.Write(sc.Recipe.Section("train"))
	for _, name := range Order {
		rec := sc.Upstream[name]
		if rec == nil {
			continue
		}
		for _, o := range rec.Outputs {
			data, err := os.ReadFile(sc.UpstreamFile(name, o.Key))
			if err != nil {
				return err
			}
			h.Write(data)
		}
	}
	seed := h.Sum(nil)
	chunks := max(s.chunks, 4)
	sc.Log.Info("writing", "chunks", chunks)
	return store.WriteAtomic(filepath.Join(sc.Dir, "out.bin"), func(w io.Writer) error {
		for i := range chunks {
			sc.Progress(int64(i), int64(chunks), "chunks")
			block := bytes.Repeat(seed, 1024)
			if _, err := w.Write(block); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(s.pause):
			}
		}
		return nil
	})
}

func testStages(pause time.Duration, runs *atomic.Int32) map[string]Stage {
	m := map[string]Stage{"data": DataStage{}}
	for _, n := range Order[1:] {
		m[n] = chainStage{name: n, pause: pause, runs: runs}
	}
	return m
}

// writeRecipe makes a small recipe and data file in dir.
func writeRecipe(t testing.TB, dir string) *recipes.Recipe {
	t.Helper()
	var rows strings.Builder
	for i := range 200 {
		label := "good"
		if i%3 == 0 {
			label = "bad"
		}
		fmt.Fprintf(&rows, `{"id": "r%d", "text": "review number %d says it was %s", "label": %q}`+"\n", i, i, label, label)
	}
	os.WriteFile(filepath.Join(dir, "data.jsonl"), []byte(rows.String()), 0o644)
	yaml := `name: kill-test
task: {kind: classification, labels: [good, bad]}
data: {source: data.jsonl, label_field: label, id_field: id}
teacher: {kind: labels}
student: {base: ./student}
train: {lr: 0.001}
`
	p := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(p, []byte(yaml), 0o644)
	r, err := recipes.Load(p, recipes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func statuses(m *Manifest) string {
	var parts []string
	for _, s := range m.Stages {
		parts = append(parts, s.Name+"="+s.Status)
	}
	return strings.Join(parts, " ")
}

func TestRunCachesAndReuses(t *testing.T) {
	dir := t.TempDir()
	r := writeRecipe(t, dir)
	runs := &atomic.Int32{}
	opts := Options{RunsDir: filepath.Join(dir, "runs"), Stages: testStages(0, runs)}
	ctx := context.Background()

	first, err := Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(first.Manifest); got != "data=done harvest=done train=done quantize=done eval=done publish=done" {
		t.Fatalf("first run: %s", got)
	}
	if runs.Load() != 5 {
		t.Fatalf("chain stages ran %d times, want 5", runs.Load())
	}
	if first.Manifest.Inputs[filepath.Join(dir, "data.jsonl")] == "" {
		t.Errorf("input data hash not recorded: %v", first.Manifest.Inputs)
	}
	if s := first.Manifest.Stage("data").Summary["rows"]; fmt.Sprint(s) != "200" {
		t.Errorf("data summary rows = %v", s)
	}

	// Same recipe again: everything comes from the cache.
	second, err := Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range second.Manifest.Stages {
		if s.Status != StatusReused || s.ReusedFrom != first.Manifest.RunID {
			t.Errorf("second run %s: %s from %q", s.Name, s.Status, s.ReusedFrom)
		}
	}
	if runs.Load() != 5 {
		t.Errorf("cached run executed stages again (%d runs)", runs.Load())
	}
	if err := verifyOutputs(filepath.Join(second.RunDir, "publish"), second.Manifest.Stage("publish").Outputs); err != nil {
		t.Errorf("reused outputs not in new run folder: %v", err)
	}

	// A changed train section reruns train and everything after it.
	r2, err := recipes.Load(filepath.Join(dir, "recipe.yaml"), recipes.Options{Set: []string{"train.lr=0.01"}})
	if err != nil {
		t.Fatal(err)
	}
	third, err := Run(ctx, r2, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(third.Manifest); got != "data=reused harvest=done train=done quantize=done eval=done publish=done" {
		t.Errorf("changed train section: %s", got)
	}

	// --force reruns even with a cache hit; --only runs one stage.
	before := runs.Load()
	if _, err := Run(ctx, r, Options{RunsDir: opts.RunsDir, Stages: opts.Stages, Force: true, Only: "eval"}); err != nil {
		t.Fatal(err)
	}
	if runs.Load() != before+1 {
		t.Errorf("--force --only eval ran %d stages", runs.Load()-before)
	}
}

func TestRunSelection(t *testing.T) {
	dir := t.TempDir()
	r := writeRecipe(t, dir)
	ctx := context.Background()
	opts := Options{RunsDir: filepath.Join(dir, "runs"), Stages: testStages(0, nil)}

	opts.From = "train"
	if _, err := Run(ctx, r, opts); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "stage data has no finished result") {
		t.Fatalf("--from without cache: %v", err)
	}
	opts.From, opts.Until = "", "harvest"
	res, err := Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Manifest); got != "data=done harvest=done train=pending quantize=pending eval=pending publish=pending" || res.Manifest.Status != StatusIncomplete {
		t.Fatalf("--until harvest: %s (%s)", got, res.Manifest.Status)
	}
	opts.From, opts.Until = "train", ""
	res, err = Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Manifest); got != "data=reused harvest=reused train=done quantize=done eval=done publish=done" {
		t.Fatalf("--from train: %s", got)
	}
	for _, bad := range []Options{{Only: "nope"}, {From: "eval", Until: "data"}, {Only: "data", From: "data"}} {
		bad.RunsDir, bad.Stages = opts.RunsDir, opts.Stages
		if _, err := Run(ctx, r, bad); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%+v: want invalid input, got %v", bad, err)
		}
	}
}

func TestNotBuiltAndFailure(t *testing.T) {
	dir := t.TempDir()
	r := writeRecipe(t, dir)
	ctx := context.Background()
	var events bytes.Buffer
	res, err := Run(ctx, r, Options{RunsDir: filepath.Join(dir, "runs"), Stages: map[string]Stage{"data": DataStage{}}, Reporter: NewJSONReporter(&events)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusIncomplete || res.Manifest.Stage("harvest").Status != StatusNotBuilt {
		t.Fatalf("not built: %s %s", res.Manifest.Status, statuses(res.Manifest))
	}
	if !strings.Contains(events.String(), `"msg":"stage harvest is not built yet"`) {
		t.Errorf("events lack the not-built message:\n%s", events.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(events.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Run == "" || e.Event == "" {
			t.Errorf("bad event line %q: %v", line, err)
		}
	}

	stages := testStages(0, nil)
	stages["train"] = chainStage{name: "train", fail: errors.New("out of memory")}
	res, err = Run(ctx, r, Options{RunsDir: filepath.Join(dir, "runs"), Stages: stages})
	if err == nil || !strings.Contains(err.Error(), "stage train: out of memory") {
		t.Fatalf("failing stage: %v", err)
	}
	if res.Manifest.Status != StatusFailed || res.Manifest.Stage("train").Status != StatusFailed || res.Manifest.Stage("train").Error != "out of memory" {
		t.Fatalf("failure not recorded: %s %s", res.Manifest.Status, statuses(res.Manifest))
	}
	// Resume with a fixed stage: finished stages are reused, train runs.
	res, err = Run(ctx, r, Options{RunsDir: filepath.Join(dir, "runs"), Stages: testStages(0, nil), Resume: res.Manifest.RunID})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Manifest); got != "data=reused harvest=reused train=done quantize=done eval=done publish=done" {
		t.Errorf("resume after failure: %s", got)
	}
	if res.Manifest.Stage("train").Attempts != 2 {
		t.Errorf("train attempts = %d, want 2", res.Manifest.Stage("train").Attempts)
	}
}

func TestResumeRejectsChangedRecipe(t *testing.T) {
	dir := t.TempDir()
	r := writeRecipe(t, dir)
	opts := Options{RunsDir: filepath.Join(dir, "runs"), Stages: testStages(0, nil), Until: "data"}
	res, err := Run(context.Background(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := recipes.Load(filepath.Join(dir, "recipe.yaml"), recipes.Options{Set: []string{"train.epochs=9"}})
	opts.Resume = res.Manifest.RunID
	if _, err := Run(context.Background(), r2, opts); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "recipe changed") {
		t.Fatalf("want recipe-changed error, got %v", err)
	}
}

func TestLockExcludesSecondWriter(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks are per open file description, so a second open in the
	// same process conflicts just as another process would.
	if _, err := lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := lock(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestInterruptRecordsStatus(t *testing.T) {
	dir := t.TempDir()
	r := writeRecipe(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	stages := testStages(50*time.Millisecond, nil)
	var events syncBuffer
	go func() {
		for !strings.Contains(events.String(), `"stage":"train","event":"start"`) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	res, err := Run(ctx, r, Options{RunsDir: filepath.Join(dir, "runs"), Stages: stages, Reporter: NewJSONReporter(&events)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	if res.Manifest.Status != StatusInterrupted || res.Manifest.Stage("train").Status != StatusInterrupted {
		t.Fatalf("interrupt not recorded: %s %s", res.Manifest.Status, statuses(res.Manifest))
	}
}

// TestSIGKILLResume kills a run with SIGKILL while a stage is half-way
// through writing its output, then resumes it.
func TestSIGKILLResume(t *testing.T) {
	dir := t.TempDir()
	writeRecipe(t, dir)
	runsDir := filepath.Join(dir, "runs")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRun$")
	cmd.Env = append(os.Environ(), "PIPELINE_HELPER_DIR="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until train is running and has a partial temp file on disk.
	deadline := time.Now().Add(60 * time.Second)
	var runDir string
	for {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("train never started")
		}
		matches, _ := filepath.Glob(filepath.Join(runsDir, "kill-test", "*", "train", ".out.bin.tmp-*"))
		if len(matches) > 0 {
			runDir = filepath.Dir(filepath.Dir(matches[0]))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	m, err := ReadManifest(runDir)
	if err != nil {
		t.Fatalf("manifest unreadable after SIGKILL: %v", err)
	}
	if got := statuses(m); !strings.HasPrefix(got, "data=done harvest=done train=running") {
		t.Fatalf("after kill: %s", got)
	}
	if _, err := os.Stat(filepath.Join(runDir, "train", "out.bin")); !os.IsNotExist(err) {
		t.Fatalf("a half-written output is visible: %v", err)
	}

	r, err := recipes.Load(filepath.Join(dir, "recipe.yaml"), recipes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runs := &atomic.Int32{}
	res, err := Run(context.Background(), r, Options{RunsDir: runsDir, Resume: m.RunID, Stages: testStages(0, runs)})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Manifest); got != "data=reused harvest=reused train=done quantize=done eval=done publish=done" {
		t.Fatalf("after resume: %s", got)
	}
	if runs.Load() != 4 {
		t.Errorf("resume ran %d chain stages, want 4 (harvest must be reused)", runs.Load())
	}
	for _, s := range res.Manifest.Stages {
		if s.Complete() && s.ReusedFrom != "" && s.ReusedFrom != m.RunID {
			t.Errorf("%s reused from %s, want this run", s.Name, s.ReusedFrom)
		}
		if err := verifyOutputs(filepath.Join(runDir, s.Name), s.Outputs); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	// No truncated or leftover file anywhere in the run folder.
	filepath.Walk(runDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(info.Name(), ".tmp-") {
			t.Errorf("temp file left behind: %s", p)
		}
		if err == nil && strings.HasSuffix(p, ".json") {
			data, _ := os.ReadFile(p)
			if !json.Valid(data) {
				t.Errorf("truncated JSON: %s", p)
			}
		}
		return nil
	})
	sum := sha256.Sum256(mustRead(t, filepath.Join(runDir, "train", "out.bin")))
	if hex.EncodeToString(sum[:]) != res.Manifest.Stage("train").Outputs[0].SHA256 {
		t.Error("train output does not match its manifest hash")
	}
}

// TestHelperRun is the child process of TestSIGKILLResume.
func TestHelperRun(t *testing.T) {
	dir := os.Getenv("PIPELINE_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestSIGKILLResume")
	}
	r, err := recipes.Load(filepath.Join(dir, "recipe.yaml"), recipes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stages := testStages(0, nil)
	stages["train"] = chainStage{name: "train", pause: 200 * time.Millisecond, chunks: 1000}
	Run(context.Background(), r, Options{RunsDir: filepath.Join(dir, "runs"), Stages: stages})
}

func mustRead(t *testing.T, p string) []byte {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
