package gateway

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCaptureDataset: escalated answers of a routed model become JSONL
// training rows with the raw input as text and the label the answer names;
// a generic model's answer is the label as it is; answers that name no
// label, and tiers not captured, are left out.
func TestCaptureDataset(t *testing.T) {
	dir := t.TempDir()
	e := newRouted(t, "")
	path := filepath.Join(dir, "capture", "traffic.jsonl")
	for _, name := range []string{"sentiment", "chat"} {
		m := e.g.models[name]
		m.cfg.Capture = CaptureConfig{Enabled: true, Dataset: path, Tiers: []string{TierPremium, TierMid}}
		m.redact = chainRedactors([]string{"email"}, nil)
		w, err := newDatasetWriter(path, time.Hour, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		m.dataset = w
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the dataset file is not created empty at start: %v", err)
	}
	e.post(t, "/v1/chat/completions", chatBody("sentiment", "Great tea", ""))                                       // student answers: not captured
	e.post(t, "/v1/chat/completions", chatBody("sentiment", "LOW tea, mail me at bob@example.com LABEL:other", "")) // escalated to mid
	resp, _ := e.post(t, "/v1/chat/completions", chatBody("chat", hardText, ""))                                    // premium
	e.g.Flush()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []DatasetRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r DatasetRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	byTier := map[string]DatasetRow{}
	for _, r := range rows {
		byTier[r.Tier] = r
	}
	mid := byTier[TierMid]
	if mid.Text != "LOW tea, mail me at [EMAIL] LABEL:other" || mid.Label != "other" || mid.Model != "mid-model" || mid.ID == "" || mid.Time.IsZero() {
		t.Errorf("mid row %+v", mid)
	}
	pre := byTier[TierPremium]
	if pre.Text != hardText || pre.Label != strings.TrimSpace(pre.Answer) || !strings.HasPrefix(pre.Label, "premium: ") || pre.ID != resp.Header.Get("X-Request-Id") {
		t.Errorf("premium row %+v (request %s)", pre, resp.Header.Get("X-Request-Id"))
	}
}
