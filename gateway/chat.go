package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	"net/http"
	"time"

	"github.com/distillery/distillery/openai"
)

// chat serves POST /v1/chat/completions.
func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	info := infoFrom(r)
	var req openai.ChatCompletionRequest
	if e := s.decode(w, r, &req); e != nil {
		e.write(w)
		return
	}
	p, e := s.chatParams(&req)
	if e != nil {
		e.write(w)
		return
	}
	info.model, info.stream = req.Model, req.Stream
	call := func(ctx context.Context, emit func(Token) error) (Result, error) {
		return s.b.Chat(ctx, req.Messages, p, emit)
	}
	s.run(w, r, func(ctx context.Context) error {
		if req.Stream {
			return s.streamChat(ctx, w, r, p, req.StreamOptions, call)
		}
		return s.chatOnce(ctx, w, r, p, call)
	}, "messages")
}

// run waits for a generation slot under the request's deadline and runs gen;
// an error gen returns before it answered becomes the error reply.
func (s *Server) run(w http.ResponseWriter, r *http.Request, gen func(context.Context) error, promptParam string) {
	info := infoFrom(r)
	ctx, cancel := s.requestContext(r)
	defer cancel()
	release, err := s.acquire(ctx)
	if err != nil {
		info.err = err
		if r.Context().Err() != nil {
			info.canceled = true
			openai.WriteError(w, statusClientClosed, openai.InvalidRequestError, "", "", "client closed the request")
			return
		}
		openai.WriteError(w, http.StatusServiceUnavailable, openai.ServerError, "server_busy", "",
			"The server is busy: no generation slot became free within the request timeout. Retry later.")
		return
	}
	defer release()
	if err := gen(ctx); err != nil {
		info.err = err
		s.failure(r, err, promptParam).write(w)
	}
}

// chatOnce generates a whole reply and sends it as one JSON object.
func (s *Server) chatOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, p Params,
	call func(context.Context, func(Token) error) (Result, error)) error {
	var (
		text []byte
		lps  []openai.TokenLogprob
	)
	res, err := generate(ctx, p.Stop, call, func(seg segment, _ *assembler) error {
		text = append(text, seg.text...)
		if p.Logprobs {
			lps = append(lps, chatLogprobs(seg.toks, p.TopLogprobs)...)
		}
		return nil
	})
	count(r, res)
	if err != nil {
		return err
	}
	choice := openai.ChatChoice{
		Message:      openai.ChatMessage{Role: openai.RoleAssistant, Content: openai.TextContent(string(text))},
		FinishReason: res.FinishReason,
	}
	if p.Logprobs {
		choice.Logprobs = &openai.ChatLogprobs{Content: nonNil(lps)}
	}
	writeJSON(w, http.StatusOK, openai.ChatCompletionResponse{
		ID: newID("chatcmpl-"), Object: openai.ObjectChatCompletion, Created: time.Now().Unix(),
		Model: s.b.ID(), Choices: []openai.ChatChoice{choice}, Usage: usage(res),
	})
	return nil
}

// streamChat streams a reply as chat.completion.chunk events: the role,
// then one chunk per released piece of text with its tokens' log
// probabilities, then the finish reason, usage when asked, and [DONE]. The
// stream starts with the first token, so an error before it (a prompt too
// long) still gets a proper status; a later error is sent as an error event.
func (s *Server) streamChat(ctx context.Context, w http.ResponseWriter, r *http.Request, p Params, opts *openai.StreamOptions,
	call func(context.Context, func(Token) error) (Result, error)) error {
	st := &stream{w: w, id: newID("chatcmpl-"), created: time.Now().Unix()}
	chunk := func(delta openai.ChatDelta, lp *openai.ChatLogprobs, finish string) openai.ChatCompletionChunk {
		return openai.ChatCompletionChunk{
			ID: st.id, Object: openai.ObjectChatCompletionChunk, Created: st.created, Model: s.b.ID(),
			Choices: []openai.ChatChunkChoice{{Delta: delta, Logprobs: lp, FinishReason: openai.NullString(finish)}},
		}
	}
	start := func() error {
		if st.sse != nil {
			return nil
		}
		st.open()
		empty := ""
		return st.send(chunk(openai.ChatDelta{Role: openai.RoleAssistant, Content: &empty}, nil, ""))
	}
	res, err := generate(ctx, p.Stop, call, func(seg segment, _ *assembler) error {
		if err := start(); err != nil {
			return err
		}
		text := seg.text
		var lp *openai.ChatLogprobs
		if p.Logprobs {
			lp = &openai.ChatLogprobs{Content: nonNil(chatLogprobs(seg.toks, p.TopLogprobs))}
		}
		return st.send(chunk(openai.ChatDelta{Content: &text}, lp, ""))
	})
	count(r, res)
	if err != nil {
		if st.sse == nil {
			return err
		}
		infoFrom(r).err = err
		st.fail(s.failure(r, err, "messages"))
		return nil
	}
	if err := start(); err != nil {
		return nil // the client is gone; nothing left to tell it
	}
	if st.send(chunk(openai.ChatDelta{}, nil, res.FinishReason)) != nil {
		return nil
	}
	if opts != nil && opts.IncludeUsage {
		if st.send(openai.ChatCompletionChunk{
			ID: st.id, Object: openai.ObjectChatCompletionChunk, Created: st.created, Model: s.b.ID(),
			Choices: []openai.ChatChunkChoice{}, Usage: usage(res),
		}) != nil {
			return nil
		}
	}
	st.sse.Done()
	return nil
}

// stream is an SSE reply that starts lazily.
type stream struct {
	w       http.ResponseWriter
	sse     *openai.SSEWriter
	id      string
	created int64
}

func (st *stream) open() {
	st.sse = openai.NewSSEWriter(st.w)
	st.w.WriteHeader(http.StatusOK)
}

func (st *stream) send(v any) error { return st.sse.WriteJSON(v) }

// fail ends a started stream with an error event, which the OpenAI SDKs
// raise as an API error; no [DONE] follows.
func (st *stream) fail(e *apiError) {
	st.sse.WriteJSON(openai.ErrorResponse{Error: &openai.APIError{
		Message: e.msg, Type: e.typ, Code: openai.NullString(e.code), Param: openai.NullString(e.param),
	}})
}

// count adds a generation's token counts to the request log.
func count(r *http.Request, res Result) {
	info := infoFrom(r)
	info.promptTokens += res.PromptTokens
	info.completionTokens += res.CompletionTokens
}

func usage(res Result) *openai.Usage {
	return &openai.Usage{
		PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens,
		TotalTokens: res.PromptTokens + res.CompletionTokens,
	}
}

// chatLogprobs converts tokens to chat log probabilities with at most top
// alternatives each.
func chatLogprobs(toks []Token, top int) []openai.TokenLogprob {
	out := make([]openai.TokenLogprob, 0, len(toks))
	for _, t := range toks {
		lp := openai.TokenLogprob{
			Token: t.Text, Logprob: finite(t.Logprob), Bytes: intBytes(tokenBytes(t)),
			TopLogprobs: make([]openai.TopLogprob, 0, min(top, len(t.Top))),
		}
		for _, alt := range t.Top[:min(top, len(t.Top))] {
			b := alt.Bytes
			if b == nil {
				b = []byte(alt.Text)
			}
			lp.TopLogprobs = append(lp.TopLogprobs, openai.TopLogprob{Token: alt.Text, Logprob: finite(alt.Logprob), Bytes: intBytes(b)})
		}
		out = append(out, lp)
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// minLogprob stands for log(0), which JSON cannot carry; OpenAI uses it too.
const minLogprob = -9999.0

func finite(lp float64) float64 {
	if math.IsNaN(lp) || lp < minLogprob {
		return minLogprob
	}
	return lp
}

func intBytes(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// newID returns a random reply id with the given prefix.
func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
