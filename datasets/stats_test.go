package datasets

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestStatsInspectGolden runs ComputeStats and Inspect on a small fixed
// input, the canonical dataset imported from it and a soft-label file, and
// compares the JSON of all results with testdata/stats_inspect.golden.
// Run with -update after an intended change.
func TestStatsInspectGolden(t *testing.T) {
	dir := t.TempDir()
	const in = "testdata/small.jsonl"
	out := filepath.Join(dir, "small.parquet")
	res, err := Import(context.Background(), ImportOptions{
		Sources: []Source{{Path: in}}, LabelField: "label", IDField: "id",
		Fractions: Fractions{0.6, 0.2, 0.2}, Seed: "golden", Dedupe: true, Out: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	res.Out, res.SHA256 = "", "" // vary with the temp dir and the parquet-go version
	soft := filepath.Join(dir, "soft.parquet")
	w, err := NewSoftLabelWriter(soft, 0)
	if err != nil {
		t.Fatal(err)
	}
	gen := goodSoftLabel("gen")
	gen.Prompt, gen.Completion, gen.LabelDist, gen.Label, gen.Split = "Summarise: a long text", " short", nil, "", "val"
	if err := w.Write(goodSoftLabel("cls"), gen); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	type inspected struct {
		Columns []string         `json:"columns"`
		Rows    []map[string]any `json:"rows"`
	}
	report := map[string]any{"import": res}
	for name, c := range map[string]struct {
		path  string
		limit int
	}{"input_jsonl": {in, 0}, "canonical": {out, 3}, "soft_labels": {soft, 1}} {
		st, err := ComputeStats(c.path)
		if err != nil {
			t.Fatal(err)
		}
		cols, rows, err := Inspect(c.path, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		report[name] = map[string]any{"stats": st, "inspect": inspected{cols, rows}}
	}
	got, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "stats_inspect.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestStatsInspectGolden -update ./datasets)", err)
	}
	if string(got) != string(want) {
		t.Errorf("stats/inspect output differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}

func TestComputeStatsPercentiles(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 1; i <= 20; i++ { // lengths 1..20 code points ("é" counts once)
		b.WriteString(`{"text": "` + strings.Repeat("é", i) + `", "split": "train"}` + "\n")
	}
	path := writeFile(t, dir, "lens.jsonl", b.String())
	st, err := ComputeStats(path)
	if err != nil {
		t.Fatal(err)
	}
	tc := st.TextChars
	if st.Rows != 20 || tc.Min != 1 || tc.Max != 20 || tc.Mean != 10.5 || tc.Median != 10.5 || tc.P95 != 19 || st.BySplit["train"] != 20 {
		t.Errorf("stats %+v", st)
	}
}

func TestStatsInspectErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": oops}\n")
	if _, err := ComputeStats(bad); err == nil || !strings.Contains(err.Error(), bad+":2: invalid JSON") {
		t.Errorf("ComputeStats err = %v", err)
	}
	if _, _, err := Inspect(bad, 0); err == nil || !strings.Contains(err.Error(), bad+":2: invalid JSON") {
		t.Errorf("Inspect err = %v", err)
	}
	if cols, rows, err := Inspect(bad, 1); err != nil || len(rows) != 1 || len(cols) != 1 {
		t.Errorf("Inspect with limit 1 read past the limit: %v %v %v", cols, rows, err)
	}
	if _, err := ComputeStats(filepath.Join(dir, "missing.parquet")); err == nil {
		t.Error("stats of a missing file succeeded")
	}
	notPq := writeFile(t, dir, "x.parquet", "PAR1garbage")
	if _, _, err := Inspect(notPq, 1); err == nil || !strings.Contains(err.Error(), "not a readable Parquet file") {
		t.Errorf("Inspect(garbage) err = %v", err)
	}
}
