package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distillery/distillery/openai"
)

// echoBackend is a deterministic Backend for protocol tests: it "generates"
// the words of its prompt (for chat, the last message) as tokens, the first
// bare and the rest with a leading space. Token i has log probability
// -(i+1)/8 and five alternatives: itself, then alt1..alt4.
//
// Some words act instead of being echoed:
//
//	FAIL      return an error before any token
//	FAILLATE  return an error here, after the tokens before it
//	BLOCK     block here until the context ends
//	split:xy  emit the bytes of "xy" one token each
type echoBackend struct {
	maxContext int
	gate       chan struct{} // when set, each generation waits for a value first
	stubborn   bool          // wait at the gate even after the context ends

	mu      sync.Mutex
	blocked chan struct{} // closed when a generation reaches BLOCK
	ended   chan error    // receives the ctx error of a BLOCKed generation

	active, maxActive atomic.Int32
	calls             atomic.Int32
	lastParams        atomic.Pointer[Params]
}

func newEcho() *echoBackend {
	return &echoBackend{maxContext: 64, blocked: make(chan struct{}), ended: make(chan error, 1)}
}

func (b *echoBackend) ID() string      { return "test-model" }
func (b *echoBackend) MaxContext() int { return b.maxContext }

func (b *echoBackend) Chat(ctx context.Context, msgs []openai.ChatMessage, p Params, emit func(Token) error) (Result, error) {
	prompt := 0
	for _, m := range msgs {
		prompt += len(strings.Fields(m.Content.String())) + 1 // +1: the role marker of a template
	}
	return b.generate(ctx, msgs[len(msgs)-1].Content.String(), prompt, p, emit)
}

func (b *echoBackend) Complete(ctx context.Context, prompt string, p Params, emit func(Token) error) (Result, error) {
	return b.generate(ctx, prompt, len(strings.Fields(prompt)), p, emit)
}

func (b *echoBackend) generate(ctx context.Context, text string, promptTokens int, p Params, emit func(Token) error) (Result, error) {
	b.calls.Add(1)
	b.lastParams.Store(&p)
	n := b.active.Add(1)
	defer b.active.Add(-1)
	for {
		m := b.maxActive.Load()
		if n <= m || b.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	res := Result{PromptTokens: promptTokens}
	if promptTokens > b.maxContext {
		return res, fmt.Errorf("echo backend: %d prompt tokens, context holds %d: %w", promptTokens, b.maxContext, ErrPromptTooLong)
	}
	if b.gate != nil && b.stubborn {
		<-b.gate
	} else if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	words := strings.Fields(text)
	if len(words) > 0 && words[0] == "FAIL" {
		return res, errors.New("echo backend: exploded")
	}
	var toks []Token
	for i, w := range words {
		space := ""
		if i > 0 {
			space = " "
		}
		switch {
		case w == "FAILLATE" || w == "BLOCK":
			toks = append(toks, Token{Text: w})
		case strings.HasPrefix(w, "split:"):
			for _, c := range []byte(space + w[len("split:"):]) {
				toks = append(toks, Token{Text: string([]byte{c}), Bytes: []byte{c}})
			}
		default:
			toks = append(toks, Token{Text: space + w})
		}
	}
	for i, t := range toks {
		if p.MaxTokens > 0 && i >= p.MaxTokens || promptTokens+i >= b.maxContext {
			res.FinishReason = "length"
			return res, nil
		}
		switch t.Text {
		case "FAILLATE":
			return res, errors.New("echo backend: exploded mid-way")
		case "BLOCK":
			b.mu.Lock()
			close(b.blocked)
			b.mu.Unlock()
			<-ctx.Done()
			b.ended <- ctx.Err()
			return res, fmt.Errorf("echo backend: %w", ctx.Err())
		}
		t.Logprob = -float64(i+1) / 8
		if p.Logprobs {
			t.Top = []TopToken{{Text: t.Text, Bytes: t.Bytes, Logprob: t.Logprob}}
			for k := 1; k <= 4; k++ {
				t.Top = append(t.Top, TopToken{Text: fmt.Sprintf("alt%d", k), Logprob: t.Logprob - float64(k)})
			}
		}
		if err := emit(t); err != nil {
			res.CompletionTokens = i + 1
			return res, fmt.Errorf("echo backend: %w", err)
		}
		res.CompletionTokens = i + 1
	}
	res.FinishReason = "stop"
	return res, nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
