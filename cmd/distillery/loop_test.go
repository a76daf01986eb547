package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/gateway"
	"github.com/distillery/distillery/gateway/gatewaytest"
	"github.com/distillery/distillery/pipeline"
	"github.com/distillery/distillery/store"
)

// loopRecipe is the retraining recipe of TestRetrainingLoop: the seed
// data, a fixed test split, and the gateway's capture dataset, with the
// labels in the data standing in for the teacher (the captured rows'
// labels are the premium tier's answers).
const loopRecipe = `name: loop-sentiment
task:
  kind: classification
  labels: [great, other]
  instruction: Does this review give the product five stars? Answer great or other.
  prompt_template: "{instruction}\n\nReview: {text}\nAnswer:"
data:
  source:
    - path: seed.jsonl
    - {path: holdout.jsonl, split: test}
    - path: capture/traffic.jsonl
  text_field: text
  label_field: label
  id_field: id
  split: {train: 0.8, val: 0.2, test: 0}
teacher: {kind: labels, max_tokens: 4}
student: {base: %s, max_seq_len: 128}
train: {epochs: 1, max_steps: 2, eval_every: 0, batch_size: 4}
lora: {rank: 4, alpha: 8, target_modules: all-linear}
quantize: {method: awq, group_size: 32, calib_samples: 4}
eval: {metric: accuracy, min_parity: 0, max_int4_drop: 1}
publish: {store: file://%s}
routing: {complexity_band: [1, 2]}
`

// TestRetrainingLoop closes the loop of issue 9 with real processes on
// loopback: a first release is published; `distillery serve --config`
// serves it from the store, escalates to a stand-in premium tier and
// captures the premium answers as a JSONL dataset; `distillery run
// --incremental` carries the first release's rows over, takes the captured
// rows as new examples labelled by premium, and publishes a second
// version; the gateway hot-reloads it and answers with it.
func TestRetrainingLoop(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	pub := filepath.Join(tmp, "published")
	student := tinyStudent(t, root)

	// The data: 12 labelled reviews, 6 held out for the test split, and
	// an empty capture file (the gateway appends to it).
	lines := func(path string, from, n int) []map[string]string {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out []map[string]string
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for i := 0; sc.Scan() && len(out) < n; i++ {
			if i < from {
				continue
			}
			var row map[string]any
			json.Unmarshal(sc.Bytes(), &row)
			out = append(out, map[string]string{"id": fmt.Sprint(row["id"]), "text": fmt.Sprint(row["text"]), "label": fmt.Sprint(row["label"])})
		}
		return out
	}
	writeJSONL := func(path string, rows []map[string]string) {
		var b bytes.Buffer
		for _, r := range rows {
			line, _ := json.Marshal(r)
			b.Write(append(line, '\n'))
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	train := filepath.Join(root, "data/fine-foods/train.jsonl")
	writeJSONL(filepath.Join(tmp, "seed.jsonl"), lines(train, 0, 12))
	writeJSONL(filepath.Join(tmp, "holdout.jsonl"), lines(filepath.Join(root, "data/fine-foods/test.jsonl"), 0, 6))
	traffic := filepath.Join(tmp, "capture", "traffic.jsonl")
	writeJSONL(traffic, nil)
	recipe := filepath.Join(tmp, "loop.yaml")
	os.WriteFile(recipe, []byte(fmt.Sprintf(loopRecipe, student, pub)), 0o644)
	runs := filepath.Join(tmp, "runs")

	run := func(what string) pipeline.Manifest {
		t.Helper()
		start := time.Now()
		r := runCLI(t, tmp, "--runs-dir", runs, "run", "--incremental", "--json", recipe)
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s", what, r.code, r.stderr)
		}
		var m pipeline.Manifest
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatal(err)
		}
		if st := m.Stage("publish"); st.Status != pipeline.StatusDone {
			t.Fatalf("%s: publish %s %s", what, st.Status, st.Error)
		}
		t.Logf("%s: %v, harvest %v", what, time.Since(start).Round(time.Millisecond), m.Stage("harvest").Summary)
		return m
	}
	ctx := context.Background()
	st, err := store.Open(ctx, "file://"+pub, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	latest := func() store.Release {
		rel, err := store.Latest(ctx, st, "loop-sentiment")
		if err != nil {
			t.Fatal(err)
		}
		return rel
	}

	// 1. The first release.
	m1 := run("first run")
	v1 := latest().Version
	carried := fmt.Sprint(m1.Stage("harvest").Summary["harvested"])

	// 2. The gateway serves it from the store and escalates to premium
	// (a random student's calibrated threshold is above 1: it always
	// escalates), capturing premium's answers.
	premium := &gatewaytest.Upstream{Key: "sk-premium"}
	preTS := httptest.NewServer(premium)
	defer preTS.Close()
	gwAddr := freePort(t)
	cfg := fmt.Sprintf(`listen: %s
models:
  - name: sentiment
    student:
      store: file://%s
      release: loop-sentiment
      poll: 200ms
      cache_dir: %s/gw-cache
    capture:
      enabled: true
      dir: %s/capture
      dataset: %s
      flush_every: 100ms
tiers:
  premium: {base_url: %s/v1, model: stub-premium, api_key_env: LOOP_PREMIUM_KEY, price: {input_per_mtok: 5, output_per_mtok: 15}}
`, gwAddr, pub, tmp, tmp, traffic, preTS.URL)
	cfgPath := filepath.Join(tmp, "gateway.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	var gwLogs bytes.Buffer
	gw := exec.Command(bin, "serve", "--config", cfgPath)
	gw.Env = append(os.Environ(), "LOOP_PREMIUM_KEY=sk-premium")
	gw.Stderr = &gwLogs
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gw.Wait() }()
	defer func() {
		gw.Process.Signal(os.Interrupt)
		<-exited
		if t.Failed() {
			t.Logf("gateway log:\n%s", gwLogs.String())
		}
	}()
	base := "http://" + gwAddr
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the gateway exited: %v", err)
		default:
		}
		if time.Since(start) > 60*time.Second {
			t.Fatal("the gateway did not come up")
		}
	}
	ask := func(text string) (*http.Response, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"model": "sentiment", "messages": []map[string]string{{"role": "user", "content": text}}})
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		return resp, string(b)
	}
	// The stand-in premium answers the label a message names after
	// "LABEL:"; here the review's gold label.
	trafficRows := lines(train, 200, 10)
	for _, r := range trafficRows {
		resp, body := ask(r["text"] + " LABEL:" + r["label"])
		if resp.Header.Get("X-Distillery-Tier") != "premium" || resp.Header.Get("X-Distillery-Student-Version") != v1 ||
			!strings.Contains(body, `"content":"`+r["label"]+`"`) {
			t.Fatalf("traffic: %v %s", resp.Header, body)
		}
	}
	// The capture dataset fills within flush_every.
	var captured []gateway.DatasetRow
	for start := time.Now(); len(captured) < len(trafficRows) && time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		captured = captured[:0]
		raw, _ := os.ReadFile(traffic)
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var row gateway.DatasetRow
			if json.Unmarshal([]byte(line), &row) == nil {
				captured = append(captured, row)
			}
		}
	}
	if len(captured) != len(trafficRows) {
		t.Fatalf("captured %d rows, want %d", len(captured), len(trafficRows))
	}
	for i, row := range captured {
		if row.Tier != "premium" || row.Model != "stub-premium" || row.Label != trafficRows[i]["label"] || !strings.HasPrefix(row.Text, trafficRows[i]["text"]) {
			t.Errorf("captured row %d: %+v", i, row)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(tmp, "capture", "capture-*.parquet")); len(files) == 0 {
		t.Error("no harvest-schema capture file")
	}

	// 3. The incremental run: the first release's rows are carried over,
	// the captured rows are the new examples; a second version is
	// published.
	m2 := run("incremental run")
	h := m2.Stage("harvest").Summary
	if fmt.Sprint(h["incremental_base_version"]) != v1 || fmt.Sprint(h["carried_over"]) != carried || fmt.Sprint(h["new_examples"]) != fmt.Sprint(len(trafficRows)) {
		t.Errorf("incremental harvest: %v (first run harvested %s)", h, carried)
	}
	rel := latest()
	v2 := rel.Version
	if v2 == v1 {
		t.Fatal("no new version published")
	}
	dl := t.TempDir()
	if err := store.Download(ctx, st, rel, dl); err != nil {
		t.Fatal(err)
	}
	soft, err := datasets.ReadSoftLabels(filepath.Join(dl, filepath.FromSlash(pipeline.ReleaseSoftLabels)))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]datasets.SoftLabel{}
	for _, s := range soft {
		byID[s.ID] = s
	}
	for _, row := range captured {
		if s, ok := byID[row.ID]; !ok || s.Completion != row.Label {
			t.Errorf("release %s: captured request %s: %+v", v2, row.ID, s)
		}
	}

	// 4. The gateway hot-reloads the new version and answers with it.
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), v2) {
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the gateway did not reload %s", v2)
		}
	}
	resp, _ := ask(trafficRows[0]["text"] + " LABEL:" + trafficRows[0]["label"])
	if got := resp.Header.Get("X-Distillery-Student-Version"); got != v2 {
		t.Errorf("after the reload the request saw student version %q, want %s", got, v2)
	}
	if !strings.Contains(gwLogs.String(), "student reloaded") {
		t.Error("no reload in the gateway log")
	}
}
