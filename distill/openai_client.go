package distill

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/distillery/distillery/openai"
)

// DefaultOpenAIBaseURL is where OpenAIOptions.BaseURL points when empty.
const DefaultOpenAIBaseURL = "https://api.openai.com/v1"

// DefaultTeacherTimeout bounds one request when the options give no Timeout:
// long generations with log-probabilities can take minutes, a hung
// connection should not take forever.
const DefaultTeacherTimeout = 10 * time.Minute

// OpenAIOptions configure a teacher that speaks OpenAI's chat completions
// API: OpenAI itself, Azure OpenAI, or a compatible server (vLLM, ...).
type OpenAIOptions struct {
	// BaseURL is the API root, e.g. https://api.openai.com/v1 (the default);
	// for Azure the resource endpoint, e.g. https://NAME.openai.azure.com.
	BaseURL string
	// Model is the model name sent in the body; for Azure, the deployment.
	Model string
	// APIKey is sent as "Authorization: Bearer" (or Azure's api-key
	// header). Empty sends no key, for local servers.
	APIKey string
	// APIKeyEnv names where the key came from, for error messages only;
	// the key itself never appears in an error.
	APIKeyEnv string
	// HTTPClient defaults to a client that keeps up to 256 idle connections
	// per host, enough for any harvest concurrency.
	HTTPClient *http.Client
	// Timeout bounds one request, body included (default
	// DefaultTeacherTimeout; negative: no bound).
	Timeout time.Duration
	// Headers are added to every request, after the key headers.
	Headers map[string]string
	// AzureAPIVersion, when set, selects Azure's URL form
	// {base}/openai/deployments/{model}/chat/completions?api-version=V
	// and its api-key header.
	AzureAPIVersion string
}

// OpenAIClient is a Teacher on the chat completions API. It sends each
// request once; Flow retries.
type OpenAIClient struct {
	model  string
	url    string
	header http.Header
	keyEnv string
	http   *teacherHTTP
}

// NewOpenAI checks the options and returns a client.
func NewOpenAI(opts OpenAIOptions) (*OpenAIClient, error) {
	if opts.Model == "" {
		return nil, errors.New("openai teacher: no model given")
	}
	base := opts.BaseURL
	if base == "" {
		if opts.AzureAPIVersion != "" {
			return nil, errors.New("openai teacher: Azure needs the resource endpoint as base URL")
		}
		base = DefaultOpenAIBaseURL
	}
	base, err := teacherBaseURL(base)
	if err != nil {
		return nil, fmt.Errorf("openai teacher: %w", err)
	}
	c := &OpenAIClient{
		model:  opts.Model,
		url:    base + "/chat/completions",
		header: http.Header{},
		keyEnv: opts.APIKeyEnv,
		http:   newTeacherHTTP(opts.HTTPClient, opts.Timeout, opts.APIKey, opts.Headers),
	}
	if opts.AzureAPIVersion != "" {
		c.url = base + "/openai/deployments/" + url.PathEscape(opts.Model) +
			"/chat/completions?api-version=" + url.QueryEscape(opts.AzureAPIVersion)
		if opts.APIKey != "" {
			c.header.Set("api-key", opts.APIKey)
		}
	} else if opts.APIKey != "" {
		c.header.Set("Authorization", "Bearer "+opts.APIKey)
	}
	for k, v := range opts.Headers {
		c.header.Set(k, v)
	}
	return c, nil
}

// Model returns the model (or Azure deployment) name.
func (c *OpenAIClient) Model() string { return c.model }

// Logprobs is true: chat completions return log-probabilities when asked.
func (c *OpenAIClient) Logprobs() bool { return true }

// Complete sends one chat completion. Failures are *Error, except the
// cancellation of ctx, which is returned as ctx.Err().
func (c *OpenAIClient) Complete(ctx context.Context, req Request) (Response, error) {
	rep, err := c.http.post(ctx, c.url, c.header, c.body(req))
	rate := openAIRate(rep.header)
	if err != nil {
		return Response{}, c.http.fail(err, rep, rate)
	}
	if rep.status/100 != 2 {
		return Response{}, c.http.fail(c.statusError(rep, rate), rep, rate)
	}
	if resp, ok := fastReply(rep.body); ok {
		resp.Latency, resp.Rate = rep.latency, rate
		return resp, nil
	}
	var out openai.ChatCompletionResponse
	if err := json.Unmarshal(rep.body, &out); err != nil {
		return Response{}, c.http.fail(&Error{Kind: KindMalformed, Msg: "the answer is not JSON", Err: err}, rep, rate)
	}
	if len(out.Choices) == 0 {
		return Response{}, c.http.fail(&Error{Kind: KindMalformed, Msg: "the answer has no choices"}, rep, rate)
	}
	ch := out.Choices[0]
	resp := Response{
		Text:         ch.Message.Content.String(),
		Model:        out.Model,
		FinishReason: ch.FinishReason,
		Latency:      rep.latency,
		Rate:         rate,
	}
	if out.Usage != nil {
		resp.InputTokens, resp.OutputTokens = out.Usage.PromptTokens, out.Usage.CompletionTokens
	}
	if ch.Logprobs != nil && ch.Logprobs.Content != nil {
		resp.Tokens, err = openAITokens(ch.Logprobs.Content)
		if err != nil {
			return Response{}, c.http.fail(&Error{Kind: KindMalformed, Msg: "bad log-probabilities", Err: err}, rep, rate)
		}
	}
	return resp, nil
}

// body builds the wire request: one non-streamed choice, with
// log-probabilities only when asked for.
func (c *OpenAIClient) body(req Request) openai.ChatCompletionRequest {
	n, temp := 1, req.Temperature
	cr := openai.ChatCompletionRequest{Model: c.model, N: &n, Temperature: &temp}
	for _, m := range req.Messages {
		cr.Messages = append(cr.Messages, openai.ChatMessage{Role: m.Role, Content: openai.TextContent(m.Content)})
	}
	if req.MaxTokens > 0 {
		mt := req.MaxTokens
		cr.MaxTokens = &mt
	}
	if req.TopLogprobs > 0 {
		k := req.TopLogprobs
		cr.Logprobs, cr.TopLogprobs = true, &k
	}
	return cr
}

// statusError classifies a non-2xx reply.
func (c *OpenAIClient) statusError(rep teacherReply, rate RateInfo) *Error {
	apiErr := openai.DecodeError(rep.status, rep.body)
	e := &Error{Kind: teacherStatusKind(rep.status), Msg: openAIMessage(apiErr)}
	switch {
	case e.Kind == KindAuth:
		e.Msg = fmt.Sprintf("the API rejected %s (%d): %s", keyName(c.keyEnv), rep.status, apiErr.Message)
	case rep.status == http.StatusTooManyRequests &&
		(apiErr.Code == "insufficient_quota" || apiErr.Type == "insufficient_quota"):
		// Retrying an empty account is pointless: stop like a bad key.
		e.Kind = KindAuth
		e.Msg = fmt.Sprintf("the account of %s has no quota left (429): %s", keyName(c.keyEnv), apiErr.Message)
	}
	return e
}

// openAIMessage is the provider's message with its type and code.
func openAIMessage(a *openai.APIError) string {
	var tags []string
	for _, t := range []string{a.Type, string(a.Code)} {
		if t != "" {
			tags = append(tags, t)
		}
	}
	if len(tags) == 0 {
		return a.Message
	}
	return a.Message + " (" + strings.Join(tags, ", ") + ")"
}

// keyName says where the key came from, for auth errors.
func keyName(env string) string {
	if env == "" {
		return "the configured API key"
	}
	return "the key in " + env
}

// openAITokens converts the wire log-probabilities; bytes are numbers
// 0..255 on the wire.
func openAITokens(in []openai.TokenLogprob) ([]TokenLogprob, error) {
	out := make([]TokenLogprob, len(in))
	for i, t := range in {
		b, err := openAIBytes(t.Bytes)
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", i, err)
		}
		out[i] = TokenLogprob{Token: t.Token, Bytes: b, Logprob: t.Logprob}
		if len(t.TopLogprobs) > 0 {
			out[i].Top = make([]TopLogprob, len(t.TopLogprobs))
		}
		for j, a := range t.TopLogprobs {
			ab, err := openAIBytes(a.Bytes)
			if err != nil {
				return nil, fmt.Errorf("token %d, alternative %d: %w", i, j, err)
			}
			out[i].Top[j] = TopLogprob{Token: a.Token, Bytes: ab, Logprob: a.Logprob}
		}
	}
	return out, nil
}

func openAIBytes(v []int) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	b := make([]byte, len(v))
	for i, x := range v {
		if x < 0 || x > 255 {
			return nil, fmt.Errorf("byte value %d out of range", x)
		}
		b[i] = byte(x)
	}
	return b, nil
}

// openAIRate reads the x-ratelimit-* headers.
func openAIRate(h http.Header) RateInfo {
	if h == nil {
		return RateInfo{}
	}
	return RateInfo{
		LimitRequests:     headerInt(h, "x-ratelimit-limit-requests"),
		RemainingRequests: headerInt(h, "x-ratelimit-remaining-requests"),
		LimitTokens:       headerInt(h, "x-ratelimit-limit-tokens"),
		RemainingTokens:   headerInt(h, "x-ratelimit-remaining-tokens"),
		ResetRequests:     headerDuration(h, "x-ratelimit-reset-requests"),
		ResetTokens:       headerDuration(h, "x-ratelimit-reset-tokens"),
	}
}

// The HTTP plumbing below is shared by the OpenAI and Anthropic clients.

// teacherMaxBody bounds an answer's size: 4k tokens with 20 alternatives
// each is about 10 MB of JSON.
const teacherMaxBody = 256 << 20

// teacherHTTP sends one JSON POST and turns transport failures into *Error.
type teacherHTTP struct {
	client  *http.Client
	timeout time.Duration
	secrets []string // redacted from every error
}

// teacherReply is what came back, as far as it came.
type teacherReply struct {
	status  int
	header  http.Header
	body    []byte
	latency time.Duration
}

func newTeacherHTTP(client *http.Client, timeout time.Duration, key string, headers map[string]string) *teacherHTTP {
	if client == nil {
		client = &http.Client{Transport: teacherTransport}
	}
	if timeout == 0 {
		timeout = DefaultTeacherTimeout
	}
	t := &teacherHTTP{client: client, timeout: timeout}
	if key != "" {
		t.secrets = append(t.secrets, key)
	}
	for k, v := range headers {
		lk := strings.ToLower(k)
		if len(v) >= 8 && (strings.Contains(lk, "key") || strings.Contains(lk, "auth") ||
			strings.Contains(lk, "token") || strings.Contains(lk, "secret")) {
			t.secrets = append(t.secrets, v)
		}
	}
	return t
}

// teacherBaseURL checks an API root and drops its trailing slash.
func teacherBaseURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("base URL %q: want http(s)://host/...", base)
	}
	return strings.TrimRight(base, "/"), nil
}

// post sends payload as JSON and reads the whole answer. The error is
// ctx.Err() when the caller's ctx ended, else an *Error (timeout,
// connection, ...); the reply holds what arrived before it.
func (t *teacherHTTP) post(ctx context.Context, target string, header http.Header, payload any) (teacherReply, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return teacherReply{}, &Error{Kind: KindBadRequest, Msg: "encoding the request", Err: err}
	}
	rctx, cancel := ctx, context.CancelFunc(func() {})
	if t.timeout > 0 {
		rctx, cancel = context.WithTimeout(ctx, t.timeout)
	}
	defer cancel()
	hr, err := http.NewRequestWithContext(rctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return teacherReply{}, &Error{Kind: KindOther, Msg: "building the request", Err: err}
	}
	hr.Header = header.Clone()
	hr.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := t.client.Do(hr)
	if err != nil {
		return teacherReply{latency: time.Since(start)}, t.transportError(ctx, rctx, err, "sending the request")
	}
	defer resp.Body.Close()
	rep := teacherReply{status: resp.StatusCode, header: resp.Header}
	rep.body, err = readAllLimit(resp.Body, teacherMaxBody)
	rep.latency = time.Since(start)
	if err != nil {
		return rep, t.transportError(ctx, rctx, err, "reading the answer")
	}
	return rep, nil
}

// fail completes an error with the reply's status, rate headers and
// retry-after, and removes secrets from its text. ctx errors pass as is.
func (t *teacherHTTP) fail(err error, rep teacherReply, rate RateInfo) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	if e.Status == 0 {
		e.Status = rep.status
	}
	e.Rate = rate
	if e.RetryAfter == 0 && rep.header != nil {
		e.RetryAfter = retryAfter(rep.header, time.Now())
	}
	for _, s := range t.secrets {
		e.Msg = strings.ReplaceAll(e.Msg, s, "[redacted]")
		if e.Err != nil && strings.Contains(e.Err.Error(), s) {
			e.Err = &redactedError{err: e.Err, secret: s}
		}
	}
	return e
}

// redactedError hides a secret in a wrapped error's text, keeping the
// error chain for errors.Is/As.
type redactedError struct {
	err    error
	secret string
}

func (r *redactedError) Error() string {
	return strings.ReplaceAll(r.err.Error(), r.secret, "[redacted]")
}
func (r *redactedError) Unwrap() error { return r.err }

// teacherStatusKind classifies an HTTP status.
func teacherStatusKind(status int) ErrorKind {
	switch {
	case status == http.StatusTooManyRequests:
		return KindRateLimit
	case status >= 500:
		return KindServer // 529 "overloaded" included
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge,
		status == http.StatusUnprocessableEntity:
		return KindBadRequest
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusPaymentRequired: // billing: stop like a bad key
		return KindAuth
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusRequestTimeout:
		return KindTimeout
	}
	return KindOther
}

// transportError classifies a failure to send or read: the caller's
// cancellation first, then our own deadline, then network failures.
func (t *teacherHTTP) transportError(ctx, rctx context.Context, err error, what string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.Is(rctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		msg := what + ": timed out"
		if errors.Is(rctx.Err(), context.DeadlineExceeded) {
			msg = fmt.Sprintf("%s: no answer within %s", what, t.timeout)
		}
		return &Error{Kind: KindTimeout, Msg: msg, Err: err}
	}
	var (
		dns     *net.DNSError
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &dns) && dns.IsNotFound,
		errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return &Error{Kind: KindOther, Msg: what, Err: err} // will not heal by itself
	case errors.Is(err, errTooLarge):
		return &Error{Kind: KindMalformed, Msg: what, Err: err}
	}
	// Refused, reset, EOF or cut mid-body, broken pipe: worth another try.
	return &Error{Kind: KindConnection, Msg: what, Err: err}
}

var errTooLarge = fmt.Errorf("answer larger than %d bytes", teacherMaxBody)

// readAllLimit reads r to the end, failing past limit bytes.
func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, err
}

// teacherTransport is http.DefaultTransport with enough idle connections
// per host that a concurrent harvest reuses them: the default keeps 2, so
// at a concurrency of 8 most requests would dial a new connection.
var teacherTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 256
	t.MaxIdleConns = 256
	return t
}()
