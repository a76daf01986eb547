package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/openai"
	"github.com/distillery/distillery/quantize"
	"github.com/distillery/distillery/routes"
	"github.com/distillery/distillery/store"
)

// confidenceTop is how many alternatives the student reports per token for
// its confidence (the model runtime's maximum).
const confidenceTop = 20

// studentVersion is one loaded student: immutable, swapped whole on reload.
type studentVersion struct {
	id      string // model id it answers as
	version string
	local   Backend   // in-process model, or
	remote  *upstream // a student host speaking the OpenAI API
	routes  *routes.Routes
	// threshold and band decide the cascade and the tier choice.
	threshold float64
	band      []int
	usdPerTok float64
	embed     *tokenEmbedder // mean-pooled student token states (nil for remote)
	srvOnce   sync.Once
	srv       *Server
}

// label reports whether answers are labels (classification).
func (sv *studentVersion) labelMode() bool {
	return sv.routes != nil && sv.routes.Parser.Mode == routes.ParseLabelMode
}

// student is a model's student tier: the current version and its reloader.
type student struct {
	name  string
	cfg   StudentConfig
	cur   atomic.Pointer[studentVersion]
	slots chan struct{}
	log   *slog.Logger
	back  compute.Backend
	store store.Store
	// reloads counts swaps, for metrics and tests.
	reloads atomic.Int64
	// embedMode is cache.embedder: student (the mean final hidden state)
	// or student-tokens (the mean input token embedding); others embed
	// outside the student.
	embedMode string
	onSwap    func(old, cur *studentVersion)
	mu        sync.Mutex // one load at a time
	// loadLocal, when set, replaces loadModel (tests).
	loadLocal func(modelDir, tokPath, id string) (Backend, *tokenEmbedder, error)
}

func newStudent(ctx context.Context, name string, cfg StudentConfig, embedder string, back compute.Backend, log *slog.Logger) (*student, error) {
	s := &student{name: name, cfg: cfg, slots: make(chan struct{}, cfg.MaxConcurrent), log: log, back: back, loadLocal: testLoadLocal, embedMode: embedder}
	var sv *studentVersion
	var err error
	switch {
	case cfg.Upstream != nil:
		sv, err = s.loadRemote()
	case cfg.Dir != "":
		sv, err = s.loadDir(cfg.Dir, "")
	default:
		if s.store, err = store.Open(ctx, cfg.Store, store.Options{}); err != nil {
			return nil, err
		}
		sv, err = s.loadLatest(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("student of %s: %w", name, err)
	}
	s.cur.Store(sv)
	return s, nil
}

func (s *student) current() *studentVersion { return s.cur.Load() }

func (s *student) finish(sv *studentVersion, r *routes.Routes) {
	sv.threshold = 0
	if s.cfg.Threshold != nil {
		sv.threshold = *s.cfg.Threshold
	}
	sv.band = s.cfg.Band
	sv.usdPerTok = s.cfg.USDPerMTok / 1e6
	if r != nil {
		sv.routes = r
		sv.threshold = r.ConfidenceThreshold
		sv.band = r.ComplexityBand
		if r.Prices.StudentUSDPerMTok > 0 && s.cfg.USDPerMTok == 0 {
			sv.usdPerTok = r.Prices.StudentUSDPerMTok / 1e6
		}
	}
}

func (s *student) loadRemote() (*studentVersion, error) {
	u, err := newUpstream(TierStudent, *s.cfg.Upstream)
	if err != nil {
		return nil, err
	}
	sv := &studentVersion{id: s.cfg.Upstream.Model, version: "remote", remote: u}
	var r *routes.Routes
	if s.cfg.Routes != "" {
		if r, err = routes.Read(s.cfg.Routes); err != nil {
			return nil, err
		}
	}
	s.finish(sv, r)
	return sv, nil
}

// loadDir loads a release folder (routes.json plus its artifacts) or a
// plain checkpoint folder.
func (s *student) loadDir(dir, version string) (*studentVersion, error) {
	var r *routes.Routes
	rpath := s.cfg.Routes
	if rpath == "" {
		rpath = filepath.Join(dir, routes.FileName)
		if _, err := os.Stat(rpath); errors.Is(err, fs.ErrNotExist) {
			rpath = ""
		}
	}
	modelDir, tokPath := dir, dir
	if rpath != "" {
		var err error
		if r, err = routes.Read(rpath); err != nil {
			return nil, err
		}
		if r.Artifacts.Adapter != "" {
			return nil, fmt.Errorf("%s: a separate LoRA adapter (%s) is not served yet; publish the merged model", rpath, r.Artifacts.Adapter)
		}
		modelDir = filepath.Join(dir, filepath.FromSlash(r.Artifacts.Model))
		tokPath = modelDir
		if r.Artifacts.Tokenizer != "" {
			tokPath = filepath.Join(dir, filepath.FromSlash(r.Artifacts.Tokenizer))
		}
		if version == "" {
			version = r.Version
		}
	}
	id := s.name
	if r != nil && r.Model != "" {
		id = r.Model
	}
	load := s.loadLocal
	if load == nil {
		load = s.loadModel
	}
	loc, emb, err := load(modelDir, tokPath, id)
	if err != nil {
		return nil, err
	}
	if version == "" {
		version = "dir"
	}
	// One generation before serving compiles the graphs and puts the
	// weights on the device from a single goroutine: GoMLX materialises a
	// tensor on first use without a lock, which races when the first
	// generations run concurrently (go test -race finds it).
	warm(context.Background(), loc)
	sv := &studentVersion{id: id, version: version, local: loc, embed: emb}
	if sv.embed != nil {
		sv.embed.id = sv.embed.kind + ":" + id + "@" + version
		sv.embed.Embed(context.Background(), "warm") // compiles the pooled pass
	}
	s.finish(sv, r)
	return sv, nil
}

// testLoadLocal is set by tests that cannot run a real model (the race
// detector trips on GoMLX's AVX2 kernels).
var testLoadLocal func(modelDir, tokPath, id string) (Backend, *tokenEmbedder, error)

// loadModel loads a checkpoint (plain, or AWQ/INT8 as the quantize stage
// publishes it, kept packed) and its tokenizer as a Local backend.
func (s *student) loadModel(modelDir, tokPath, id string) (Backend, *tokenEmbedder, error) {
	m, err := quantize.Load(modelDir, model.LoadOptions{Backend: s.back, DType: s.cfg.DType})
	if err != nil {
		return nil, nil, err
	}
	tok, err := model.LoadTokenizer(tokPath)
	if err != nil {
		return nil, nil, err
	}
	loc, err := NewLocal(id, m, tok)
	if err != nil {
		return nil, nil, err
	}
	switch s.embedMode {
	case "student":
		return loc, &tokenEmbedder{kind: "student", tok: tok, m: m, dim: m.Config.HiddenSize}, nil
	case "student-tokens":
		return loc, newTokenEmbedder(m, tok), nil
	}
	return loc, nil, nil
}

// loadLatest downloads (once) and loads the release `latest` names.
func (s *student) loadLatest(ctx context.Context) (*studentVersion, error) {
	rel, err := store.Latest(ctx, s.store, s.cfg.Release)
	if err != nil {
		return nil, err
	}
	return s.loadRelease(ctx, rel)
}

func (s *student) cacheDir() string {
	if s.cfg.CacheDir != "" {
		return s.cfg.CacheDir
	}
	return filepath.Join(os.TempDir(), "distillery-gateway")
}

func (s *student) loadRelease(ctx context.Context, rel store.Release) (*studentVersion, error) {
	dir := filepath.Join(s.cacheDir(), rel.Name, rel.Version)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		tmp := dir + ".tmp-" + newID("")
		if err := store.Download(ctx, s.store, rel, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644)
		os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
	}
	return s.loadDir(dir, rel.Version)
}

// poll reloads the student whenever the store's `latest` moves, until ctx
// ends. The swap is one atomic pointer store: requests in flight finish on
// the version they started with, new ones get the new version.
func (s *student) poll(ctx context.Context) {
	if s.store == nil {
		return
	}
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.checkLatest(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("student reload failed; serving the current version", "model", s.name, "err", err)
		}
	}
}

// checkLatest loads and swaps in a new `latest`, if any.
func (s *student) checkLatest(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rel, err := store.Latest(ctx, s.store, s.cfg.Release)
	if err != nil {
		return err
	}
	old := s.current()
	if rel.Version == old.version {
		return nil
	}
	sv, err := s.loadRelease(ctx, rel)
	if err != nil {
		return err
	}
	// loadDir warmed the new version (graphs compiled, weights on the
	// device) before the swap, so its first requests do not pay for it.
	s.cur.Store(sv)
	s.reloads.Add(1)
	s.log.Info("student reloaded", "model", s.name, "from", old.version, "to", sv.version)
	if s.onSwap != nil {
		s.onSwap(old, sv)
	}
	return nil
}

// warm runs a one-token generation to compile a new model's graphs.
func warm(ctx context.Context, b Backend) {
	b.Complete(ctx, "hello", Params{MaxTokens: 1}, func(Token) error { return nil })
}

// acquire waits for a local generation slot.
func (s *student) acquire(ctx context.Context) (func(), error) {
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// studentRequest adapts a chat request to the student: with routes.json,
// the last user message is the input text, rendered with the training
// prompt (and its system message); decoding is greedy unless the client
// set a temperature, bounded by parser.max_tokens, with parser.stop.
func (sv *studentVersion) studentRequest(req openai.ChatCompletionRequest) openai.ChatCompletionRequest {
	r := sv.routes
	if r == nil {
		return req
	}
	req.Messages = renderMessages(r, req.Messages)
	if req.Temperature == nil {
		zero := 0.0
		req.Temperature = &zero
	}
	mt := r.Parser.MaxTokens
	if req.MaxCompletionTokens != nil && *req.MaxCompletionTokens < mt {
		mt = *req.MaxCompletionTokens
	} else if req.MaxTokens != nil && *req.MaxTokens < mt {
		mt = *req.MaxTokens
	}
	req.MaxTokens, req.MaxCompletionTokens = &mt, nil
	req.Stop = append(append([]string{}, req.Stop...), r.Parser.Stop...)
	if len(req.Stop) > maxStops {
		req.Stop = req.Stop[:maxStops]
	}
	return req
}

// renderMessages turns a request for a routed model into the prompt the
// student was trained on: the route's system message, then the rendered
// last user message.
func renderMessages(r *routes.Routes, msgs []openai.ChatMessage) []openai.ChatMessage {
	text := lastUserText(msgs)
	var out []openai.ChatMessage
	if r.Prompt.System != "" {
		out = append(out, openai.ChatMessage{Role: openai.RoleSystem, Content: openai.TextContent(r.Prompt.System)})
	}
	return append(out, openai.ChatMessage{Role: openai.RoleUser, Content: openai.TextContent(r.Render(text))})
}

// studentAnswer is the student's whole answer with its confidence.
type studentAnswer struct {
	reply
	confidence float64
	dist       []float64 // label distribution (label mode)
	parsed     bool      // the answer names a label (label mode) or is text
}

// answer generates the student's whole answer to req (already adapted),
// limited to maxTokens when > 0, and scores it.
func (s *student) answer(ctx context.Context, sv *studentVersion, req openai.ChatCompletionRequest, maxTokens int) (*studentAnswer, error) {
	clientLogprobs, clientTop := req.Logprobs, 0
	if req.TopLogprobs != nil {
		clientTop = *req.TopLogprobs
	}
	var ans studentAnswer
	if sv.remote != nil {
		req.Logprobs, req.TopLogprobs = true, ptrTo(confidenceTop)
		if maxTokens > 0 {
			req.MaxTokens, req.MaxCompletionTokens = &maxTokens, nil
		}
		rep, err := sv.remote.chat(ctx, req)
		if err != nil {
			return nil, err
		}
		ans.reply = *rep
		if !clientLogprobs {
			ans.body = stripLogprobs(ans.body)
		}
	} else {
		release, err := s.acquire(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		p := Params{Temperature: 1, TopP: 1, Stop: req.Stop, Logprobs: true, TopLogprobs: confidenceTop, Seed: req.Seed}
		if req.Temperature != nil {
			p.Temperature = *req.Temperature
		}
		if req.TopP != nil {
			p.TopP = *req.TopP
		}
		if req.MaxCompletionTokens != nil {
			p.MaxTokens = *req.MaxCompletionTokens
		} else if req.MaxTokens != nil {
			p.MaxTokens = *req.MaxTokens
		}
		if maxTokens > 0 && (p.MaxTokens == 0 || p.MaxTokens > maxTokens) {
			p.MaxTokens = maxTokens
		}
		var text []byte
		res, err := generate(ctx, p.Stop, func(ctx context.Context, emit func(Token) error) (Result, error) {
			return sv.local.Chat(ctx, req.Messages, p, emit)
		}, func(seg segment, _ *assembler) error {
			text = append(text, seg.text...)
			ans.tokens = append(ans.tokens, seg.toks...)
			return nil
		})
		if err != nil {
			return nil, err
		}
		ans.text, ans.finish = string(text), res.FinishReason
		ans.usage = openai.Usage{PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, TotalTokens: res.PromptTokens + res.CompletionTokens}
		choice := openai.ChatChoice{
			Message:      openai.ChatMessage{Role: openai.RoleAssistant, Content: openai.TextContent(ans.text)},
			FinishReason: res.FinishReason,
		}
		if clientLogprobs {
			choice.Logprobs = &openai.ChatLogprobs{Content: nonNil(chatLogprobs(ans.tokens, clientTop))}
		}
		u := ans.usage
		ans.body, _ = json.Marshal(openai.ChatCompletionResponse{
			ID: newID("chatcmpl-"), Object: openai.ObjectChatCompletion, Created: time.Now().Unix(),
			Model: sv.id, Choices: []openai.ChatChoice{choice}, Usage: &u,
		})
	}
	if sv.labelMode() {
		r := sv.routes
		ans.dist = labelDist(ans.tokens, ans.text, r.Parser.Labels, func(t string) string { l, _ := r.ParseAnswer(t); return l })
		ans.confidence = labelConfidence(ans.dist)
		_, ans.parsed = r.ParseAnswer(ans.text)
	} else {
		ans.confidence = textConfidence(ans.tokens)
		ans.parsed = true
	}
	return &ans, nil
}

func ptrTo[T any](v T) *T { return &v }

// stripLogprobs removes choices[].logprobs from a chat.completion body
// (they were asked for the gateway's confidence, not by the client).
func stripLogprobs(body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	var choices []map[string]json.RawMessage
	if json.Unmarshal(m["choices"], &choices) != nil {
		return body
	}
	for _, c := range choices {
		c["logprobs"] = json.RawMessage("null")
	}
	m["choices"], _ = json.Marshal(choices)
	b, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return b
}

// tokenEmbedder embeds a text with the student, for the semantic cache:
// kind "student" is the mean of its final hidden states (after the final
// norm) over the text's tokens, model.MeanHidden; kind "student-tokens" the
// mean of its input token embeddings (the layer-0 states: lexical, no
// context). Both are L2-normalised; the space is named by the version.
type tokenEmbedder struct {
	kind  string
	tok   *model.Tokenizer
	m     *model.Model // student
	table []float32    // student-tokens: [vocab, hidden]
	dim   int
	id    string
}

func newTokenEmbedder(m *model.Model, tok *model.Tokenizer) *tokenEmbedder {
	t, ok := m.Tensors()["model.embed_tokens.weight"]
	if !ok || t.Shape().Rank() != 2 {
		return nil
	}
	var table []float32
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		table = tensors.MustCopyFlatData[float32](t)
		return nil
	}()
	if err != nil {
		return nil // a bf16 model: the hashed embedder is used instead
	}
	return &tokenEmbedder{kind: "student-tokens", tok: tok, table: table, dim: t.Shape().Dimensions[1], id: "student-tokens:" + m.Dir}
}

func (e *tokenEmbedder) Embed(_ context.Context, text string) ([]float32, error) {
	ids := e.tok.Encode(text)
	v := make([]float32, e.dim)
	if len(ids) == 0 {
		return v, nil
	}
	if e.m != nil {
		if n := e.m.Config.MaxPositionEmbeddings; len(ids) > n {
			ids = ids[:n]
		}
		h, err := e.m.MeanHidden([][]int{ids})
		if err != nil {
			return nil, err
		}
		copy(v, h[0])
		normalize(v)
		return v, nil
	}
	for _, id := range ids {
		row := e.table[id*e.dim : (id+1)*e.dim]
		for i, x := range row {
			v[i] += x
		}
	}
	normalize(v)
	return v, nil
}

func (e *tokenEmbedder) ID() string { return e.id }

func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// inputText is the text a request asks about: its non-system messages.
// lastUserText is the content of the last user message: a routed model's
// input text.
func lastUserText(msgs []openai.ChatMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == openai.RoleUser {
			return msgs[i].Content.String()
		}
	}
	return ""
}

func inputText(msgs []openai.ChatMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		if m.Role == openai.RoleSystem || m.Role == openai.RoleDeveloper {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(m.Content.String())
	}
	return b.String()
}
