// Package distill holds what turns a teacher's answers into a student: the
// teacher clients and the harvest of soft labels, the distillation losses
// and the trainer.
package distill

import (
	"context"
	"fmt"
	"time"
)

// Message is one chat turn sent to a teacher.
type Message struct {
	Role    string `json:"role"` // system, user or assistant
	Content string `json:"content"`
}

// Request is one prompt for a teacher.
type Request struct {
	Messages    []Message
	MaxTokens   int
	Temperature float64
	// TopLogprobs asks for that many alternatives per generated token
	// (0..20); 0 asks for no log-probabilities at all.
	TopLogprobs int
}

// TopLogprob is one alternative at a position.
type TopLogprob struct {
	Token   string  `json:"token"`
	Bytes   []byte  `json:"bytes,omitempty"`
	Logprob float64 `json:"logprob"`
}

// TokenLogprob is one generated token with its alternatives.
type TokenLogprob struct {
	Token   string       `json:"token"`
	Bytes   []byte       `json:"bytes,omitempty"`
	Logprob float64      `json:"logprob"`
	Top     []TopLogprob `json:"top,omitempty"`
}

// RateInfo is what a provider's rate-limit headers said
// (x-ratelimit-* for OpenAI, anthropic-ratelimit-* for Anthropic).
// Zero fields were absent.
type RateInfo struct {
	LimitRequests, RemainingRequests int
	LimitTokens, RemainingTokens     int
	ResetRequests, ResetTokens       time.Duration
}

// Response is a teacher's answer.
type Response struct {
	Text         string
	Tokens       []TokenLogprob // nil when the provider returns no log-probabilities
	Model        string
	FinishReason string
	InputTokens  int
	OutputTokens int
	Latency      time.Duration
	Rate         RateInfo
}

// Teacher sends one request, once: retries and rate limits are the
// caller's (see Flow). Errors are *Error.
type Teacher interface {
	// Model is the model name sent to the provider.
	Model() string
	// Logprobs reports whether answers carry log-probabilities.
	Logprobs() bool
	Complete(ctx context.Context, req Request) (Response, error)
}

// ErrorKind classifies a failed request for retry decisions and reports.
type ErrorKind string

const (
	KindRateLimit  ErrorKind = "rate_limit"         // 429
	KindServer     ErrorKind = "server_error"       // 5xx
	KindTimeout    ErrorKind = "timeout"            // no answer in time
	KindConnection ErrorKind = "connection"         // reset, refused, cut mid-body
	KindMalformed  ErrorKind = "malformed_response" // a 200 whose body does not parse
	KindBadRequest ErrorKind = "bad_request"        // 400, 413, 422: will fail again
	KindAuth       ErrorKind = "auth"               // 401, 403: stop the harvest
	KindNotFound   ErrorKind = "not_found"          // 404: wrong model or URL
	KindOther      ErrorKind = "other"
)

// Retryable reports whether a request that failed this way may succeed
// when sent again.
func (k ErrorKind) Retryable() bool {
	switch k {
	case KindRateLimit, KindServer, KindTimeout, KindConnection, KindMalformed:
		return true
	}
	return false
}

// Error is a failed teacher request.
type Error struct {
	Kind       ErrorKind
	Status     int           // HTTP status, 0 when none
	RetryAfter time.Duration // from retry-after / retry-after-ms, 0 when absent
	Rate       RateInfo
	Msg        string
	Err        error
}

func (e *Error) Error() string {
	s := string(e.Kind)
	if e.Status != 0 {
		s = fmt.Sprintf("%s (HTTP %d)", s, e.Status)
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }
