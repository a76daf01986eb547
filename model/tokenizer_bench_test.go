package model

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// tokBenchTexts reads the Fine Foods test reviews.
func tokBenchTexts(b *testing.B) []string {
	b.Helper()
	f, err := os.Open(filepath.Join("..", "data", "fine-foods", "test.jsonl"))
	if err != nil {
		b.Skipf("Fine Foods test set: %v", err)
	}
	defer f.Close()
	var texts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var row struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			b.Fatal(err)
		}
		texts = append(texts, row.Text)
	}
	return texts
}

// BenchmarkEncodeFineFoods measures Qwen3 encoding of the 1,000 Fine Foods
// test reviews, in tokens/s: "warm" with the word cache (as when harvesting
// many prompts), "cold" with it off (BPE on every word).
func BenchmarkEncodeFineFoods(b *testing.B) {
	texts := tokBenchTexts(b)
	tk := tokTestTokenizer(b, "qwen3")
	run := func(b *testing.B, tk *Tokenizer) {
		var bytes int
		for _, s := range texts {
			bytes += len(s)
		}
		b.SetBytes(int64(bytes))
		tokens := 0
		b.ResetTimer()
		for b.Loop() {
			for _, s := range texts {
				tokens += len(tk.Encode(s))
			}
		}
		b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	}
	b.Run("warm", func(b *testing.B) { run(b, tk) })
	b.Run("cold", func(b *testing.B) {
		cold := *tk
		model := *tk.model
		model.cache = nil
		cold.model = &model
		run(b, &cold)
	})
}

// BenchmarkLoadTokenizer measures reading Qwen3's tokenizer.json.
func BenchmarkLoadTokenizer(b *testing.B) {
	dir, err := tokTestDir("qwen3")
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		if _, err := LoadTokenizer(dir); err != nil {
			b.Fatal(err)
		}
	}
}
