package distill

import (
	"errors"
	"fmt"
	"math"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/model"
)

// Sequence is one training row in student tokens.
type Sequence struct {
	ID  string
	IDs []int32
	// Loss[t] is 1 where the prediction of IDs[t+1] from position t counts
	// in the hard-label cross-entropy: completion tokens only.
	Loss []float32
	// Soft holds the teacher's distribution over IDs[t+1] at some positions t.
	Soft []SoftTarget
	// Label indexes the target label (classification), else -1.
	Label int
	// Answer is the position that predicts the first completion token.
	Answer int
}

// SoftTarget is the teacher's distribution over the next token at Pos: the
// listed ids with their log-probabilities, the rest of the mass in a tail.
type SoftTarget struct {
	Pos  int
	IDs  []int32
	Logp []float32
}

// SequenceOptions say how soft labels become student sequences.
type SequenceOptions struct {
	Tokenizer *model.Tokenizer
	System    string // system message, if any
	MaxLen    int
	// Labels, for classification: the label distribution becomes the soft
	// target at the answer position, over each label's first token.
	Labels []string
	// TokenKD asks for token-level soft targets from the teacher's top-k;
	// it fails when the teacher's tokens are not the student's.
	TokenKD bool
	// Render re-renders an example's prompt with the last drop tokens of
	// its input text cut, for rows that are too long; nil cuts the
	// prompt's tokens from the left.
	Render func(id string, drop int) (string, bool)
}

// ErrTokenizerMismatch means the teacher's tokens do not line up with the
// student's tokenizer, so token-level distillation is impossible.
var ErrTokenizerMismatch = errors.New("teacher and student tokenizers differ")

// SequenceStats counts what BuildSequences did.
type SequenceStats struct {
	Rows, Truncated, Tokens, CompletionTokens, SoftPositions int
}

// LabelTokens returns each label's first student token (after the chat's
// assistant prefix); labels must start with distinct tokens.
func LabelTokens(tok *model.Tokenizer, labels []string) ([]int32, error) {
	out := make([]int32, len(labels))
	seen := map[int32]string{}
	for i, l := range labels {
		ids := tok.Encode(l)
		if len(ids) == 0 {
			return nil, fmt.Errorf("label %q encodes to no tokens", l)
		}
		out[i] = int32(ids[0])
		if prev, dup := seen[out[i]]; dup {
			return nil, fmt.Errorf("labels %q and %q start with the same token %q: label distillation needs distinct first tokens", prev, l, tok.TokenText(ids[0]))
		}
		seen[out[i]] = l
	}
	return out, nil
}

// BuildSequences turns harvested rows into chat-formatted student sequences:
// the prompt as a user turn, then the teacher's completion and the end of
// turn as the only tokens that count in the loss.
func BuildSequences(rows []datasets.SoftLabel, o SequenceOptions) ([]Sequence, SequenceStats, error) {
	var st SequenceStats
	tok := o.Tokenizer
	eos := tok.EOS()
	if len(eos) == 0 {
		return nil, st, errors.New("the student tokenizer has no end-of-sequence token")
	}
	var labelIDs []int32
	reserve := 0 // tokens kept free for any completion; 0: each row's own
	if len(o.Labels) > 0 {
		var err error
		if labelIDs, err = LabelTokens(tok, o.Labels); err != nil {
			return nil, st, err
		}
		reserve = LabelReserve(tok, o.Labels)
	}
	out := make([]Sequence, 0, len(rows))
	for _, r := range rows {
		s, trunc, err := buildSequence(r, o, labelIDs, eos[0], reserve)
		if err != nil {
			return nil, st, fmt.Errorf("sequence %s: %w", r.ID, err)
		}
		st.Rows++
		if trunc {
			st.Truncated++
		}
		st.Tokens += len(s.IDs)
		for _, l := range s.Loss {
			st.CompletionTokens += int(l)
		}
		st.SoftPositions += len(s.Soft)
		out = append(out, s)
	}
	return out, st, nil
}

func (o SequenceOptions) prefix(prompt string) ([]int, error) {
	var msgs []model.Message
	if o.System != "" {
		msgs = append(msgs, model.Message{Role: "system", Content: o.System})
	}
	text, err := o.Tokenizer.ApplyChat(append(msgs, model.Message{Role: "user", Content: prompt}), true)
	if err != nil {
		return nil, err
	}
	return o.Tokenizer.Encode(text), nil
}

// LabelReserve is the room a classification prompt leaves for its answer:
// the longest label's tokens plus the end of turn. Every row is cut to the
// same budget, whatever its own label: a cut that depended on the answer's
// length would leak the label into the prompt's length, and a model would
// learn to read it there.
func LabelReserve(tok *model.Tokenizer, labels []string) int {
	n := 0
	for _, l := range labels {
		n = max(n, len(tok.Encode(l)))
	}
	return n + 1
}

func buildSequence(r datasets.SoftLabel, o SequenceOptions, labelIDs []int32, eos, reserve int) (Sequence, bool, error) {
	tok := o.Tokenizer
	comp := tok.Encode(r.Completion)
	comp = append(comp, eos)
	if len(comp) >= o.MaxLen {
		comp = comp[:o.MaxLen/2]
	}
	pre, truncated, err := o.PromptIDs(r, max(reserve, len(comp)))
	if err != nil {
		return Sequence{}, false, err
	}
	n := len(pre) + len(comp)
	s := Sequence{ID: r.ID, IDs: make([]int32, n), Loss: make([]float32, n), Label: -1, Answer: len(pre) - 1}
	for i, id := range pre {
		s.IDs[i] = int32(id)
	}
	for i, id := range comp {
		s.IDs[len(pre)+i] = int32(id)
		s.Loss[len(pre)+i-1] = 1
	}
	if len(labelIDs) > 0 {
		if i := indexOf(o.Labels, r.Label); i >= 0 {
			s.Label = i
		}
		if len(r.LabelDist) > 0 {
			s.Soft = append(s.Soft, labelTarget(s.Answer, r.LabelDist, o.Labels, labelIDs))
		}
		return s, truncated, nil
	}
	if o.TokenKD && len(r.TopK) > 0 {
		soft, err := tokenTargets(tok, r, comp, s.Answer)
		if err != nil {
			return Sequence{}, false, err
		}
		s.Soft = soft
	}
	return s, truncated, nil
}

// PromptIDs is a row's prompt in the student's chat format, as training
// sees it: shortened (truncated = true) to leave reserve tokens for the
// completion within MaxLen.
func (o SequenceOptions) PromptIDs(r datasets.SoftLabel, reserve int) (ids []int, truncated bool, err error) {
	pre, err := o.prefix(r.Prompt)
	if err != nil {
		return nil, false, err
	}
	if over := len(pre) + reserve - o.MaxLen; over > 0 {
		pre, err = o.shorten(r, pre, over)
		return pre, true, err
	}
	return pre, false, nil
}

// shorten drops over tokens from the prompt: through Render when it can cut
// the input text, else from the start of the prompt's tokens (keeping the
// chat's closing tokens and the instruction at the end).
func (o SequenceOptions) shorten(r datasets.SoftLabel, pre []int, over int) ([]int, error) {
	budget := len(pre) - over
	if o.Render != nil {
		drop := over
		for range 4 {
			prompt, ok := o.Render(r.ID, drop)
			if !ok {
				break
			}
			p, err := o.prefix(prompt)
			if err != nil {
				return nil, err
			}
			if len(p) <= budget {
				return p, nil
			}
			drop += len(p) - budget
		}
	}
	if budget <= 0 {
		return nil, fmt.Errorf("max_seq_len is too small for the chat prefix")
	}
	return append([]int{}, pre[over:]...), nil
}

func labelTarget(pos int, dist []datasets.LabelProb, labels []string, ids []int32) SoftTarget {
	t := SoftTarget{Pos: pos}
	for _, lp := range dist {
		i := indexOf(labels, lp.Label)
		if i < 0 || lp.Prob <= 0 {
			continue // OtherLabel: the tail bucket
		}
		t.IDs = append(t.IDs, ids[i])
		t.Logp = append(t.Logp, float32(math.Log(float64(lp.Prob))))
	}
	return t
}

// tokenTargets maps the teacher's per-token top-k onto student positions.
// It requires the teacher's tokens to be exactly the student's encoding
// of the completion, and every listed token to be one student token.
func tokenTargets(tok *model.Tokenizer, r datasets.SoftLabel, comp []int, answer int) ([]SoftTarget, error) {
	n := min(len(r.TopK), len(comp)-1) // comp ends with the added EOS
	var out []SoftTarget
	for p := range n {
		k := r.TopK[p]
		if len(k.Tokens) == 0 {
			continue
		}
		if got := tok.TokenText(comp[p]); got != k.Tokens[0] && !contains(k.Tokens, got) {
			return nil, fmt.Errorf("%w: completion token %d is %q for the student but the teacher's top-k at that position is %q; use loss.kind ce (sequence-level KD on the teacher's text)",
				ErrTokenizerMismatch, p, got, k.Tokens)
		}
		t := SoftTarget{Pos: answer + p}
		for j, s := range k.Tokens {
			id, ok := tok.ID(s)
			if !ok {
				ids := tok.Encode(s)
				if len(ids) != 1 {
					return nil, fmt.Errorf("%w: teacher token %q is %d student tokens; use loss.kind ce (sequence-level KD on the teacher's text)", ErrTokenizerMismatch, s, len(ids))
				}
				id = ids[0]
			}
			t.IDs = append(t.IDs, int32(id))
			t.Logp = append(t.Logp, k.Logprobs[j])
		}
		out = append(out, t)
	}
	return out, nil
}

// PackText tokenizes documents for causal-LM pretraining: each followed by
// EOS, concatenated and cut into blocks of blockLen tokens (the last,
// shorter block is dropped unless it is the only one), every token counting.
func PackText(tok *model.Tokenizer, docs []string, blockLen int) ([]Sequence, SequenceStats, error) {
	var st SequenceStats
	eos := tok.EOS()
	if len(eos) == 0 {
		return nil, st, errors.New("the tokenizer has no end-of-sequence token")
	}
	var stream []int32
	for _, d := range docs {
		for _, id := range tok.Encode(d) {
			stream = append(stream, int32(id))
		}
		stream = append(stream, int32(eos[0]))
		st.Rows++
	}
	var out []Sequence
	for off := 0; off < len(stream); off += blockLen {
		end := min(off+blockLen, len(stream))
		if end-off < blockLen && len(out) > 0 {
			break
		}
		ids := stream[off:end]
		loss := make([]float32, len(ids))
		for i := range len(ids) - 1 {
			loss[i] = 1
		}
		out = append(out, Sequence{ID: fmt.Sprintf("block-%d", len(out)), IDs: ids, Loss: loss, Label: -1, Answer: -1})
		st.Tokens += len(ids)
		st.CompletionTokens += len(ids) - 1
	}
	return out, st, nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func contains(xs []string, x string) bool { return indexOf(xs, x) >= 0 }
