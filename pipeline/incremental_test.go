package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/recipes"
	"github.com/distillery/distillery/store"
)

// countingTeacher is an OpenAI-compatible chat server that answers "good"
// or "bad" with log-probabilities and records the texts it was asked.
type countingTeacher struct {
	URL   string
	mu    sync.Mutex
	asked []string // last user message of each request
}

func newCountingTeacher(t *testing.T) *countingTeacher {
	t.Helper()
	ct := &countingTeacher{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string
			Messages []struct{ Role, Content string }
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		text := req.Messages[len(req.Messages)-1].Content
		ct.mu.Lock()
		ct.asked = append(ct.asked, text)
		ct.mu.Unlock()
		answer, other := "good", "bad"
		if strings.Contains(text, "bad") {
			answer, other = "bad", "good"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":%q,"choices":[{"index":0,
 "message":{"role":"assistant","content":%q},"finish_reason":"stop",
 "logprobs":{"content":[{"token":%q,"logprob":-0.1,"top_logprobs":[{"token":%q,"logprob":-0.1},{"token":%q,"logprob":-2.5}]}]}}],
 "usage":{"prompt_tokens":20,"completion_tokens":1,"total_tokens":21}}`, req.Model+"-2025", answer, answer, answer, other)
	}))
	t.Cleanup(srv.Close)
	ct.URL = srv.URL
	return ct
}

// take returns and forgets the texts asked so far.
func (ct *countingTeacher) take() []string {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	out := ct.asked
	ct.asked = nil
	slices.Sort(out)
	return out
}

// incRow is one data row of the incremental tests.
type incRow struct{ id, text string }

func incRows(from, to int) []incRow {
	var out []incRow
	for i := from; i < to; i++ {
		verdict := "good"
		if i%3 == 0 {
			verdict = "bad"
		}
		out = append(out, incRow{fmt.Sprintf("r%d", i), fmt.Sprintf("review number %d says it was %s", i, verdict)})
	}
	return out
}

// writeIncRecipe writes the data file and a recipe whose teacher is ct;
// the store is dir/published.
func writeIncRecipe(t *testing.T, dir string, ct *countingTeacher, rows []incRow, sets ...string) *recipes.Recipe {
	t.Helper()
	var data strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&data, "{\"id\": %q, \"text\": %q}\n", r.id, r.text)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.jsonl"), []byte(data.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := `name: inc-test
task: {kind: classification, labels: [good, bad], instruction: "Answer {labels}."}
data: {source: data.jsonl, id_field: id}
teacher: {kind: openai, model: gpt-fake, base_url: "` + ct.URL + `/v1", api_key_env: FAKE_TEACHER_KEY, max_tokens: 2, top_logprobs: 2, concurrency: 4}
student: {base: ./student}
publish: {store: published}
`
	p := filepath.Join(dir, "recipe.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipes.Load(p, recipes.Options{Set: sets})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// publishHarvest publishes a run's harvest as the release the publish
// stage would make (only the files an incremental run reads).
func publishHarvest(t *testing.T, r *recipes.Recipe, res *Result) {
	t.Helper()
	ctx := context.Background()
	s, err := openRecipeStore(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	files := []store.File{
		{Path: filepath.Join(res.RunDir, "harvest", SoftLabelsFile), Name: ReleaseSoftLabels},
		{Path: filepath.Join(res.RunDir, ManifestName), Name: ManifestName},
	}
	if _, err := store.Publish(ctx, s, publishName(r), res.Manifest.RunID, files, nil); err != nil {
		t.Fatal(err)
	}
}

func readLabels(t *testing.T, res *Result) map[string]datasets.SoftLabel {
	t.Helper()
	rows, err := datasets.ReadSoftLabels(filepath.Join(res.RunDir, "harvest", SoftLabelsFile))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]datasets.SoftLabel{}
	for _, row := range rows {
		out[row.ID] = row
	}
	return out
}

func runHarvest(t *testing.T, r *recipes.Recipe, runsDir string, incremental bool) *Result {
	t.Helper()
	res, err := Run(context.Background(), r, Options{RunsDir: runsDir, Until: "harvest", Incremental: incremental})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func promptsOf(r *recipes.Recipe, rows []incRow) []string {
	var out []string
	for _, row := range rows {
		out = append(out, PromptSpec(r).Render(row.text))
	}
	slices.Sort(out)
	return out
}

// TestIncrementalHarvest: after a published run, an incremental run (in a
// fresh runs folder, as on a CI machine) asks the teacher only about new
// and changed examples, carries the other rows over unchanged, and says
// so; its cache key follows the base release.
func TestIncrementalHarvest(t *testing.T) {
	t.Setenv("FAKE_TEACHER_KEY", "sk-fake")
	dir := t.TempDir()
	ct := newCountingTeacher(t)
	first := incRows(0, 30)
	r := writeIncRecipe(t, dir, ct, first)

	// A full run, published.
	run1 := runHarvest(t, r, filepath.Join(dir, "runs1"), false)
	if got := ct.take(); len(got) != 30 {
		t.Fatalf("first run asked %d prompts, want 30", len(got))
	}
	publishHarvest(t, r, run1)
	base := readLabels(t, run1)

	// New rows, and one changed text.
	rows := append(slices.Clone(first), incRows(30, 35)...)
	rows[4].text = "review number 4 was edited: bad after all"
	r = writeIncRecipe(t, dir, ct, rows)
	runs2 := filepath.Join(dir, "runs2")
	run2 := runHarvest(t, r, runs2, true)
	want := append([]incRow{rows[4]}, rows[30:]...)
	if got := ct.take(); !reflect.DeepEqual(got, promptsOf(r, want)) {
		t.Fatalf("incremental run asked %q\nwant %q", got, promptsOf(r, want))
	}
	h := run2.Manifest.Stage("harvest")
	for k, v := range map[string]any{"incremental_base_version": run1.Manifest.RunID, "carried_over": 29, "new_examples": 6,
		"examples": 35, "harvested": 35, "asked": 6} {
		if fmt.Sprint(h.Summary[k]) != fmt.Sprint(v) {
			t.Errorf("summary %s = %v, want %v (summary %v)", k, h.Summary[k], v, h.Summary)
		}
	}
	if h.Inputs[filepath.ToSlash("file://"+filepath.Join(dir, "published", "inc-test", run1.Manifest.RunID, "harvest", SoftLabelsFile))] == "" {
		t.Errorf("harvest inputs do not name the base soft labels: %v", h.Inputs)
	}
	note := IncrementalNote(run2.Manifest)
	if wantNote := "incremental: 6 new examples since version " + run1.Manifest.RunID + " (29 carried over)"; note != wantNote {
		t.Errorf("note %q, want %q", note, wantNote)
	}
	got := readLabels(t, run2)
	if len(got) != 35 {
		t.Fatalf("%d rows, want 35", len(got))
	}
	for _, row := range first {
		if row.id == "r4" {
			continue
		}
		if !reflect.DeepEqual(got[row.id], base[row.id]) {
			t.Errorf("carried row %s changed:\n%+v\n%+v", row.id, got[row.id], base[row.id])
		}
	}
	if g := got["r4"]; g.Prompt != PromptSpec(r).Render(rows[4].text) || g.Label != "bad" {
		t.Errorf("changed row r4: %+v", g)
	}
	if _, err := os.Stat(filepath.Join(run2.RunDir, "harvest", newSoftLabelsFile)); !os.IsNotExist(err) {
		t.Errorf("%s left in the harvest folder (%v)", newSoftLabelsFile, err)
	}
	for _, o := range h.Outputs {
		if strings.HasPrefix(o.Key, incrementalBaseDir) || o.Key == newSoftLabelsFile {
			t.Errorf("working file %s is an output", o.Key)
		}
	}

	// Same base: the incremental harvest is reused. A new release is a
	// new base: the harvest runs again and finds nothing new.
	run3 := runHarvest(t, r, runs2, true)
	if s := run3.Manifest.Stage("harvest"); s.Status != StatusReused || s.ReusedFrom != run2.Manifest.RunID {
		t.Errorf("same base: harvest %s from %q", s.Status, s.ReusedFrom)
	}
	publishHarvest(t, r, run2)
	run4 := runHarvest(t, r, runs2, true)
	h4 := run4.Manifest.Stage("harvest")
	if h4.Status != StatusDone || fmt.Sprint(h4.Summary["incremental_base_version"]) != run2.Manifest.RunID ||
		fmt.Sprint(h4.Summary["new_examples"]) != "0" || fmt.Sprint(h4.Summary["carried_over"]) != "35" {
		t.Errorf("new base: harvest %s, summary %v", h4.Status, h4.Summary)
	}
	if asked := ct.take(); len(asked) != 0 {
		t.Errorf("nothing new, but the teacher was asked %q", asked)
	}
	if !reflect.DeepEqual(readLabels(t, run4), got) {
		t.Error("carrying everything over changed the soft labels")
	}

	// Another teacher model: nothing is carried over.
	r = writeIncRecipe(t, dir, ct, rows, "teacher.model=gpt-other")
	run5 := runHarvest(t, r, filepath.Join(dir, "runs5"), true)
	if asked := ct.take(); len(asked) != 35 {
		t.Errorf("changed teacher: asked %d prompts, want 35", len(asked))
	}
	note = IncrementalNote(run5.Manifest)
	if !strings.Contains(note, "teacher settings changed") || !strings.Contains(note, `teacher.model "gpt-fake" -> "gpt-other"`) ||
		!strings.Contains(note, "harvested all 35 examples") {
		t.Errorf("changed teacher: note %q", note)
	}
}

// TestIncrementalWithoutRelease: with nothing published, an incremental run
// harvests everything and says why; a non-incremental run prints no note.
func TestIncrementalWithoutRelease(t *testing.T) {
	t.Setenv("FAKE_TEACHER_KEY", "sk-fake")
	dir := t.TempDir()
	ct := newCountingTeacher(t)
	r := writeIncRecipe(t, dir, ct, incRows(0, 12))
	res := runHarvest(t, r, filepath.Join(dir, "runs"), true)
	if asked := ct.take(); len(asked) != 12 {
		t.Errorf("asked %d prompts, want 12", len(asked))
	}
	h := res.Manifest.Stage("harvest")
	if fmt.Sprint(h.Summary["new_examples"]) != "12" || fmt.Sprint(h.Summary["carried_over"]) != "0" || h.Summary["incremental_base_version"] != "" {
		t.Errorf("summary %v", h.Summary)
	}
	if n := len(readLabels(t, res)); n != 12 {
		t.Errorf("%d rows, want 12", n)
	}
	note := IncrementalNote(res.Manifest)
	if !strings.Contains(note, "no published release of inc-test") || !strings.Contains(note, "harvested all 12 examples") {
		t.Errorf("note %q", note)
	}
	plain := runHarvest(t, r, filepath.Join(dir, "runs-plain"), false)
	if note := IncrementalNote(plain.Manifest); note != "" {
		t.Errorf("non-incremental run has a note: %q", note)
	}
	if plain.Manifest.Stage("harvest").Key == h.Key {
		t.Error("incremental and plain harvests share a cache key")
	}
}

// TestReleaseFilesIncludeSoftLabels: the publish stage puts the harvest's
// soft labels into the release, the base of the next incremental run.
func TestReleaseFilesIncludeSoftLabels(t *testing.T) {
	runDir := t.TempDir()
	for _, p := range []string{"train/model/config.json", "train/model/model.safetensors", "eval/report.json", "eval/report.md",
		"eval/report.html", "eval/" + RoutesFile, "harvest/" + SoftLabelsFile, "harvest/journal.jsonl", ManifestName} {
		p = filepath.Join(runDir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &recipes.Recipe{Name: "x"}
	r.Quantize.Method = "none"
	files, err := releaseFiles(&StageContext{Recipe: r, RunDir: runDir})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		if f.Name == ReleaseSoftLabels && f.Path != filepath.Join(runDir, "harvest", SoftLabelsFile) {
			t.Errorf("%s from %s", f.Name, f.Path)
		}
	}
	if !slices.Contains(names, ReleaseSoftLabels) || slices.Contains(names, "harvest/journal.jsonl") {
		t.Errorf("release files %v", names)
	}
}
