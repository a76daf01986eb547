package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/distillery/distillery/openai"
)

// complete serves POST /v1/completions in routed mode: the complexity
// score of the prompt picks the tier and the premium cap applies; there is
// no cascade (no label parsing of raw prompts) and no cache. A local
// student answers through the single-model server, so the legacy
// endpoint's every feature (streaming, logprobs, stop) works as in
// `distillery serve --model`.
func (g *Gateway) complete(w http.ResponseWriter, r *http.Request) {
	release, ok := g.admitGate()
	if !ok {
		openai.WriteError(w, http.StatusServiceUnavailable, openai.ServerError, "server_busy", "",
			"The gateway is at its limit of requests in flight. Retry later.")
		return
	}
	defer release()
	c := &call{g: g, w: w, r: r, start: g.now()}
	c.rec = Record{Time: c.start, RequestID: newID("req-"), Endpoint: "completions", Confidence: -1, Cache: "off"}
	w.Header().Set(HeaderRequestID, c.rec.RequestID)
	status := c.serveCompletion()
	c.finish(status)
}

func (c *call) serveCompletion() int {
	g, r := c.g, c.r
	key, e := g.keys.auth(r)
	if e != nil {
		return c.fail(e)
	}
	c.key, c.rec.Tenant = key, key.name
	infoFrom(r).tenant = key.name
	if !key.allow(g.now()) {
		return c.fail(&apiError{status: http.StatusTooManyRequests, typ: "requests", code: "rate_limit_exceeded",
			msg: "Rate limit reached for key " + strconv.Quote(key.name) + "."})
	}
	rc := http.NewResponseController(c.w)
	rc.SetReadDeadline(g.now().Add(g.cfg.Limits.ReadTimeout))
	body, e := readBody(c.w, r, g.cfg.Limits.MaxBodyBytes)
	if e != nil {
		c.w.Header().Set("Connection", "close")
		return c.fail(e)
	}
	rc.SetReadDeadline(time.Time{})
	var req openai.CompletionRequest
	if e := decodeJSON(body, &req); e != nil {
		return c.fail(e)
	}
	if req.Model == "" {
		return c.fail(invalid("model", "missing_required_parameter", "You must provide a model parameter."))
	}
	if len(req.Prompt) == 0 {
		return c.fail(invalid("prompt", "missing_required_parameter", "Missing required parameter: 'prompt'."))
	}
	c.rec.Model, c.rec.Stream = req.Model, req.Stream
	infoFrom(r).model, infoFrom(r).stream = req.Model, req.Stream
	m, ok := g.models[req.Model]
	if !ok {
		return c.fail(modelNotFound(req.Model, "model"))
	}
	c.m, c.sv = m, m.version()
	text := strings.Join(req.Prompt, "\n")
	score := g.cls.scoreText(text, 1, false)
	c.rec.Complexity = int32(score)
	c.w.Header().Set(HeaderComplexity, strconv.Itoa(score))
	mt := 16 // OpenAI's default max_tokens for completions
	if req.MaxTokens != nil {
		mt = *req.MaxTokens
	}
	c.capWeight = float64(estimateTokens(len(text)) + mt)
	g.cap.count(c.capWeight)
	c.req = openai.ChatCompletionRequest{Model: req.Model, Messages: []openai.ChatMessage{{Role: openai.RoleUser, Content: openai.TextContent(text)}}, MaxTokens: &mt}
	tier := c.chooseTier(score)
	if tier == TierPremium {
		var e *apiError
		if tier, e = c.admitPremium(TierPremium); e != nil {
			return c.fail(e)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Limits.RequestTimeout)
	defer cancel()
	if tier == TierStudent {
		sv := c.sv
		if sv == nil {
			return c.fail(&apiError{status: http.StatusServiceUnavailable, typ: openai.ServerError, code: "no_tier", msg: "No tier can answer this request."})
		}
		if sv.remote != nil {
			return c.completeUpstream(ctx, sv.remote, TierStudent, req)
		}
		req.Model = sv.id
		raw, _ := json.Marshal(req)
		c.answered(TierStudent, sv.id+"@"+sv.version, openai.Usage{})
		r2 := r.Clone(ctx)
		r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(raw)), int64(len(raw))
		info := infoFrom(r)
		before := info.promptTokens + info.completionTokens
		sw := &statusWriter{ResponseWriter: c.w}
		sv.server().complete(sw, r2)
		c.rec.PromptTokens, c.rec.CompletionTokens = int64(info.promptTokens), int64(info.completionTokens)
		in, _ := g.price(TierStudent, sv)
		c.rec.CostUSD = float64(info.promptTokens+info.completionTokens-before) * in
		if sw.status == 0 {
			return http.StatusOK
		}
		return sw.status
	}
	return c.completeUpstream(ctx, g.upstreamFor(tier), tier, req)
}

func (c *call) completeUpstream(ctx context.Context, u *upstream, tier string, req openai.CompletionRequest) int {
	if req.Stream {
		return c.fail(invalid("stream", "unsupported_value", "Streaming legacy completions are served by local students only; the %s tier answers with stream: false.", tier))
	}
	in, out := c.g.price(tier, c.sv)
	reserve := float64(estimateTokens(len(strings.Join(req.Prompt, ""))))*in + float64(*c.req.MaxTokens)*out
	if !c.key.reserve(reserve, c.g.now()) {
		return c.fail(&apiError{status: http.StatusTooManyRequests, typ: "insufficient_quota", code: "budget_exceeded",
			msg: "The key's daily budget does not cover this request."})
	}
	raw, us, err := u.complete(ctx, req)
	cost := float64(us.PromptTokens)*in + float64(us.CompletionTokens)*out
	c.key.settle(reserve, cost, c.g.now())
	if err != nil {
		return c.fail(c.errorFor(err, tier))
	}
	c.rec.CostUSD += cost
	c.answered(tier, u.cfg.Model, us)
	c.writeBody(raw)
	return http.StatusOK
}

// server is the single-model server of a local student version (for the
// legacy endpoint), built once.
func (sv *studentVersion) server() *Server {
	sv.srvOnce.Do(func() {
		sv.srv = NewServer(sv.local, Options{Logger: discardLog, MaxConcurrent: 1 << 20})
	})
	return sv.srv
}

var discardLog = slog.New(slog.DiscardHandler)
