package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/distillery/distillery/openai"
)

// complete serves the legacy POST /v1/completions. Each prompt of an array
// gets its own choice, generated in turn within one generation slot.
func (s *Server) complete(w http.ResponseWriter, r *http.Request) {
	info := infoFrom(r)
	var req openai.CompletionRequest
	if e := s.decode(w, r, &req); e != nil {
		e.write(w)
		return
	}
	p, e := s.completionParams(&req)
	if e != nil {
		e.write(w)
		return
	}
	info.model, info.stream = req.Model, req.Stream
	s.run(w, r, func(ctx context.Context) error {
		if req.Stream {
			return s.streamCompletion(ctx, w, r, req.Prompt, p, req.StreamOptions)
		}
		return s.completionOnce(ctx, w, r, req.Prompt, p)
	}, "prompt")
}

func (s *Server) callComplete(prompt string, p Params) func(context.Context, func(Token) error) (Result, error) {
	return func(ctx context.Context, emit func(Token) error) (Result, error) {
		return s.b.Complete(ctx, prompt, p, emit)
	}
}

// completionOnce generates every prompt's completion and sends one reply.
func (s *Server) completionOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, prompts []string, p Params) error {
	resp := openai.CompletionResponse{
		ID: newID("cmpl-"), Object: openai.ObjectTextCompletion, Created: time.Now().Unix(), Model: s.b.ID(),
		Choices: []openai.CompletionChoice{}, Usage: &openai.Usage{},
	}
	for i, prompt := range prompts {
		var (
			text []byte
			lps  *openai.CompletionLogprobs
		)
		if p.Logprobs {
			lps = newLegacyLogprobs()
		}
		res, err := generate(ctx, p.Stop, s.callComplete(prompt, p), func(seg segment, asm *assembler) error {
			text = append(text, seg.text...)
			if lps != nil {
				appendLegacyLogprobs(lps, seg, asm, p.TopLogprobs)
			}
			return nil
		})
		count(r, res)
		if err != nil {
			return err
		}
		resp.Choices = append(resp.Choices, openai.CompletionChoice{
			Text: string(text), Index: i, Logprobs: lps, FinishReason: openai.NullString(res.FinishReason),
		})
		addUsage(resp.Usage, res)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// streamCompletion streams every prompt's completion in turn as
// text_completion chunks, each prompt's last chunk carrying its finish
// reason, then usage when asked, then [DONE].
func (s *Server) streamCompletion(ctx context.Context, w http.ResponseWriter, r *http.Request,
	prompts []string, p Params, opts *openai.StreamOptions) error {
	st := &stream{w: w, id: newID("cmpl-"), created: time.Now().Unix()}
	chunk := func(c openai.CompletionChoice) openai.CompletionResponse {
		return openai.CompletionResponse{
			ID: st.id, Object: openai.ObjectTextCompletion, Created: st.created, Model: s.b.ID(),
			Choices: []openai.CompletionChoice{c},
		}
	}
	send := func(v any) error {
		if st.sse == nil {
			st.open()
		}
		return st.send(v)
	}
	total := &openai.Usage{}
	for i, prompt := range prompts {
		res, err := generate(ctx, p.Stop, s.callComplete(prompt, p), func(seg segment, asm *assembler) error {
			c := openai.CompletionChoice{Text: seg.text, Index: i}
			if p.Logprobs {
				c.Logprobs = newLegacyLogprobs()
				appendLegacyLogprobs(c.Logprobs, seg, asm, p.TopLogprobs)
			}
			return send(chunk(c))
		})
		count(r, res)
		if err != nil {
			if st.sse == nil {
				return err
			}
			infoFrom(r).err = err
			st.fail(s.failure(r, err, "prompt"))
			return nil
		}
		if send(chunk(openai.CompletionChoice{Index: i, FinishReason: openai.NullString(res.FinishReason)})) != nil {
			return nil // the client is gone
		}
		addUsage(total, res)
	}
	if opts != nil && opts.IncludeUsage {
		if send(openai.CompletionResponse{
			ID: st.id, Object: openai.ObjectTextCompletion, Created: st.created, Model: s.b.ID(),
			Choices: []openai.CompletionChoice{}, Usage: total,
		}) != nil {
			return nil
		}
	}
	st.sse.Done()
	return nil
}

func addUsage(u *openai.Usage, res Result) {
	u.PromptTokens += res.PromptTokens
	u.CompletionTokens += res.CompletionTokens
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
}

func newLegacyLogprobs() *openai.CompletionLogprobs {
	return &openai.CompletionLogprobs{
		Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{},
	}
}

// appendLegacyLogprobs adds a segment's tokens to the legacy parallel arrays.
func appendLegacyLogprobs(lp *openai.CompletionLogprobs, seg segment, asm *assembler, top int) {
	for i, t := range seg.toks {
		lp.Tokens = append(lp.Tokens, t.Text)
		lp.TokenLogprobs = append(lp.TokenLogprobs, finite(t.Logprob))
		alts := make(map[string]float64, min(top, len(t.Top)))
		for _, alt := range t.Top[:min(top, len(t.Top))] {
			if _, dup := alts[alt.Text]; !dup {
				alts[alt.Text] = finite(alt.Logprob)
			}
		}
		lp.TopLogprobs = append(lp.TopLogprobs, alts)
		lp.TextOffset = append(lp.TextOffset, asm.charOffset(seg.starts[i]))
	}
}
