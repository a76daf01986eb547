package distill

import (
	"slices"
	"strings"
	"testing"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/model"
)

// TestClassificationCutIgnoresLabel guards against a label leak: a long
// prompt must be cut to the same tokens whatever the row's label, or the
// prompt's length tells the model the answer. The quickstart tokenizer
// spells "great" in two tokens and "other" in one.
func TestClassificationCutIgnoresLabel(t *testing.T) {
	tok, err := model.LoadTokenizer("../models/fine-foods-tokenizer")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := len(tok.Encode("great")), len(tok.Encode("other")); a == b {
		t.Fatalf("the test needs labels of different token lengths (great %d, other %d)", a, b)
	}
	long := "Review: " + strings.Repeat("the coffee was fine and the tea was better ", 40) + "\nAnswer:"
	for _, tc := range []struct {
		name   string
		prompt string
		maxLen int
		cut    bool
	}{
		{"long prompt, cut", long, 96, true},
		{"short prompt", "Review: good tea\nAnswer:", 96, false},
		{"cut at the limit", long, 40, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := SequenceOptions{Tokenizer: tok, MaxLen: tc.maxLen, Labels: []string{"great", "other"}}
			rows := []datasets.SoftLabel{
				{ID: "a", Prompt: tc.prompt, Completion: "great", Label: "great"},
				{ID: "b", Prompt: tc.prompt, Completion: "other", Label: "other"},
			}
			seqs, st, err := BuildSequences(rows, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Truncated > 0; got != tc.cut {
				t.Fatalf("truncated %d rows, want cut=%v", st.Truncated, tc.cut)
			}
			a, b := seqs[0], seqs[1]
			if a.Answer != b.Answer || !slices.Equal(a.IDs[:a.Answer+1], b.IDs[:b.Answer+1]) {
				t.Errorf("the prompt depends on the label: answer positions %d and %d", a.Answer, b.Answer)
			}
			for _, s := range seqs {
				if len(s.IDs) > tc.maxLen {
					t.Errorf("%s: %d tokens, max_seq_len %d", s.ID, len(s.IDs), tc.maxLen)
				}
			}
		})
	}
}
