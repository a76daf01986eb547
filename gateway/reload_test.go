package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/routes"
	"github.com/distillery/distillery/store"
)

var tinyTok = sync.OnceValues(func() (*model.TrainedTokenizer, error) {
	texts := []string{"great tea, loved it", "other things happen", "the coffee was bad", "Review: Answer: great other",
		"Does this review give the product five stars? Answer great or other."}
	return model.TrainBPE(texts, model.BPETrainOptions{VocabSize: 320})
})

// tinyRelease writes a release folder: a random tiny checkpoint (seed),
// its tokenizer and a routes.json for version.
func tinyRelease(t testing.TB, version string, seed uint64) string {
	t.Helper()
	tt, err := tinyTok()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mdir := filepath.Join(dir, "model")
	eos := tt.VocabSize() - 1 // <|im_end|>
	cfg := &model.Config{ModelType: "qwen3", Architectures: []string{"Qwen3ForCausalLM"}, HiddenSize: 32, IntermediateSize: 64, NumHiddenLayers: 1,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 8, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositionEmbeddings: 256,
		VocabSize: tt.VocabSize(), TieWordEmbeddings: true, HiddenAct: "silu", EOSTokenID: model.TokenIDs{eos}}
	if err := model.SaveCheckpoint(mdir, cfg, model.RandomWeights(cfg, seed, 0.2), model.F32, 0); err != nil {
		t.Fatal(err)
	}
	if err := tt.Save(mdir); err != nil {
		t.Fatal(err)
	}
	r := routes.Example()
	r.Model, r.Version = "tiny", version
	r.ConfidenceThreshold = 0 // never escalate: every answer is the student's
	r.Artifacts = routes.Artifacts{Model: "model"}
	if err := r.Write(filepath.Join(dir, routes.FileName)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func publishDir(t testing.TB, st store.Store, name, version, dir string) {
	t.Helper()
	var files []store.File
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, store.File{Path: p, Name: filepath.ToSlash(rel)})
		}
		return nil
	})
	if _, err := store.Publish(context.Background(), st, name, version, files, nil); err != nil {
		t.Fatal(err)
	}
}

// TestHotReloadUnderLoad serves a real tiny student from a file:// store
// while clients keep sending requests, publishes a new version, and checks
// that the gateway swaps to it without a failed request.
func TestHotReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loads real models")
	}
	storeDir := t.TempDir()
	st, err := store.Open(context.Background(), "file://"+storeDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	publishDir(t, st, "tiny", "v1", tinyRelease(t, "v1", 1))
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
models:
  - name: tiny
    student: {store: "file://%s", release: tiny, poll: 1h, cache_dir: %s}
`, storeDir, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	if raceBuild {
		// The race detector's checkptr trips on GoMLX's AVX2 kernels: under
		// -race the store, download and swap are real, the model scripted.
		testLoadLocal = func(modelDir, tokPath, id string) (Backend, *tokenEmbedder, error) {
			if _, err := os.Stat(filepath.Join(modelDir, "model.safetensors")); err != nil {
				return nil, nil, err
			}
			return &labelBackend{}, nil, nil
		}
		defer func() { testLoadLocal = nil }()
	}
	g, err := NewGateway(context.Background(), cfg, GatewayOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	e := &routedEnv{g: g}
	e.ts = newHTTPTest(t, g.Handler())

	var ok, bad atomic.Int64
	seen := sync.Map{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Post(e.ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("tiny", "Loved this tea", "")))
				if err != nil {
					bad.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get(HeaderTier) != TierStudent {
					bad.Add(1)
					continue
				}
				ok.Add(1)
				seen.Store(resp.Header.Get(HeaderVersion), true)
			}
		}()
	}
	waitFor(t, func() bool { return ok.Load() >= 5 })
	publishDir(t, st, "tiny", "v2", tinyRelease(t, "v2", 2))
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := ok.Load()
	waitFor(t, func() bool { _, v2 := seen.Load("v2"); return v2 && ok.Load() >= before+5 })
	close(stop)
	wg.Wait()
	_, v1 := seen.Load("v1")
	t.Logf("%d requests answered during the reload, %d failed; reloads %d", ok.Load(), bad.Load(), g.models["tiny"].student.reloads.Load())
	if bad.Load() != 0 || !v1 || g.models["tiny"].student.reloads.Load() != 1 {
		t.Errorf("failed %d, saw v1 %v", bad.Load(), v1)
	}
}
