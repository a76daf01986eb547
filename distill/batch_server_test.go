package distill

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/distillery/distillery/openai"
)

// fakeBatchAPI is an in-process OpenAI Batch API: files, batches, and a
// deterministic "model" that echoes the last user message word by word,
// with log-probabilities.
//
// A batch goes validating -> in_progress -> ... -> a terminal status over
// successive polls of GET /v1/batches/{id}; its requests are run when it
// ends. Set the knobs before the first request.
type fakeBatchAPI struct {
	t   testing.TB
	srv *httptest.Server

	// Key, when set, is the only API key accepted (others get 401).
	Key string
	// Fail maps a custom_id to how its request fails: "500" or "400"
	// (an error file line with that status code and an error body), or
	// "error" (an error file line with a null response and an error).
	Fail map[string]string
	// InProgressPolls is how many polls answer in_progress before the batch
	// ends (default 2); -1 keeps it in progress for ever.
	InProgressPolls int
	// ExpireAfter, when >= 0, expires the batch after running that many
	// lines; the others are left out of both files unless ExpiredInErrors
	// puts them in the error file with code batch_expired.
	ExpireAfter     int
	ExpiredInErrors bool
	// FailBatch fails the whole batch during validation.
	FailBatch bool
	// CancelAfter, when >= 0, cancels the batch after running that many lines.
	CancelAfter int
	// Poll503 answers 503 to that many polls before answering normally.
	Poll503 int
	// Create500 creates the batch but answers 500 to that many creations.
	Create500 int
	// CutContent cuts that many file downloads halfway through the body.
	CutContent int

	mu      sync.Mutex
	nextID  int
	files   map[string]fakeBatchFile
	batches map[string]*fakeBatch
	// counters, for tests
	polls, uploads, creates, lists int
}

type fakeBatchFile struct {
	purpose string
	data    []byte
}

type fakeBatch struct {
	obj   batchObject
	polls int
}

func newFakeBatchAPI(t testing.TB) *fakeBatchAPI {
	f := &fakeBatchAPI{
		t:               t,
		InProgressPolls: 2,
		ExpireAfter:     -1,
		CancelAfter:     -1,
		files:           map[string]fakeBatchFile{},
		batches:         map[string]*fakeBatch{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/files", f.uploadFile)
	mux.HandleFunc("GET /v1/files/{id}/content", f.fileContent)
	mux.HandleFunc("POST /v1/batches", f.createBatch)
	mux.HandleFunc("GET /v1/batches", f.listBatches)
	mux.HandleFunc("GET /v1/batches/{id}", f.getBatch)
	f.srv = httptest.NewServer(f.auth(mux))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the base URL to give a client.
func (f *fakeBatchAPI) URL() string { return f.srv.URL + "/v1" }

func (f *fakeBatchAPI) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.Key != "" && r.Header.Get("Authorization") != "Bearer "+f.Key {
			openai.WriteError(w, http.StatusUnauthorized, openai.InvalidRequestError, "invalid_api_key", "",
				"Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (f *fakeBatchAPI) id(prefix string) string {
	f.nextID++
	return fmt.Sprintf("%s-%04d", prefix, f.nextID)
}

func fakeBatchJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeBatchAPI) uploadFile(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		openai.WriteError(w, 400, openai.InvalidRequestError, "", "", "not a multipart form: "+err.Error())
		return
	}
	if p := r.FormValue("purpose"); p != "batch" {
		openai.WriteError(w, 400, openai.InvalidRequestError, "", "purpose", fmt.Sprintf("purpose %q, want batch", p))
		return
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		openai.WriteError(w, 400, openai.InvalidRequestError, "", "file", "no file: "+err.Error())
		return
	}
	defer file.Close()
	data, _ := io.ReadAll(file)
	f.mu.Lock()
	id := f.id("file")
	f.files[id] = fakeBatchFile{purpose: "batch", data: data}
	f.uploads++
	f.mu.Unlock()
	fakeBatchJSON(w, map[string]any{
		"id": id, "object": "file", "bytes": len(data), "created_at": 1700000000,
		"filename": hdr.Filename, "purpose": "batch", "status": "processed",
	})
}

func (f *fakeBatchAPI) fileContent(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	file, ok := f.files[r.PathValue("id")]
	f.mu.Unlock()
	if !ok {
		openai.WriteError(w, 404, openai.InvalidRequestError, "", "", "No such File object: "+r.PathValue("id"))
		return
	}
	f.mu.Lock()
	cut := f.CutContent > 0
	if cut {
		f.CutContent--
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	if cut {
		// Promise the whole file, send half: the client sees the body end early.
		w.Header().Set("Content-Length", strconv.Itoa(len(file.data)))
		w.Write(file.data[:len(file.data)/2])
		return
	}
	w.Write(file.data)
}

func (f *fakeBatchAPI) createBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		InputFileID      string            `json:"input_file_id"`
		Endpoint         string            `json:"endpoint"`
		CompletionWindow string            `json:"completion_window"`
		Metadata         map[string]string `json:"metadata"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		openai.WriteError(w, 400, openai.InvalidRequestError, "", "", "bad JSON: "+err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	if _, ok := f.files[req.InputFileID]; !ok {
		openai.WriteError(w, 400, openai.InvalidRequestError, "", "input_file_id", "No such File object: "+req.InputFileID)
		return
	}
	if req.Endpoint != "/v1/chat/completions" {
		openai.WriteError(w, 400, openai.InvalidRequestError, "", "endpoint", "unsupported endpoint "+req.Endpoint)
		return
	}
	if req.CompletionWindow != "24h" {
		openai.WriteError(w, 400, openai.InvalidRequestError, "", "completion_window", "completion_window must be 24h")
		return
	}
	b := &fakeBatch{}
	b.obj.ID = f.id("batch")
	b.obj.Object = "batch"
	b.obj.Endpoint = req.Endpoint
	b.obj.Status = "validating"
	b.obj.InputFileID = req.InputFileID
	b.obj.CompletionWindow = req.CompletionWindow
	f.batches[b.obj.ID] = b
	if f.Create500 > 0 {
		f.Create500--
		openai.WriteError(w, 500, openai.ServerError, "", "", "The server had an error while processing your request.")
		return
	}
	fakeBatchJSON(w, b.obj)
}

func (f *fakeBatchAPI) listBatches(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	data := []batchObject{}
	for _, b := range f.batches {
		data = append(data, b.obj)
	}
	fakeBatchJSON(w, map[string]any{"object": "list", "data": data, "has_more": false})
}

func (f *fakeBatchAPI) getBatch(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Poll503 > 0 {
		f.Poll503--
		w.Header().Set("Retry-After", "0")
		openai.WriteError(w, 503, openai.ServerError, "", "", "The engine is currently overloaded, please try again later.")
		return
	}
	b, ok := f.batches[r.PathValue("id")]
	if !ok {
		openai.WriteError(w, 404, openai.InvalidRequestError, "", "", "No batch found with id '"+r.PathValue("id")+"'.")
		return
	}
	f.polls++
	b.polls++
	f.advance(b)
	fakeBatchJSON(w, b.obj)
}

// advance moves the batch one step on.
func (f *fakeBatchAPI) advance(b *fakeBatch) {
	switch b.obj.Status {
	case "completed", "failed", "expired", "cancelled":
		return
	case "validating":
		lines := f.inputLines(b)
		b.obj.RequestCounts.Total = len(lines)
		if errs := validateBatchLines(lines); f.FailBatch || len(errs) > 0 {
			if len(errs) == 0 {
				errs = append(errs, batchObjectError{Code: "invalid_request", Message: "the batch was refused", Line: nil})
			}
			b.obj.Status = "failed"
			b.obj.Errors = &struct {
				Data []batchObjectError `json:"data"`
			}{errs}
			return
		}
		b.obj.Status = "in_progress"
		return
	}
	// in_progress
	total := b.obj.RequestCounts.Total
	if f.InProgressPolls < 0 || b.polls <= f.InProgressPolls {
		if f.InProgressPolls > 0 {
			b.obj.RequestCounts.Completed = total * (b.polls - 1) / (f.InProgressPolls + 1)
		}
		return
	}
	f.run(b)
}

func (f *fakeBatchAPI) inputLines(b *fakeBatch) []string {
	data := f.files[b.obj.InputFileID].data
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// validateBatchLines checks every input line as the Batch API does.
func validateBatchLines(lines []string) []batchObjectError {
	var errs []batchObjectError
	seen := map[string]bool{}
	for i, l := range lines {
		line := i + 1
		bad := func(code, msg string) {
			errs = append(errs, batchObjectError{Code: openai.NullString(code), Message: msg, Line: &line})
		}
		var in struct {
			CustomID string                        `json:"custom_id"`
			Method   string                        `json:"method"`
			URL      string                        `json:"url"`
			Body     *openai.ChatCompletionRequest `json:"body"`
		}
		if err := json.Unmarshal([]byte(l), &in); err != nil {
			bad("invalid_json_line", err.Error())
			continue
		}
		switch {
		case in.CustomID == "":
			bad("missing_required_parameter", "custom_id is required")
		case seen[in.CustomID]:
			bad("duplicate_custom_id", "custom_id "+in.CustomID+" is not unique")
		case in.Method != "POST":
			bad("invalid_method", "method must be POST")
		case in.URL != "/v1/chat/completions":
			bad("invalid_url", "url must be /v1/chat/completions")
		case in.Body == nil || in.Body.Model == "" || len(in.Body.Messages) == 0:
			bad("invalid_request", "body needs a model and messages")
		case in.Body.TopLogprobs != nil && !in.Body.Logprobs:
			bad("invalid_request", "top_logprobs needs logprobs")
		}
		seen[in.CustomID] = true
	}
	return errs
}

// run executes the batch's lines and writes its output and error files.
func (f *fakeBatchAPI) run(b *fakeBatch) {
	var out, errf strings.Builder
	b.obj.Status = "completed"
	b.obj.RequestCounts.Completed, b.obj.RequestCounts.Failed = 0, 0
	for i, l := range f.inputLines(b) {
		var in struct {
			CustomID string                       `json:"custom_id"`
			Body     openai.ChatCompletionRequest `json:"body"`
		}
		json.Unmarshal([]byte(l), &in)
		reqID := fmt.Sprintf("batch_req_%d", i)
		if f.ExpireAfter >= 0 && i >= f.ExpireAfter {
			b.obj.Status = "expired"
			if f.ExpiredInErrors {
				fakeBatchLine(&errf, map[string]any{"id": reqID, "custom_id": in.CustomID, "response": nil,
					"error": map[string]any{"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})
				b.obj.RequestCounts.Failed++
			}
			continue
		}
		if f.CancelAfter >= 0 && i >= f.CancelAfter {
			b.obj.Status = "cancelled"
			continue
		}
		switch mode := f.Fail[in.CustomID]; mode {
		case "":
			fakeBatchLine(&out, map[string]any{"id": reqID, "custom_id": in.CustomID, "error": nil,
				"response": map[string]any{"status_code": 200, "request_id": "req_" + in.CustomID, "body": fakeBatchCompletion(in.CustomID, in.Body)}})
			b.obj.RequestCounts.Completed++
		case "error":
			fakeBatchLine(&errf, map[string]any{"id": reqID, "custom_id": in.CustomID, "response": nil,
				"error": map[string]any{"code": "invalid_prompt", "message": "the prompt was refused"}})
			b.obj.RequestCounts.Failed++
		default:
			status, _ := strconv.Atoi(mode)
			typ := openai.InvalidRequestError
			if status >= 500 {
				typ = openai.ServerError
			}
			fakeBatchLine(&errf, map[string]any{"id": reqID, "custom_id": in.CustomID, "error": nil,
				"response": map[string]any{"status_code": status, "request_id": "req_" + in.CustomID,
					"body": openai.ErrorResponse{Error: &openai.APIError{Message: "fake failure " + mode, Type: typ}}}})
			b.obj.RequestCounts.Failed++
		}
	}
	if out.Len() > 0 {
		id := f.id("file")
		f.files[id] = fakeBatchFile{purpose: "batch_output", data: []byte(out.String())}
		b.obj.OutputFileID = id
	}
	if errf.Len() > 0 {
		id := f.id("file")
		f.files[id] = fakeBatchFile{purpose: "batch_output", data: []byte(errf.String())}
		b.obj.ErrorFileID = id
	}
}

func fakeBatchLine(w *strings.Builder, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Write(b)
	w.WriteByte('\n')
}

// fakeBatchCompletion answers a request by echoing the words of its last user
// message as tokens: token i is the word (with a leading space after the
// first) at logprob -(i+1)/10, and its alternatives are the token itself
// then "alt1", "alt2"... at decreasing logprobs. max_tokens truncates.
func fakeBatchCompletion(customID string, req openai.ChatCompletionRequest) openai.ChatCompletionResponse {
	var last string
	prompt := 0
	for _, m := range req.Messages {
		prompt += len(strings.Fields(m.Content.String()))
		if m.Role == "user" {
			last = m.Content.String()
		}
	}
	words := strings.Fields(last)
	finish := "stop"
	if req.MaxTokens != nil && len(words) > *req.MaxTokens {
		words, finish = words[:*req.MaxTokens], "length"
	}
	var text strings.Builder
	var lp *openai.ChatLogprobs
	if req.Logprobs {
		lp = &openai.ChatLogprobs{Content: []openai.TokenLogprob{}}
	}
	for i, w := range words {
		tok := w
		if i > 0 {
			tok = " " + w
		}
		text.WriteString(tok)
		if lp == nil {
			continue
		}
		p := -float64(i+1) / 10
		t := openai.TokenLogprob{Token: tok, Logprob: p, Bytes: fakeBatchBytes(tok), TopLogprobs: []openai.TopLogprob{}}
		k := 0
		if req.TopLogprobs != nil {
			k = *req.TopLogprobs
		}
		for j := range k {
			alt, ap := tok, p
			if j > 0 {
				alt, ap = fmt.Sprintf("alt%d", j), p-float64(j)
			}
			t.TopLogprobs = append(t.TopLogprobs, openai.TopLogprob{Token: alt, Logprob: ap, Bytes: fakeBatchBytes(alt)})
		}
		lp.Content = append(lp.Content, t)
	}
	return openai.ChatCompletionResponse{
		ID: "chatcmpl-" + customID, Object: openai.ObjectChatCompletion, Created: 1700000000, Model: req.Model,
		Choices: []openai.ChatChoice{{
			Message:      openai.ChatMessage{Role: "assistant", Content: openai.TextContent(text.String())},
			Logprobs:     lp,
			FinishReason: finish,
		}},
		Usage: &openai.Usage{PromptTokens: prompt, CompletionTokens: len(words), TotalTokens: prompt + len(words)},
	}
}

func fakeBatchBytes(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}

// uploaded returns the lines of the batch input files received so far.
func (f *fakeBatchAPI) uploaded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, file := range f.files {
		if file.purpose != "batch" {
			continue
		}
		for _, l := range strings.Split(string(file.data), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

func (f *fakeBatchAPI) counts() (polls, uploads, creates, lists, batches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls, f.uploads, f.creates, f.lists, len(f.batches)
}
