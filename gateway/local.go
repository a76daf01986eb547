package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/openai"
)

// Local is a Backend that runs a checkpoint in-process with its tokenizer
// and chat template.
type Local struct {
	id  string
	m   *model.Model
	tok *model.Tokenizer
}

// NewLocal serves m under the model id, with tok for text and chat.
func NewLocal(id string, m *model.Model, tok *model.Tokenizer) (*Local, error) {
	if tok.VocabSize() > m.Config.VocabSize {
		return nil, fmt.Errorf("tokenizer has %d tokens, the model only %d", tok.VocabSize(), m.Config.VocabSize)
	}
	return &Local{id: id, m: m, tok: tok}, nil
}

func (l *Local) ID() string      { return l.id }
func (l *Local) MaxContext() int { return l.m.Config.MaxPositionEmbeddings }

// Chat renders the messages with the tokenizer's chat template, ending with
// the assistant's generation prompt.
func (l *Local) Chat(ctx context.Context, msgs []openai.ChatMessage, p Params, emit func(Token) error) (Result, error) {
	ms := make([]model.Message, len(msgs))
	for i, m := range msgs {
		ms[i] = model.Message{Role: m.Role, Content: m.Content.String()}
	}
	prompt, err := l.tok.ApplyChat(ms, true)
	if err != nil {
		return Result{}, err
	}
	return l.generate(ctx, l.tok.Encode(prompt), p, emit)
}

// Complete tokenizes a raw prompt, with the BOS token first when the
// tokenizer has one (as HF's add_special_tokens does).
func (l *Local) Complete(ctx context.Context, prompt string, p Params, emit func(Token) error) (Result, error) {
	ids := l.tok.Encode(prompt)
	if bos, ok := l.tok.BOS(); ok && (len(ids) == 0 || ids[0] != bos) {
		ids = append([]int{bos}, ids...)
	}
	return l.generate(ctx, ids, p, emit)
}

func (l *Local) generate(ctx context.Context, ids []int, p Params, emit func(Token) error) (Result, error) {
	res := Result{PromptTokens: len(ids)}
	ctxLen := l.MaxContext()
	if len(ids) == 0 {
		return res, fmt.Errorf("empty prompt")
	}
	if len(ids) >= ctxLen {
		return res, fmt.Errorf("%w: %d prompt tokens, the model's context is %d", ErrPromptTooLong, len(ids), ctxLen)
	}
	maxNew := p.MaxTokens
	if maxNew == 0 {
		maxNew = ctxLen - len(ids)
	}
	if len(ids)+maxNew > ctxLen {
		return res, fmt.Errorf("%w: %d prompt tokens + max_tokens %d exceed the model's context of %d", ErrPromptTooLong, len(ids), maxNew, ctxLen)
	}
	seed := rand.Uint64()
	if p.Seed != nil {
		seed = uint64(*p.Seed)
	}
	opts := model.GenerateOptions{MaxNewTokens: maxNew, Temperature: p.Temperature, TopP: p.TopP, Seed: seed}
	if p.Logprobs {
		opts.TopLogprobs = p.TopLogprobs
	}
	eos := l.tok.EOS()
	emitted := 0
	seqs, err := l.m.Generate(ctx, [][]int{ids}, opts, func(_ int, st model.Step) (bool, error) {
		if slices.Contains(eos, st.ID) {
			return true, nil // end of sequence: not part of the answer
		}
		emitted++
		return false, emit(l.token(st))
	})
	res.CompletionTokens = emitted
	if err != nil {
		return res, err
	}
	res.FinishReason = seqs[0].FinishReason
	return res, nil
}

func (l *Local) token(st model.Step) Token {
	t := Token{Text: l.tok.TokenText(st.ID), Bytes: l.tok.TokenBytes(st.ID), Logprob: float64(st.Logprob)}
	for _, alt := range st.Top {
		t.Top = append(t.Top, TopToken{Text: l.tok.TokenText(alt.ID), Bytes: l.tok.TokenBytes(alt.ID), Logprob: float64(alt.Logprob)})
	}
	return t
}
