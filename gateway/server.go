// Package gateway serves models behind an OpenAI-compatible HTTP API:
// chat and legacy completions (streamed or not), the model list and a health
// check. In single-model mode (distillery serve) it runs one Backend.
//
// The server owns the protocol: validation and OpenAI's error shape, stop
// strings, streaming, log probabilities, usage, request limits and logging.
// A Backend only turns a prompt into tokens.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/distillery/distillery/openai"
)

// Backend is one model the server can run.
//
// Chat and Complete call emit once per generated token, as soon as it is
// decided. When emit returns an error (a stop string was reached, the client
// went away) the backend must stop generating and return that error, wrapped
// or not; it should still fill the Result's token counts. The server enforces
// Params.Stop itself, so a backend may ignore it. A backend stops on its
// end-of-sequence token (FinishReason "stop"), after Params.MaxTokens tokens,
// or when the context is full (FinishReason "length"). It returns an error
// wrapping ErrPromptTooLong when the prompt alone does not fit MaxContext.
// emit must be called from one goroutine at a time and not after Chat or
// Complete returned; the server runs many requests' backends concurrently
// (up to Options.MaxConcurrent), so a Backend must be safe for that.
type Backend interface {
	// ID is the model id shown in /v1/models and matched against request.model.
	ID() string
	// MaxContext is the most prompt plus completion tokens the model takes.
	MaxContext() int
	// Chat renders msgs with the model's chat template and generates.
	Chat(ctx context.Context, msgs []openai.ChatMessage, p Params, emit func(Token) error) (Result, error)
	// Complete generates from a raw prompt.
	Complete(ctx context.Context, prompt string, p Params, emit func(Token) error) (Result, error)
}

// Params are the sampling parameters of one generation.
type Params struct {
	// MaxTokens bounds the completion; 0 means until the context is full.
	MaxTokens int
	// Temperature (0 means greedy) and TopP; both default to 1 as in OpenAI.
	Temperature, TopP float64
	// Stop strings end generation; the server cuts the text at them.
	Stop []string
	// Logprobs asks for each token's log probability, TopLogprobs (0..20)
	// for that many alternatives per position.
	Logprobs    bool
	TopLogprobs int
	// Seed makes sampling reproducible when set.
	Seed *int64
}

// Token is one generated token.
type Token struct {
	// Text is the token's text; Bytes its exact bytes (a token may hold part
	// of a UTF-8 character). When Bytes is nil, Text's bytes are used.
	Text  string
	Bytes []byte
	// Logprob is the token's log probability, Top the most likely tokens at
	// its position, best first (filled when Params.Logprobs is set).
	Logprob float64
	Top     []TopToken
}

// TopToken is one alternative at a position.
type TopToken struct {
	Text    string
	Bytes   []byte
	Logprob float64
}

// Result is how a generation ended.
type Result struct {
	// FinishReason is "stop" (end of sequence) or "length" (token limit).
	FinishReason string
	// PromptTokens and CompletionTokens count the tokens of the request.
	PromptTokens, CompletionTokens int
}

// ErrPromptTooLong is returned, wrapped, by a Backend whose prompt does not
// fit its context; the server answers 413 context_length_exceeded.
var ErrPromptTooLong = errors.New("prompt too long")

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// MaxBodyBytes bounds a request body (default 4 MiB); larger ones get 413.
	MaxBodyBytes int64
	// MaxConcurrent bounds the generations running at once (default 4);
	// further requests wait for a slot while their context lives.
	MaxConcurrent int
	// Logger receives one line per request (default slog.Default()).
	Logger *slog.Logger
	// RequestTimeout bounds a generation request, waiting included
	// (0: no limit beyond the client's).
	RequestTimeout time.Duration
}

// Defaults of Options.
const (
	DefaultMaxBodyBytes  = 4 << 20
	DefaultMaxConcurrent = 4
)

// ownedBy is the owner shown in the model list.
const ownedBy = "distillery"

// Server serves one Backend over the OpenAI API.
type Server struct {
	b       Backend
	opts    Options
	log     *slog.Logger
	slots   chan struct{}
	created int64
	handler http.Handler
}

// NewServer returns a server for b.
func NewServer(b Backend, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		b:       b,
		opts:    opts,
		log:     opts.Logger,
		slots:   make(chan struct{}, opts.MaxConcurrent),
		created: time.Now().Unix(),
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/chat/completions", only(http.MethodPost, s.chat))
	mux.Handle("/v1/completions", only(http.MethodPost, s.complete))
	mux.Handle("/v1/models", only(http.MethodGet, s.models))
	mux.Handle("/v1/models/{id...}", only(http.MethodGet, s.model))
	mux.Handle("/healthz", only(http.MethodGet, s.health))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, http.StatusNotFound, openai.InvalidRequestError, "unknown_url", "",
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path))
	})
	s.handler = s.logRequests(mux)
	return s
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.handler }

// only answers requests with another method 405 in OpenAI's error shape
// (the mux's own 405 is plain text). GET also allows HEAD.
func only(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			openai.WriteError(w, http.StatusMethodNotAllowed, openai.InvalidRequestError, "method_not_allowed", "",
				fmt.Sprintf("Method %s is not allowed for %s; use %s.", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	})
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, openai.ModelList{Object: openai.ObjectList, Data: []openai.Model{s.modelInfo()}})
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	if e := s.checkModel(r.PathValue("id"), ""); e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusOK, s.modelInfo())
}

func (s *Server) modelInfo() openai.Model {
	return openai.Model{ID: s.b.ID(), Object: openai.ObjectModel, Created: s.created, OwnedBy: ownedBy}
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		Model  string `json:"model"`
	}{"ok", s.b.ID()})
}

// checkModel answers 404 for a model id other than the backend's.
func (s *Server) checkModel(id, param string) *apiError {
	if id == s.b.ID() {
		return nil
	}
	return &apiError{status: http.StatusNotFound, typ: openai.InvalidRequestError, code: "model_not_found", param: param,
		msg: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", id)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		openai.WriteError(w, http.StatusInternalServerError, openai.ServerError, "", "", "could not encode the reply: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// apiError is an error reply in OpenAI's shape.
type apiError struct {
	status                int
	typ, code, param, msg string
}

func (e *apiError) write(w http.ResponseWriter) {
	openai.WriteError(w, e.status, e.typ, e.code, e.param, e.msg)
}

func (e *apiError) Error() string { return e.msg }

// invalid is a 400 invalid_request_error.
func invalid(param, code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: openai.InvalidRequestError, param: param, code: code,
		msg: fmt.Sprintf(format, args...)}
}

// decode reads the JSON body of r into v, bounded by MaxBodyBytes, turning
// every failure into the reply OpenAI would give.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) *apiError {
	body, e := readBody(w, r, s.opts.MaxBodyBytes)
	if e != nil {
		return e
	}
	return decodeJSON(body, v)
}

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, typ: openai.InvalidRequestError, code: "request_too_large",
		msg: fmt.Sprintf("The request body is larger than the limit of %d bytes.", limit)}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, &apiError{status: http.StatusRequestTimeout, typ: openai.InvalidRequestError, code: "request_timeout",
				msg: "The request body was not received in time."}
		}
		return nil, invalid("", "", "Could not read the request body: %v.", err)
	}
	return body, nil
}

// decodeJSON decodes a request body into v, turning every failure into the
// reply OpenAI would give.
func decodeJSON(body []byte, v any) *apiError {
	if len(body) == 0 {
		return invalid("", "invalid_json", "We could not parse the JSON body of your request: the body is empty. The API expects a JSON object.")
	}
	err := json.Unmarshal(body, v)
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &syn):
		return invalid("", "invalid_json", "We could not parse the JSON body of your request: %v (at byte %d).", err, syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return invalid("", "invalid_type", "The request body must be a JSON object, not %s.", article(typ.Value))
	case errors.As(err, &typ):
		return invalid(typ.Field, "invalid_type", "Invalid type for '%s': expected %s, but got %s.",
			typ.Field, openai.DescribeType(typ.Type), article(typ.Value))
	}
	return invalid("", "invalid_json", "We could not parse the JSON body of your request: %v.", err)
}

// article prefixes a JSON kind with "a" or "an".
func article(kind string) string {
	if kind != "" && (kind[0] == 'a' || kind[0] == 'o') {
		return "an " + kind
	}
	return "a " + kind
}
