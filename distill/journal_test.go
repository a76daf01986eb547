package distill

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/distillery/distillery/datasets"
)

func TestJournalDurableAndTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	j, recs, err := OpenJournal(path)
	if err != nil || len(recs) != 0 {
		t.Fatal(err, recs)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j.Append(Record{Key: fmt.Sprint("k", i), Response: Response{Text: "x", InputTokens: i}, CostUSD: 0.01}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	j.Close()
	// A crash mid-write leaves a torn last line: it is dropped, the rest kept.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"key":"torn","response":{"Te`)
	f.Close()
	j, recs, err = OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 50 || recs["k7"].Response.InputTokens != 7 {
		t.Fatalf("%d records after reopen", len(recs))
	}
	if err := j.Append(Record{Key: "after"}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	recs, err = ReadJournal(path)
	if err != nil || len(recs) != 51 || recs["after"].Key != "after" {
		t.Fatalf("after append past a torn tail: %d records, %v", len(recs), err)
	}
}

func TestBudgetNeverExceeded(t *testing.T) {
	b := NewBudget(0.10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.Reserve(0.003) == nil {
				mu.Lock()
				granted++
				mu.Unlock()
				b.Settle(0.003, 0.002)
			}
		}()
	}
	wg.Wait()
	if b.Spent() > 0.10 || granted == 0 {
		t.Fatalf("spent %v with %d requests", b.Spent(), granted)
	}
	if err := NewBudget(0.001).Reserve(0.002); err != ErrBudget {
		t.Fatalf("over-budget reservation: %v", err)
	}
	if err := NewBudget(0).Reserve(1e9); err != nil {
		t.Fatalf("no cap: %v", err)
	}
}

func TestLabelDist(t *testing.T) {
	labels := []string{"great", "other"}
	lp := math.Log
	tests := []struct {
		name string
		resp Response
		want map[string]float64
	}{
		{"top-k over labels and tail", Response{Text: "great", Tokens: []TokenLogprob{{Token: "great", Logprob: lp(0.7),
			Top: []TopLogprob{{Token: "great", Logprob: lp(0.7)}, {Token: " Other", Logprob: lp(0.2)}, {Token: "ok", Logprob: lp(0.05)}}}}},
			map[string]float64{"great": 0.7, "other": 0.2, datasets.OtherLabel: 0.1}},
		{"leading blank token skipped", Response{Text: " other", Tokens: []TokenLogprob{{Token: " ", Logprob: lp(0.9)},
			{Token: "other", Top: []TopLogprob{{Token: "other", Logprob: lp(0.6)}, {Token: "gre", Logprob: lp(0.4)}}}}},
			map[string]float64{"other": 0.6, "great": 0.4}},
		{"no logprobs: parsed answer", Response{Text: "Great."}, map[string]float64{"great": 1}},
		{"no logprobs: unparseable", Response{Text: "I cannot say"}, map[string]float64{datasets.OtherLabel: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dist := LabelDist(tc.resp, labels)
			if len(dist) != 3 {
				t.Fatalf("dist %v", dist)
			}
			var sum float64
			for _, d := range dist {
				sum += float64(d.Prob)
				if math.Abs(float64(d.Prob)-tc.want[d.Label]) > 1e-5 {
					t.Errorf("%s = %v, want %v", d.Label, d.Prob, tc.want[d.Label])
				}
			}
			if math.Abs(sum-1) > 1e-5 {
				t.Errorf("sum %v", sum)
			}
		})
	}
	for answer, want := range map[string]string{"great": "great", " Other\n": "other", "great!": "great", "otherwise": "other", "meh": ""} {
		if got := ParseLabel(answer, labels); got != want {
			t.Errorf("ParseLabel(%q) = %q, want %q", answer, got, want)
		}
	}
}

func TestPromptMessagesAndKeys(t *testing.T) {
	p := PromptSpec{Template: "{instruction}\n\nReview: {text}", Instruction: "Pick one of {labels}.", Labels: []string{"a", "b"},
		System: "sys", FewShot: [][2]string{{"good", "a"}}}
	ms := p.Messages("Nice  tea")
	if len(ms) != 4 || ms[0].Role != "system" || ms[1].Content != "Pick one of a, b.\n\nReview: good" || ms[2].Content != "a" || ms[3].Content != "Pick one of a, b.\n\nReview: Nice  tea" {
		t.Fatalf("messages: %+v", ms)
	}
	k1 := requestKey("m", Request{Messages: ms, MaxTokens: 4}, "")
	k2 := requestKey("m", Request{Messages: p.Messages("nice tea "), MaxTokens: 4}, "")
	k3 := requestKey("m", Request{Messages: p.Messages("nice tea"), MaxTokens: 5}, "")
	if k1 != k2 || k1 == k3 {
		t.Errorf("keys: normalised prompts must match, other settings must not: %s %s %s", k1, k2, k3)
	}
	if n := maxInputTokens(Request{Messages: ms}); n < len("Pick one of a, b.\n\nReview: Nice  tea") {
		t.Errorf("max input tokens %d below the byte count", n)
	}
}

// Records appended to an open journal are readable by another reader at
// once, past the zeros of the space reserved ahead (a crash leaves them).
func TestJournalReadableWhileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	j, _, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 3 {
		if err := j.Append(Record{Key: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := ReadJournal(path)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records while open: %v", len(recs), err)
	}
	if fi, _ := os.Stat(path); fi.Size() < journalChunk {
		t.Logf("no space reserved ahead on this file system (size %d)", fi.Size())
	}
}
