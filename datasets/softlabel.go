package datasets

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/distillery/distillery/store"
	"github.com/parquet-go/parquet-go"
)

// TopK holds the teacher's most likely tokens at one completion position.
type TopK struct {
	// IDs are teacher-tokenizer token ids; empty when the API returns only
	// token strings.
	IDs []int32 `parquet:"ids,list" json:"ids,omitempty"`
	// Tokens are the token strings, most likely first.
	Tokens []string `parquet:"tokens,list" json:"tokens"`
	// Logprobs are natural-log probabilities (<= 0), parallel to Tokens.
	Logprobs []float32 `parquet:"logprobs,list" json:"logprobs"`
	// TailMass is the probability outside the listed tokens:
	// 1 - sum(exp(Logprobs)), clamped to [0,1]. See TailMassOf.
	TailMass float32 `parquet:"tail_mass" json:"tail_mass"`
}

// LabelProb is the teacher's probability for one label.
type LabelProb struct {
	Label string  `parquet:"label" json:"label"`
	Prob  float32 `parquet:"prob" json:"prob"`
}

// OtherLabel is the LabelDist entry holding the probability mass that falls
// on none of the recipe's labels.
const OtherLabel = "__other__"

// SoftLabel is one teacher answer: the Parquet schema written by the
// harvest and read by training. Column names are in the parquet tags.
type SoftLabel struct {
	ID         string `parquet:"id" json:"id"` // Example.ID of the input row
	Prompt     string `parquet:"prompt" json:"prompt"`
	Completion string `parquet:"completion" json:"completion"`
	// CompletionIDs are the teacher-tokenizer ids of the completion, when known.
	CompletionIDs []int32 `parquet:"completion_ids,list" json:"completion_ids,omitempty"`
	// CompletionLogprobs is the natural-log probability of each chosen token.
	CompletionLogprobs []float32 `parquet:"completion_logprobs,list" json:"completion_logprobs,omitempty"`
	// TopK holds the top alternatives at each completion position.
	TopK []TopK `parquet:"top_k,list" json:"top_k,omitempty"`
	// LabelDist is, for classification, the distribution over the recipe's
	// labels plus OtherLabel; it sums to 1.
	LabelDist []LabelProb `parquet:"label_dist,list" json:"label_dist,omitempty"`
	// Label is the most probable label (argmax of LabelDist), if any.
	Label        string  `parquet:"label,optional" json:"label,omitempty"`
	TeacherModel string  `parquet:"teacher_model" json:"teacher_model"`
	InputTokens  int64   `parquet:"input_tokens" json:"input_tokens"`
	OutputTokens int64   `parquet:"output_tokens" json:"output_tokens"`
	CostUSD      float64 `parquet:"cost_usd" json:"cost_usd"`
	LatencyMS    float64 `parquet:"latency_ms" json:"latency_ms"`
	FinishReason string  `parquet:"finish_reason" json:"finish_reason"`
	Split        string  `parquet:"split" json:"split"`
}

// Tolerances of Validate.
const (
	// logprobSlack allows logprobs a hair above 0, as APIs round them.
	logprobSlack = 1e-4
	// massSlack is how far probability sums may stray from 1.
	massSlack = 1e-3
)

// TailMassOf returns 1 - sum(exp(logprobs)), clamped to [0,1]: the
// probability the teacher gave to tokens outside a top-k list.
func TailMassOf(logprobs []float32) float32 {
	var sum float64
	for _, lp := range logprobs {
		sum += math.Exp(float64(lp))
	}
	return float32(math.Min(1, math.Max(0, 1-sum)))
}

// Validate checks a soft label's internal consistency: an id; per-position
// arrays (CompletionIDs, CompletionLogprobs, TopK) of one length when
// present; logprobs <= 0 and finite; each top-k list's parallel arrays of
// equal length and its tail mass in [0,1] and consistent with its logprobs;
// a label distribution of probabilities in [0,1], without repeats, that
// sums to 1 (±0.001), and naming Label when both are set; non-negative
// counts and cost; and a split that is empty or train, val or test.
func (s SoftLabel) Validate() error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("soft label %q: %w", s.ID, err)
	}
	return nil
}

func (s SoftLabel) validate() error {
	if s.ID == "" {
		return errors.New("empty id")
	}
	n := -1
	for _, a := range []struct {
		name string
		len  int
	}{{"completion_ids", len(s.CompletionIDs)}, {"completion_logprobs", len(s.CompletionLogprobs)}, {"top_k", len(s.TopK)}} {
		if a.len == 0 {
			continue
		}
		if n >= 0 && a.len != n {
			return fmt.Errorf("%s has %d positions, other per-position columns have %d", a.name, a.len, n)
		}
		n = a.len
	}
	if i, err := checkLogprobs(s.CompletionLogprobs); err != nil {
		return fmt.Errorf("completion_logprobs[%d]: %w", i, err)
	}
	for p, k := range s.TopK {
		if len(k.Tokens) != len(k.Logprobs) {
			return fmt.Errorf("top_k[%d]: %d tokens but %d logprobs", p, len(k.Tokens), len(k.Logprobs))
		}
		if len(k.IDs) != 0 && len(k.IDs) != len(k.Tokens) {
			return fmt.Errorf("top_k[%d]: %d ids but %d tokens", p, len(k.IDs), len(k.Tokens))
		}
		if i, err := checkLogprobs(k.Logprobs); err != nil {
			return fmt.Errorf("top_k[%d].logprobs[%d]: %w", p, i, err)
		}
		tm := float64(k.TailMass)
		if math.IsNaN(tm) || tm < 0 || tm > 1 {
			return fmt.Errorf("top_k[%d]: tail_mass %v is not in [0,1]", p, k.TailMass)
		}
		if want := float64(TailMassOf(k.Logprobs)); math.Abs(tm-want) > massSlack*10 {
			return fmt.Errorf("top_k[%d]: tail_mass %v, but the logprobs leave %v", p, k.TailMass, want)
		}
	}
	if len(s.LabelDist) > 0 {
		var sum float64
		seen := map[string]bool{}
		hasLabel := false
		for i, lp := range s.LabelDist {
			p := float64(lp.Prob)
			if math.IsNaN(p) || p < 0 || p > 1 {
				return fmt.Errorf("label_dist[%d] (%q): probability %v is not in [0,1]", i, lp.Label, lp.Prob)
			}
			if seen[lp.Label] {
				return fmt.Errorf("label_dist: label %q appears twice", lp.Label)
			}
			seen[lp.Label] = true
			hasLabel = hasLabel || lp.Label == s.Label
			sum += p
		}
		if math.Abs(sum-1) > massSlack {
			return fmt.Errorf("label_dist sums to %.4g, want 1", sum)
		}
		if s.Label != "" && !hasLabel {
			return fmt.Errorf("label %q is not in label_dist", s.Label)
		}
	}
	switch {
	case s.InputTokens < 0 || s.OutputTokens < 0:
		return fmt.Errorf("negative token count (input %d, output %d)", s.InputTokens, s.OutputTokens)
	case s.CostUSD < 0 || math.IsNaN(s.CostUSD):
		return fmt.Errorf("cost_usd %v is negative", s.CostUSD)
	case s.LatencyMS < 0 || math.IsNaN(s.LatencyMS):
		return fmt.Errorf("latency_ms %v is negative", s.LatencyMS)
	case s.Split != "" && !ValidSplit(s.Split):
		return fmt.Errorf("unknown split %q", s.Split)
	}
	return nil
}

// checkLogprobs returns the index of the first logprob that is not a finite
// number <= 0 (allowing rounding slack).
func checkLogprobs(lps []float32) (int, error) {
	for i, lp := range lps {
		x := float64(lp)
		if math.IsNaN(x) || math.IsInf(x, 0) || x > logprobSlack {
			return i, fmt.Errorf("logprob %v, want a finite number <= 0", lp)
		}
	}
	return 0, nil
}

// SoftLabelWriter streams SoftLabel rows into a Parquet file.
//
// Durability: the rows go to a temporary file next to path, and only Close
// renames it to path (after fsync), so path holds either nothing (or its
// previous content) or a complete, valid file. A Parquet file is readable
// only once its footer is written by Close, so rows written before a crash
// cannot be recovered from the temporary file: the harvest keeps its own
// journal of answers and, after a crash, replays it into a new writer.
// Flush ends the current row group, bounding the writer's memory and
// pushing the rows to the operating system; it does not make them readable.
//
// A SoftLabelWriter is not safe for concurrent use.
type SoftLabelWriter struct {
	path   string
	pw     *parquet.GenericWriter[SoftLabel]
	finish chan error // tells the WriteAtomic callback to return (nil commits)
	done   chan error // WriteAtomic's result
	rows   int64
	closed bool
}

// DefaultSoftLabelRowGroup is the row-group size used when
// NewSoftLabelWriter is given rowGroupRows <= 0. Soft labels carry top-k
// lists, so their rows are much larger than dataset rows.
const DefaultSoftLabelRowGroup = 4096

// NewSoftLabelWriter starts writing soft labels to path, in row groups of
// at most rowGroupRows rows (DefaultSoftLabelRowGroup when <= 0). The
// caller must end with Close (to publish the file) or Abort.
func NewSoftLabelWriter(path string, rowGroupRows int) (*SoftLabelWriter, error) {
	if rowGroupRows <= 0 {
		rowGroupRows = DefaultSoftLabelRowGroup
	}
	w := &SoftLabelWriter{path: path, finish: make(chan error), done: make(chan error, 1)}
	ready := make(chan io.Writer)
	// store.WriteAtomic drives the temp file, fsync and rename; its callback
	// stays open, parked on w.finish, for the writer's whole life.
	go func() {
		w.done <- store.WriteAtomic(path, func(out io.Writer) error {
			ready <- out
			return <-w.finish
		})
	}()
	select {
	case out := <-ready:
		w.pw = parquet.NewGenericWriter[SoftLabel](out,
			parquet.Compression(&zstdCodec),
			parquet.MaxRowsPerRowGroup(int64(rowGroupRows)),
			parquet.KeyValueMetadata("distillery.schema", "softlabel/v1"),
		)
		return w, nil
	case err := <-w.done:
		return nil, fmt.Errorf("soft labels: %w", err)
	}
}

// Write validates and appends rows. An invalid row is rejected (nothing of
// that call is written) with an error naming it.
func (w *SoftLabelWriter) Write(rows ...SoftLabel) error {
	if w.closed {
		return fmt.Errorf("soft labels %s: write after close", w.path)
	}
	for _, r := range rows {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("soft labels %s: %w", w.path, err)
		}
	}
	if _, err := w.pw.Write(rows); err != nil {
		return fmt.Errorf("soft labels %s: %w", w.path, err)
	}
	w.rows += int64(len(rows))
	return nil
}

// Rows returns the number of rows written so far.
func (w *SoftLabelWriter) Rows() int64 { return w.rows }

// Flush ends the current row group (see the type's note on durability).
func (w *SoftLabelWriter) Flush() error {
	if w.closed {
		return fmt.Errorf("soft labels %s: flush after close", w.path)
	}
	if err := w.pw.Flush(); err != nil {
		return fmt.Errorf("soft labels %s: flush: %w", w.path, err)
	}
	return nil
}

// Close writes the Parquet footer, fsyncs and renames the file into place.
// After an error nothing is published at path.
func (w *SoftLabelWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.pw.Close()
	if err != nil {
		err = fmt.Errorf("soft labels %s: %w", w.path, err)
	}
	w.finish <- err
	if werr := <-w.done; err == nil && werr != nil {
		err = fmt.Errorf("soft labels: %w", werr)
	}
	return err
}

// Abort discards everything written: the temporary file is removed and
// path is left as it was. It is a no-op after Close or Abort.
func (w *SoftLabelWriter) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	w.finish <- errAborted
	<-w.done
}

var errAborted = errors.New("aborted")

// ReadSoftLabels reads every row of a soft-label Parquet file. Empty lists
// come back as nil slices.
func ReadSoftLabels(path string) ([]SoftLabel, error) {
	var out []SoftLabel
	err := readParquetRows(path, []string{"id", "prompt", "completion"}, "a soft-label file", func(s SoftLabel) {
		out = append(out, s.nilEmpty())
	})
	return out, err
}

// nilEmpty replaces empty slices by nil, so that rows read back compare
// equal to the rows written whether those held nil or empty slices.
func (s SoftLabel) nilEmpty() SoftLabel {
	s.CompletionIDs = nilIfEmpty(s.CompletionIDs)
	s.CompletionLogprobs = nilIfEmpty(s.CompletionLogprobs)
	s.LabelDist = nilIfEmpty(s.LabelDist)
	s.TopK = nilIfEmpty(s.TopK)
	for i := range s.TopK {
		k := &s.TopK[i]
		k.IDs, k.Tokens, k.Logprobs = nilIfEmpty(k.IDs), nilIfEmpty(k.Tokens), nilIfEmpty(k.Logprobs)
	}
	return s
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
