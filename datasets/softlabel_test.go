package datasets

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goodSoftLabel returns a valid classification soft label.
func goodSoftLabel(id string) SoftLabel {
	top := []float32{-0.1, -3.2, -4.5}
	return SoftLabel{
		ID:                 id,
		Prompt:             "Review: tasty snack\nLabel:",
		Completion:         " great",
		CompletionIDs:      []int32{2294},
		CompletionLogprobs: []float32{-0.1},
		TopK: []TopK{{
			IDs:      []int32{2294, 1023, 77},
			Tokens:   []string{" great", " other", " good"},
			Logprobs: top,
			TailMass: TailMassOf(top),
		}},
		LabelDist:    []LabelProb{{"great", 0.95}, {"other", 0.04}, {OtherLabel, 0.01}},
		Label:        "great",
		TeacherModel: "teacher-large",
		InputTokens:  57,
		OutputTokens: 1,
		CostUSD:      0.000123,
		LatencyMS:    412.5,
		FinishReason: "stop",
		Split:        "train",
	}
}

func TestSoftLabelRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "labels.parquet")
	w, err := NewSoftLabelWriter(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	var want []SoftLabel
	for i := range 10 {
		s := goodSoftLabel("row-" + string(rune('a'+i)))
		switch i {
		case 3: // generation task: no label distribution, ids unknown
			s.LabelDist, s.Label, s.CompletionIDs = nil, "", nil
			s.TopK[0].IDs = nil
		case 5: // an API that returned no logprobs at all
			s.CompletionIDs, s.CompletionLogprobs, s.TopK = nil, nil, nil
		}
		want = append(want, s)
	}
	if err := w.Write(want[:4]...); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("file published before Close (stat err %v)", err)
	}
	for _, s := range want[4:] {
		if err := w.Write(s); err != nil {
			t.Fatal(err)
		}
	}
	if w.Rows() != 10 {
		t.Errorf("Rows() = %d", w.Rows())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Write(want[0]); err == nil {
		t.Error("Write after Close succeeded")
	}
	got, err := ReadSoftLabels(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// A canonical dataset is not a soft-label file, and vice versa.
	if _, err := ReadExamples(path); err == nil || !strings.Contains(err.Error(), `not a canonical dataset: no "text" column`) {
		t.Errorf("ReadExamples(soft labels) err = %v", err)
	}
}

func TestSoftLabelWriterRejectsAndAborts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "labels.parquet")
	if err := os.WriteFile(path, []byte("previous"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := NewSoftLabelWriter(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := goodSoftLabel("bad-row")
	bad.CompletionLogprobs = []float32{0.5}
	err = w.Write(goodSoftLabel("ok"), bad)
	if err == nil || !strings.Contains(err.Error(), `soft label "bad-row": completion_logprobs[0]: logprob 0.5`) {
		t.Errorf("err = %v", err)
	}
	if w.Rows() != 0 {
		t.Errorf("a rejected call wrote %d rows", w.Rows())
	}
	w.Abort()
	w.Abort()
	if b, err := os.ReadFile(path); err != nil || string(b) != "previous" {
		t.Errorf("Abort touched the published file: %q, %v", b, err)
	}
	mustNotExist(t, filepath.Join(dir, "nothing"))

	if _, err := NewSoftLabelWriter(filepath.Join(path, "under-a-file.parquet"), 0); err == nil {
		t.Error("writer under a regular file succeeded")
	}
}

func TestSoftLabelValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *SoftLabel)
		want   string
	}{
		{"empty id", func(s *SoftLabel) { s.ID = "" }, "empty id"},
		{"ids vs logprobs", func(s *SoftLabel) { s.CompletionIDs = []int32{1, 2} }, "completion_logprobs has 1 positions, other per-position columns have 2"},
		{"top_k length", func(s *SoftLabel) { s.TopK = append(s.TopK, s.TopK[0]) }, "top_k has 2 positions, other per-position columns have 1"},
		{"positive logprob", func(s *SoftLabel) { s.CompletionLogprobs[0] = 0.3 }, "completion_logprobs[0]: logprob 0.3, want a finite number <= 0"},
		{"NaN logprob", func(s *SoftLabel) { s.CompletionLogprobs[0] = float32(math.NaN()) }, "completion_logprobs[0]: logprob NaN"},
		{"-Inf logprob", func(s *SoftLabel) {
			s.TopK[0].Logprobs[2] = float32(math.Inf(-1))
			s.TopK[0].TailMass = TailMassOf(s.TopK[0].Logprobs)
		}, "top_k[0].logprobs[2]: logprob -Inf"},
		{"top_k tokens vs logprobs", func(s *SoftLabel) { s.TopK[0].Tokens = s.TopK[0].Tokens[:2] }, "top_k[0]: 2 tokens but 3 logprobs"},
		{"top_k ids", func(s *SoftLabel) { s.TopK[0].IDs = []int32{1} }, "top_k[0]: 1 ids but 3 tokens"},
		{"top_k positive", func(s *SoftLabel) { s.TopK[0].Logprobs[1] = 1 }, "top_k[0].logprobs[1]: logprob 1"},
		{"tail mass range", func(s *SoftLabel) { s.TopK[0].TailMass = 1.5 }, "top_k[0]: tail_mass 1.5 is not in [0,1]"},
		{"tail mass inconsistent", func(s *SoftLabel) { s.TopK[0].TailMass = 0.5 }, "top_k[0]: tail_mass 0.5, but the logprobs leave"},
		{"dist sum", func(s *SoftLabel) { s.LabelDist[0].Prob = 0.5 }, "label_dist sums to 0.55, want 1"},
		{"dist negative", func(s *SoftLabel) { s.LabelDist[1].Prob = -0.04 }, `label_dist[1] ("other"): probability -0.04 is not in [0,1]`},
		{"dist repeat", func(s *SoftLabel) { s.LabelDist[1].Label = "great" }, `label_dist: label "great" appears twice`},
		{"label not in dist", func(s *SoftLabel) { s.Label = "meh" }, `label "meh" is not in label_dist`},
		{"tokens", func(s *SoftLabel) { s.OutputTokens = -1 }, "negative token count"},
		{"cost", func(s *SoftLabel) { s.CostUSD = -1 }, "cost_usd -1 is negative"},
		{"split", func(s *SoftLabel) { s.Split = "dev" }, `unknown split "dev"`},
	}
	if err := goodSoftLabel("x").Validate(); err != nil {
		t.Fatalf("good label: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := goodSoftLabel("r1")
			tc.mutate(&s)
			err := s.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			want := `soft label "r1": ` + tc.want
			if s.ID == "" {
				want = `soft label "": ` + tc.want
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err %q\nwant prefix %q", err, want)
			}
		})
	}
}

func TestTailMassOf(t *testing.T) {
	for _, tc := range []struct {
		lps  []float32
		want float64
	}{
		{nil, 1},
		{[]float32{0}, 0},
		{[]float32{float32(math.Log(0.5)), float32(math.Log(0.25))}, 0.25},
		{[]float32{0, 0}, 0}, // clamped, not -1
	} {
		if got := float64(TailMassOf(tc.lps)); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("TailMassOf(%v) = %v, want %v", tc.lps, got, tc.want)
		}
	}
}
