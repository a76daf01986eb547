package datasets

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchWords is the vocabulary of the synthetic reviews.
var benchWords = strings.Fields(`the a this product taste great flavor coffee tea
	really good bad not would buy again love it my dog cats kids price amazon
	order box arrived stale fresh sweet salty chocolate bag package "quoted" café
	naïve recommend highly terrible awful best ever, okay. however! tried
	calories organic gluten-free snack morning breakfast cup strong weak`)

// writeBenchJSONL writes n synthetic review rows (~300 characters of text,
// labels great/other) as JSON Lines, the shape of the fine-foods data.
func writeBenchJSONL(tb testing.TB, path string, n int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	rng := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	for i := range n {
		sb.Reset()
		for sb.Len() < 280 {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(benchWords[rng.IntN(len(benchWords))])
		}
		fmt.Fprintf(&sb, " #%d", i) // keep texts distinct
		label := "great"
		if rng.IntN(3) == 0 {
			label = "other"
		}
		text := strings.ReplaceAll(sb.String(), `"`, `\"`)
		fmt.Fprintf(w, `{"id": "r-%06d", "product": "B%09d", "text": "%s", "label": "%s"}`+"\n", i, rng.IntN(1e9), text, label)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkImport100k imports a 100,000-row JSONL file (generated once).
// Run: go test -run=^$ -bench=Import100k -cpu 1 ./datasets
func BenchmarkImport100k(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeBenchJSONL(b, in, n)
	info, err := os.Stat(in)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.Size())
	opts := ImportOptions{
		Sources:    []Source{{Path: in}},
		LabelField: "label",
		IDField:    "id",
		Fractions:  Fractions{Train: 0.8, Val: 0.1, Test: 0.1},
		Seed:       "bench",
		Dedupe:     true,
		Out:        filepath.Join(dir, "out.parquet"),
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := Import(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Rows != n {
			b.Fatalf("imported %d rows, want %d", res.Rows, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkBaselineStdlibDecode100k is the baseline for BenchmarkImport100k:
// only reading the same file line by line and decoding each row with
// encoding/json, without normalising, hashing, splitting or writing Parquet.
func BenchmarkBaselineStdlibDecode100k(b *testing.B) {
	const n = 100_000
	in := filepath.Join(b.TempDir(), "in.jsonl")
	writeBenchJSONL(b, in, n)
	info, err := os.Stat(in)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.Size())
	for b.Loop() {
		f, err := os.Open(in)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		rows := 0
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				b.Fatal(err)
			}
			rows++
		}
		f.Close()
		if rows != n {
			b.Fatalf("%d rows", rows)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
