package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/distillery/distillery/openai"
)

// acquire waits for a generation slot while ctx lives.
func (s *Server) acquire(ctx context.Context) (release func(), err error) {
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	default:
	}
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// requestContext bounds a generation request by RequestTimeout.
func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	if s.opts.RequestTimeout > 0 {
		return context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	}
	return context.WithCancel(r.Context())
}

// failure turns an error of a generation request into a reply: the backend's
// prompt-too-long, a gone client (499, which only the log sees), the request
// timeout, and anything else as a 500 carrying the error's text.
func (s *Server) failure(r *http.Request, err error, promptParam string) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, ErrPromptTooLong):
		return &apiError{status: http.StatusRequestEntityTooLarge, typ: openai.InvalidRequestError, code: "context_length_exceeded",
			param: promptParam, msg: fmt.Sprintf("This model's maximum context length is %d tokens: %v.", s.b.MaxContext(), err)}
	case r.Context().Err() != nil:
		infoFrom(r).canceled = true
		return &apiError{status: statusClientClosed, typ: openai.InvalidRequestError, msg: "client closed the request"}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusGatewayTimeout, typ: openai.ServerError, code: "timeout",
			msg: fmt.Sprintf("The request did not finish within the server's limit of %s.", s.opts.RequestTimeout)}
	}
	return &apiError{status: http.StatusInternalServerError, typ: openai.ServerError,
		msg: "The model failed to generate a reply: " + err.Error()}
}

// statusClientClosed is nginx's status for a request whose client left.
const statusClientClosed = 499

// errStopped is what emit returns once a stop string ends generation.
var errStopped = errors.New("stop string reached")

// generate runs one backend call through an assembler for stops, passing
// each releasable piece of the reply to onSegment. It returns the backend's
// result with the finish reason settled: "stop" when a stop string ended it.
func generate(ctx context.Context, stops []string, call func(context.Context, func(Token) error) (Result, error),
	onSegment func(segment, *assembler) error) (Result, error) {
	asm := newAssembler(stops)
	n := 0
	var sinkErr error
	res, err := call(ctx, func(t Token) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if asm.stopped {
			return errStopped
		}
		n++
		seg, stopped := asm.add(t)
		if !seg.empty() {
			if err := onSegment(seg, asm); err != nil {
				sinkErr = err
				return err
			}
		}
		if stopped {
			return errStopped
		}
		return nil
	})
	if res.CompletionTokens == 0 {
		res.CompletionTokens = n
	}
	switch {
	case sinkErr != nil:
		return res, sinkErr
	case asm.stopped:
		res.FinishReason = "stop"
		return res, nil
	case err != nil:
		return res, err // the backend's own error; failure() adds the context
	}
	if seg := asm.finish(); !seg.empty() {
		if err := onSegment(seg, asm); err != nil {
			return res, err
		}
	}
	if res.FinishReason == "" {
		res.FinishReason = "stop"
	}
	return res, nil
}
