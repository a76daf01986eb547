package distill

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distillery/distillery/openai"
)

// Limits of the OpenAI Batch API for one batch. Submit refuses larger
// batches; split the prompts into several.
const (
	MaxBatchRequests = 50_000
	MaxBatchBytes    = 200 << 20 // input file size
)

// BatchEndpoint is the endpoint every batched request is sent to.
const BatchEndpoint = "/v1/chat/completions"

// BatchOptions configures a BatchClient.
type BatchOptions struct {
	// BaseURL is the API base, e.g. https://api.openai.com/v1.
	BaseURL string
	Model   string
	APIKey  string
	// APIKeyEnv names the variable the key came from, for error messages
	// only; the key itself is never logged or put in an error.
	APIKeyEnv  string
	HTTPClient *http.Client // default http.DefaultClient
	// PollInterval is the time between two polls of a batch (default 30s).
	PollInterval time.Duration
	// CompletionWindow is sent with the batch (default "24h").
	CompletionWindow string
	// Sleep waits d or until ctx is done (default: a timer). Used between
	// polls and before retries.
	Sleep func(ctx context.Context, d time.Duration) error
}

// BatchItem is one request of a batch. CustomID must be unique within the
// batch; results are reported under it.
type BatchItem struct {
	CustomID string
	Request  Request
}

// BatchResult is the outcome of one item. Err is an *Error when the request
// failed (or was never run), and Response is then zero.
type BatchResult struct {
	CustomID string
	Response Response
	Err      error
}

// BatchClient runs chat completions through the OpenAI Batch API: Submit
// uploads the requests and creates the batch, Wait polls it and reports
// the results. It is safe for concurrent use.
type BatchClient struct {
	o    BatchOptions
	base string

	mu        sync.Mutex
	submitted map[string][]string // batch id -> custom ids, for batches this client created
}

// Control-call tuning.
const (
	batchAttempts        = 5                // tries per control call
	batchBackoffBase     = time.Second      // first retry delay, doubled each time
	batchBackoffMax      = 30 * time.Second // cap on the computed delay
	batchRetryAfterMax   = 2 * time.Minute  // cap on a server's retry-after
	batchMaxPollFailures = 20               // consecutive failed polls (each retried) before Wait gives up
	batchCallTimeout     = 2 * time.Minute  // one control call
	batchUploadTimeout   = 15 * time.Minute // the input file upload
)

// NewBatch checks the options and returns a client.
func NewBatch(o BatchOptions) (*BatchClient, error) {
	if o.BaseURL == "" {
		return nil, errors.New("batch: base URL is empty")
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("batch: base URL %q is not an http(s) URL", o.BaseURL)
	}
	if o.Model == "" {
		return nil, errors.New("batch: model is empty")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 30 * time.Second
	}
	if o.CompletionWindow == "" {
		o.CompletionWindow = "24h"
	}
	if o.Sleep == nil {
		o.Sleep = batchSleep
	}
	return &BatchClient{
		o:         o,
		base:      strings.TrimRight(o.BaseURL, "/"),
		submitted: map[string][]string{},
	}, nil
}

func batchSleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Model is the model name sent in every request.
func (c *BatchClient) Model() string { return c.o.Model }

// batchLine is one line of the input file.
type batchLine struct {
	CustomID string                       `json:"custom_id"`
	Method   string                       `json:"method"`
	URL      string                       `json:"url"`
	Body     openai.ChatCompletionRequest `json:"body"`
}

// batchObject is the Batch API's batch.
type batchObject struct {
	ID               string `json:"id"`
	Object           string `json:"object"`
	Endpoint         string `json:"endpoint"`
	Status           string `json:"status"`
	InputFileID      string `json:"input_file_id"`
	OutputFileID     string `json:"output_file_id"`
	ErrorFileID      string `json:"error_file_id"`
	CompletionWindow string `json:"completion_window"`
	RequestCounts    struct {
		Total     int `json:"total"`
		Completed int `json:"completed"`
		Failed    int `json:"failed"`
	} `json:"request_counts"`
	Errors *struct {
		Data []batchObjectError `json:"data"`
	} `json:"errors"`
}

type batchObjectError struct {
	Code    openai.NullString `json:"code"`
	Message string            `json:"message"`
	Param   openai.NullString `json:"param"`
	Line    *int              `json:"line"`
}

// batchResultLine is one line of an output or error file.
type batchResultLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code    openai.NullString `json:"code"`
		Message string            `json:"message"`
	} `json:"error"`
}

// Submit uploads items as a JSONL file and creates a batch over it. It
// returns the batch id as soon as the batch exists, so that the caller can
// record it and Wait on it later, from this client or another.
func (c *BatchClient) Submit(ctx context.Context, items []BatchItem) (string, error) {
	if len(items) == 0 {
		return "", &Error{Kind: KindBadRequest, Msg: "batch: no requests to submit"}
	}
	if len(items) > MaxBatchRequests {
		return "", &Error{Kind: KindBadRequest, Msg: fmt.Sprintf("batch: %d requests, more than the %d a batch may hold: split them", len(items), MaxBatchRequests)}
	}
	ids := make([]string, len(items))
	seen := make(map[string]bool, len(items))
	var file bytes.Buffer
	enc := json.NewEncoder(&file)
	enc.SetEscapeHTML(false)
	for i, it := range items {
		if it.CustomID == "" {
			return "", &Error{Kind: KindBadRequest, Msg: fmt.Sprintf("batch: item %d has no custom id", i)}
		}
		if seen[it.CustomID] {
			return "", &Error{Kind: KindBadRequest, Msg: fmt.Sprintf("batch: custom id %q appears twice", it.CustomID)}
		}
		seen[it.CustomID] = true
		ids[i] = it.CustomID
		if err := enc.Encode(batchLine{
			CustomID: it.CustomID,
			Method:   http.MethodPost,
			URL:      BatchEndpoint,
			Body:     c.chatRequest(it.Request),
		}); err != nil {
			return "", &Error{Kind: KindBadRequest, Msg: fmt.Sprintf("batch: encoding item %q", it.CustomID), Err: err}
		}
	}
	if file.Len() > MaxBatchBytes {
		return "", &Error{Kind: KindBadRequest, Msg: fmt.Sprintf("batch: input file is %d bytes, more than the %d a batch may hold: split it", file.Len(), MaxBatchBytes)}
	}

	fileID, err := c.upload(ctx, file.Bytes())
	if err != nil {
		return "", err
	}
	batchID, err := c.createBatch(ctx, fileID)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.submitted[batchID] = ids
	c.mu.Unlock()
	return batchID, nil
}

func (c *BatchClient) chatRequest(r Request) openai.ChatCompletionRequest {
	msgs := make([]openai.ChatMessage, len(r.Messages))
	for i, m := range r.Messages {
		msgs[i] = openai.ChatMessage{Role: m.Role, Content: openai.TextContent(m.Content)}
	}
	temp := r.Temperature
	body := openai.ChatCompletionRequest{Model: c.o.Model, Messages: msgs, Temperature: &temp}
	if r.MaxTokens > 0 {
		n := r.MaxTokens
		body.MaxTokens = &n
	}
	if r.TopLogprobs > 0 {
		n := r.TopLogprobs
		body.Logprobs = true
		body.TopLogprobs = &n
	}
	return body
}

// upload sends the input file with purpose "batch" and returns its id.
func (c *BatchClient) upload(ctx context.Context, data []byte) (string, error) {
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	if err := mw.WriteField("purpose", "batch"); err != nil {
		return "", err
	}
	fw, err := mw.CreateFormFile("file", "distillery-batch.jsonl")
	if err != nil {
		return "", err
	}
	fw.Write(data)
	if err := mw.Close(); err != nil {
		return "", err
	}
	var f struct {
		ID string `json:"id"`
	}
	err = c.call(ctx, http.MethodPost, "/files", mw.FormDataContentType(), form.Bytes(), batchUploadTimeout, &f, nil)
	if err != nil {
		return "", c.wrap(err, "uploading the batch input file")
	}
	if f.ID == "" {
		return "", &Error{Kind: KindMalformed, Msg: "uploading the batch input file: the reply has no file id"}
	}
	return f.ID, nil
}

// createBatch creates the batch. Before sending the creation again after a
// failure that may have come after the batch was made (a 5xx, a cut
// connection), it looks for a batch over the same input file, so that a
// retry never pays for the same requests twice.
func (c *BatchClient) createBatch(ctx context.Context, fileID string) (string, error) {
	body, _ := json.Marshal(map[string]string{
		"input_file_id":     fileID,
		"endpoint":          BatchEndpoint,
		"completion_window": c.o.CompletionWindow,
	})
	var b batchObject
	beforeRetry := func(ctx context.Context, prev *Error) (bool, error) {
		if prev.Kind == KindRateLimit {
			return false, nil // refused, not created
		}
		id, err := c.findBatch(ctx, fileID)
		if err != nil || id == "" {
			return false, nil
		}
		b.ID = id
		return true, nil
	}
	if err := c.call(ctx, http.MethodPost, "/batches", "application/json", body, batchCallTimeout, &b, beforeRetry); err != nil {
		return "", c.wrap(err, "creating the batch")
	}
	if b.ID == "" {
		return "", &Error{Kind: KindMalformed, Msg: "creating the batch: the reply has no batch id"}
	}
	return b.ID, nil
}

// findBatch looks among the latest batches for one over fileID.
func (c *BatchClient) findBatch(ctx context.Context, fileID string) (string, error) {
	var list struct {
		Data []batchObject `json:"data"`
	}
	if err := c.callOnce(ctx, http.MethodGet, "/batches?limit=100", "", nil, batchCallTimeout, &list); err != nil {
		return "", err
	}
	for _, b := range list.Data {
		if b.InputFileID == fileID && b.ID != "" {
			return b.ID, nil
		}
	}
	return "", nil
}

// Wait polls the batch until it ends, calling onProgress (may be nil) after
// each poll, then reports every request through onResult, in the order of
// the output file then the error file. Requests of an expired batch that
// have no result line are reported last, with an *Error of kind "other".
// A failed or cancelled batch returns an error naming its status and
// errors (a cancelled batch's partial results are reported first). An
// error from onResult stops Wait and is returned. Wait returns ctx.Err()
// when ctx ends.
func (c *BatchClient) Wait(ctx context.Context, batchID string, onProgress func(completed, failed, total int), onResult func(BatchResult) error) error {
	if batchID == "" {
		return &Error{Kind: KindBadRequest, Msg: "batch: empty batch id"}
	}
	b, err := c.poll(ctx, batchID, onProgress)
	if err != nil {
		return err
	}
	if b.Status == "failed" {
		return &Error{Kind: KindOther, Msg: fmt.Sprintf("batch %s failed%s", batchID, batchErrorsText(b))}
	}

	seen := map[string]bool{}
	deliver := func(r BatchResult) error {
		if r.CustomID != "" {
			if seen[r.CustomID] {
				return nil
			}
			seen[r.CustomID] = true
		}
		return onResult(r)
	}
	for _, f := range []struct{ id, what string }{{b.OutputFileID, "output"}, {b.ErrorFileID, "error"}} {
		if f.id == "" {
			continue
		}
		var cbErr error
		err := c.download(ctx, f.id, func(line []byte) error {
			r, ok := c.parseResultLine(line)
			if !ok {
				return nil // no custom id: the request shows up as missing below
			}
			cbErr = deliver(r)
			return cbErr
		})
		if cbErr != nil {
			return cbErr
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return c.wrap(err, fmt.Sprintf("batch %s: reading the %s file %s", batchID, f.what, f.id))
		}
	}

	if b.Status == "cancelled" {
		missing := max(b.RequestCounts.Total-len(seen), 0)
		return &Error{Kind: KindOther, Msg: fmt.Sprintf("batch %s cancelled: %d of %d requests have no result%s", batchID, missing, b.RequestCounts.Total, batchErrorsText(b))}
	}
	if b.Status != "expired" && len(seen) >= b.RequestCounts.Total {
		return nil
	}
	// Some requests have no result line: list them from the input.
	ids, err := c.inputIDs(ctx, batchID, b.InputFileID)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if b.Status == "expired" && len(seen) >= b.RequestCounts.Total && b.RequestCounts.Total > 0 {
			return nil // the counts say nothing is missing
		}
		return c.wrap(err, fmt.Sprintf("batch %s %s with %d of %d results; listing the missing requests from input file %s", batchID, b.Status, len(seen), b.RequestCounts.Total, b.InputFileID))
	}
	msg := "not processed (batch " + b.Status + ")"
	for _, id := range ids {
		if seen[id] {
			continue
		}
		if err := deliver(BatchResult{CustomID: id, Err: &Error{Kind: KindOther, Msg: msg}}); err != nil {
			return err
		}
	}
	return nil
}

// poll polls until the batch reaches a terminal status.
func (c *BatchClient) poll(ctx context.Context, batchID string, onProgress func(completed, failed, total int)) (*batchObject, error) {
	failures := 0
	for {
		var b batchObject
		err := c.call(ctx, http.MethodGet, "/batches/"+url.PathEscape(batchID), "", nil, batchCallTimeout, &b, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var e *Error
			if errors.As(err, &e) && e.Kind.Retryable() && failures < batchMaxPollFailures {
				failures++
				if err := c.o.Sleep(ctx, c.o.PollInterval); err != nil {
					return nil, ctx.Err()
				}
				continue
			}
			return nil, c.wrap(err, "polling batch "+batchID)
		}
		failures = 0
		if onProgress != nil {
			onProgress(b.RequestCounts.Completed, b.RequestCounts.Failed, b.RequestCounts.Total)
		}
		switch b.Status {
		case "completed", "failed", "expired", "cancelled":
			return &b, nil
		}
		if err := c.o.Sleep(ctx, c.o.PollInterval); err != nil {
			return nil, ctx.Err()
		}
	}
}

// inputIDs lists the custom ids of a batch: from memory when this client
// submitted it, else from its input file.
func (c *BatchClient) inputIDs(ctx context.Context, batchID, inputFileID string) ([]string, error) {
	c.mu.Lock()
	ids, ok := c.submitted[batchID]
	c.mu.Unlock()
	if ok {
		return ids, nil
	}
	if inputFileID == "" {
		return nil, &Error{Kind: KindMalformed, Msg: "the batch has no input file id"}
	}
	err := c.download(ctx, inputFileID, func(line []byte) error {
		var l struct {
			CustomID string `json:"custom_id"`
		}
		if err := json.Unmarshal(line, &l); err != nil || l.CustomID == "" {
			return nil
		}
		ids = append(ids, l.CustomID)
		return nil
	})
	return ids, err
}

// parseResultLine turns one output or error file line into a result; ok is
// false when the line names no custom id.
func (c *BatchClient) parseResultLine(line []byte) (BatchResult, bool) {
	var l batchResultLine
	if err := json.Unmarshal(line, &l); err != nil || l.CustomID == "" {
		// Salvage the id, if any, to report the line as malformed.
		var id struct {
			CustomID string `json:"custom_id"`
		}
		if json.Unmarshal(line, &id) != nil || id.CustomID == "" {
			return BatchResult{}, false
		}
		return BatchResult{CustomID: id.CustomID, Err: &Error{Kind: KindMalformed, Msg: "unreadable batch result line", Err: err}}, true
	}
	r := BatchResult{CustomID: l.CustomID}
	switch {
	case l.Error != nil:
		if l.Error.Code == "batch_expired" {
			r.Err = &Error{Kind: KindOther, Msg: "not processed (batch expired)"}
			break
		}
		msg := l.Error.Message
		if l.Error.Code != "" {
			msg = string(l.Error.Code) + ": " + msg
		}
		r.Err = &Error{Kind: KindOther, Msg: msg}
	case l.Response == nil:
		r.Err = &Error{Kind: KindMalformed, Msg: "batch result line has neither response nor error"}
	case l.Response.StatusCode < 200 || l.Response.StatusCode > 299:
		r.Err = c.statusError(l.Response.StatusCode, nil, l.Response.Body)
	default:
		resp, err := batchParseCompletion(l.Response.Body)
		if err != nil {
			r.Err = err
			break
		}
		r.Response = resp
	}
	return r, true
}

// batchParseCompletion reads a chat.completion body into a Response, with
// the online client's conversion of the log-probabilities.
func batchParseCompletion(body []byte) (Response, error) {
	var cc openai.ChatCompletionResponse
	if err := json.Unmarshal(body, &cc); err != nil {
		return Response{}, &Error{Kind: KindMalformed, Msg: "chat completion body", Err: err}
	}
	if len(cc.Choices) == 0 {
		return Response{}, &Error{Kind: KindMalformed, Msg: "chat completion has no choices"}
	}
	ch := cc.Choices[0]
	r := Response{
		Text:         ch.Message.Content.String(),
		Model:        cc.Model,
		FinishReason: ch.FinishReason,
	}
	if cc.Usage != nil {
		r.InputTokens = cc.Usage.PromptTokens
		r.OutputTokens = cc.Usage.CompletionTokens
	}
	if ch.Logprobs != nil && ch.Logprobs.Content != nil {
		toks, err := openAITokens(ch.Logprobs.Content)
		if err != nil {
			return Response{}, &Error{Kind: KindMalformed, Msg: "logprobs", Err: err}
		}
		r.Tokens = toks
	}
	return r, nil
}

func batchErrorsText(b *batchObject) string {
	if b.Errors == nil || len(b.Errors.Data) == 0 {
		return ""
	}
	var parts []string
	for i, e := range b.Errors.Data {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(b.Errors.Data)-5))
			break
		}
		s := e.Message
		if e.Code != "" {
			s = string(e.Code) + ": " + s
		}
		if e.Line != nil {
			s = fmt.Sprintf("line %d: %s", *e.Line, s)
		}
		parts = append(parts, s)
	}
	return ": errors: " + strings.Join(parts, "; ")
}

// wrap prefixes a control-call failure with what was being done, keeping
// it an *Error.
func (c *BatchClient) wrap(err error, what string) error {
	var e *Error
	if errors.As(err, &e) {
		cp := *e
		if cp.Msg == "" {
			cp.Msg = what
		} else {
			cp.Msg = what + ": " + cp.Msg
		}
		return &cp
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &Error{Kind: KindOther, Msg: what, Err: err}
}

// call makes a control call, decoding a 2xx JSON reply into out, and
// retries 429, 5xx, timeouts and cut connections with backoff. When
// beforeRetry is set it runs before each retry; if it reports done, the
// call ends there successfully.
func (c *BatchClient) call(ctx context.Context, method, path, ctype string, body []byte, timeout time.Duration, out any,
	beforeRetry func(context.Context, *Error) (bool, error)) error {
	for attempt := 1; ; attempt++ {
		err := c.callOnce(ctx, method, path, ctype, body, timeout, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var e *Error
		if !errors.As(err, &e) || !e.Kind.Retryable() || attempt >= batchAttempts {
			return err
		}
		if err := c.o.Sleep(ctx, batchBackoff(attempt, e.RetryAfter)); err != nil {
			return ctx.Err()
		}
		if beforeRetry != nil {
			done, err := beforeRetry(ctx, e)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				return err
			}
			if done {
				return nil
			}
		}
	}
}

func batchBackoff(attempt int, retryAfter time.Duration) time.Duration {
	d := batchBackoffBase << (attempt - 1)
	if d > batchBackoffMax || d <= 0 {
		d = batchBackoffMax
	}
	if retryAfter > d {
		d = min(retryAfter, batchRetryAfterMax)
	}
	return d
}

// callOnce makes one control call.
func (c *BatchClient) callOnce(ctx context.Context, method, path, ctype string, body []byte, timeout time.Duration, out any) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.send(cctx, method, path, ctype, body)
	if err != nil {
		return c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return c.transportError(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.statusError(resp.StatusCode, resp.Header, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return &Error{Kind: KindMalformed, Status: resp.StatusCode, Msg: fmt.Sprintf("%s %s: unreadable reply", method, batchPathOnly(path)), Err: err}
		}
	}
	return nil
}

func (c *BatchClient) send(ctx context.Context, method, path, ctype string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.o.APIKey)
	}
	return c.o.HTTPClient.Do(req)
}

// transportError classifies a failure to get an answer. ctx is the
// caller's context (not the per-call one).
func (c *BatchClient) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Kind: KindTimeout, Err: err}
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Op == "parse" {
		return &Error{Kind: KindBadRequest, Err: err}
	}
	return &Error{Kind: KindConnection, Err: err}
}

// statusError turns a non-2xx reply into an *Error of the matching kind.
func (c *BatchClient) statusError(status int, h http.Header, body []byte) *Error {
	api := openai.DecodeError(status, body)
	e := &Error{Status: status, Msg: api.Message, RetryAfter: batchRetryAfter(h)}
	if api.Code != "" {
		e.Msg = string(api.Code) + ": " + e.Msg
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = KindAuth
		switch {
		case c.o.APIKey == "" && c.o.APIKeyEnv != "":
			e.Msg += fmt.Sprintf(" (no API key was sent: %s is empty or unset)", c.o.APIKeyEnv)
		case c.o.APIKey == "":
			e.Msg += " (no API key was sent: set teacher.api_key_env)"
		case c.o.APIKeyEnv != "":
			e.Msg += fmt.Sprintf(" (check the API key in %s)", c.o.APIKeyEnv)
		default:
			e.Msg += " (check the API key)"
		}
	case status == http.StatusNotFound:
		e.Kind = KindNotFound
	case status == http.StatusTooManyRequests:
		e.Kind = KindRateLimit
	case status == http.StatusRequestTimeout:
		e.Kind = KindTimeout
	case status >= 500:
		e.Kind = KindServer
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity:
		e.Kind = KindBadRequest
	default:
		e.Kind = KindOther
	}
	return e
}

func batchRetryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			return time.Duration(s * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := time.Until(t); d > 0 {
				return d
			}
		}
	}
	return 0
}

func batchPathOnly(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

// download streams a file's content line by line into fn (blank lines are
// skipped). A transient failure, before or during the body, is retried
// with backoff; lines already handed to fn are not handed again.
func (c *BatchClient) download(ctx context.Context, fileID string, fn func(line []byte) error) error {
	path := "/files/" + url.PathEscape(fileID) + "/content"
	done := 0 // lines already handed over (blank ones included)
	for attempt := 1; ; attempt++ {
		err := c.downloadOnce(ctx, path, &done, fn)
		if err == nil {
			return nil
		}
		if fe, ok := err.(batchFnError); ok {
			return fe.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var e *Error
		if !errors.As(err, &e) || !e.Kind.Retryable() || attempt >= batchAttempts {
			return err
		}
		if err := c.o.Sleep(ctx, batchBackoff(attempt, e.RetryAfter)); err != nil {
			return ctx.Err()
		}
	}
}

// batchFnError marks an error returned by the caller's function, which is
// passed through and never retried.
type batchFnError struct{ err error }

func (e batchFnError) Error() string { return e.err.Error() }

func (c *BatchClient) downloadOnce(ctx context.Context, path string, done *int, fn func([]byte) error) error {
	resp, err := c.send(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return c.statusError(resp.StatusCode, resp.Header, data)
	}
	br := bufio.NewReaderSize(resp.Body, 1<<20)
	n := 0
	for {
		line, rerr := br.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return c.transportError(ctx, rerr)
		}
		if len(line) > 0 {
			n++
			if n > *done {
				*done = n
				if t := bytes.TrimSpace(line); len(t) > 0 {
					if err := fn(t); err != nil {
						return batchFnError{err}
					}
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}
