package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/openai"
)

// call is one chat request on its way through the gateway.
type call struct {
	g      *Gateway
	w      http.ResponseWriter
	r      *http.Request
	req    openai.ChatCompletionRequest
	m      *routedModel
	sv     *studentVersion // the student version this request uses (nil: none)
	key    *apiKey
	rec    Record
	start  time.Time
	reason []string
	// cache bookkeeping for the put after answering
	toCache   bool
	exactKey  [32]byte
	sid       scopeID
	vec       []float32
	capWeight float64 // what count() added (token basis: the estimate)
	premium   bool    // admitted to premium (for the token-basis settle)
}

func (c *call) because(format string, args ...any) {
	c.reason = append(c.reason, fmt.Sprintf(format, args...))
}

// chat serves POST /v1/chat/completions in routed mode.
func (g *Gateway) chat(w http.ResponseWriter, r *http.Request) {
	release, ok := g.admitGate()
	if !ok {
		openai.WriteError(w, http.StatusServiceUnavailable, openai.ServerError, "server_busy", "",
			"The gateway is at its limit of requests in flight. Retry later.")
		g.met.requests.WithLabelValues("chat", "", "503", "").Inc()
		return
	}
	defer release()
	c := &call{g: g, w: w, r: r, start: g.now()}
	c.rec = Record{Time: c.start, RequestID: newID("req-"), Endpoint: "chat", Confidence: -1, Cache: "off"}
	w.Header().Set(HeaderRequestID, c.rec.RequestID)
	status := c.serve()
	c.finish(status)
}

// serve answers the request and returns the status sent.
func (c *call) serve() int {
	g, r := c.g, c.r
	info := infoFrom(r)
	key, e := g.keys.auth(r)
	if e != nil {
		return c.fail(e)
	}
	c.key, c.rec.Tenant, info.tenant = key, key.name, key.name
	if !key.allow(g.now()) {
		return c.fail(&apiError{status: http.StatusTooManyRequests, typ: "requests", code: "rate_limit_exceeded",
			msg: fmt.Sprintf("Rate limit reached for key %q: %d requests per minute.", key.name, key.rpm)})
	}
	rc := http.NewResponseController(c.w)
	rc.SetReadDeadline(g.now().Add(g.cfg.Limits.ReadTimeout))
	body, e := readBody(c.w, r, g.cfg.Limits.MaxBodyBytes)
	if e != nil {
		// Keep the deadline: net/http drains the unread body before the
		// reply, and a stalled client must not hold it.
		c.w.Header().Set("Connection", "close")
		return c.fail(e)
	}
	rc.SetReadDeadline(time.Time{})
	if e := decodeJSON(body, &c.req); e != nil {
		return c.fail(e)
	}
	if e := validateChat(&c.req); e != nil {
		return c.fail(e)
	}
	c.rec.Model, c.rec.Stream = c.req.Model, c.req.Stream
	info.model, info.stream = c.req.Model, c.req.Stream
	m, ok := g.models[c.req.Model]
	if !ok {
		return c.fail(modelNotFound(c.req.Model, "model"))
	}
	c.m = m
	c.sv = m.version()
	if c.sv != nil {
		c.w.Header().Set(HeaderVersion, c.sv.version)
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Limits.RequestTimeout)
	defer cancel()

	routed := c.sv != nil && c.sv.routes != nil
	score := g.cls.scoreRequest(&c.req, routed)
	c.rec.Complexity = int32(score)
	c.w.Header().Set(HeaderComplexity, strconv.Itoa(score))
	c.capWeight = float64(c.estimatePrompt() + c.maxCompletion())
	g.cap.count(c.capWeight)

	if st, done := c.tryCache(ctx); done {
		return st
	}
	tier := c.chooseTier(score)
	if tier == TierPremium {
		var e *apiError
		if tier, e = c.admitPremium(TierPremium); e != nil {
			return c.fail(e)
		}
	}
	if tier == TierStudent {
		return c.viaStudent(ctx)
	}
	return c.viaUpstream(ctx, tier, "")
}

// validateChat checks what every tier needs.
func validateChat(req *openai.ChatCompletionRequest) *apiError {
	if req.Model == "" {
		return invalid("model", "missing_required_parameter", "You must provide a model parameter.")
	}
	if req.Messages == nil {
		return invalid("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")
	}
	if len(req.Messages) == 0 {
		return invalid("messages", "empty_array",
			"Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	for i, m := range req.Messages {
		if !validRoles[m.Role] {
			return invalid(fmt.Sprintf("messages[%d].role", i), "invalid_value",
				"Invalid value: '%s'. Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'.", m.Role)
		}
	}
	for _, rg := range []struct {
		param  string
		v      *float64
		lo, hi float64
	}{{"temperature", req.Temperature, 0, 2}, {"top_p", req.TopP, 0, 1}, {"presence_penalty", req.PresencePenalty, -2, 2}, {"frequency_penalty", req.FrequencyPenalty, -2, 2}} {
		if e := checkRange(rg.param, rg.v, rg.lo, rg.hi); e != nil {
			return e
		}
	}
	if req.N != nil && *req.N < 1 {
		return invalid("n", "integer_below_min_value", "Invalid 'n': integer below minimum value. Expected a value >= 1, but got %d instead.", *req.N)
	}
	for _, mt := range []struct {
		name string
		v    *int
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		if mt.v != nil && *mt.v < 1 {
			return invalid(mt.name, "integer_below_min_value", "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", mt.name, *mt.v)
		}
	}
	if req.TopLogprobs != nil && (*req.TopLogprobs < 0 || *req.TopLogprobs > 20) {
		return invalid("top_logprobs", "invalid_value", "Invalid 'top_logprobs': expected a value between 0 and 20, but got %d instead.", *req.TopLogprobs)
	}
	if req.TopLogprobs != nil && !req.Logprobs {
		return invalid("top_logprobs", "invalid_value", "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.")
	}
	if req.StreamOptions != nil && !req.Stream {
		return invalid("stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	if len(req.Stop) > maxStops {
		return invalid("stop", "array_above_max_length", "Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", maxStops, len(req.Stop))
	}
	return nil
}

func (c *call) estimatePrompt() int {
	n := 0
	for _, m := range c.req.Messages {
		n += estimateTokens(len(m.Content.String())) + 4
	}
	return n
}

func (c *call) maxCompletion() int {
	switch {
	case c.req.MaxCompletionTokens != nil:
		return *c.req.MaxCompletionTokens
	case c.req.MaxTokens != nil:
		return *c.req.MaxTokens
	case c.sv != nil && c.sv.routes != nil:
		return c.sv.routes.Parser.MaxTokens
	}
	return 1024
}

// studentUsable says whether the student can take this request at all.
func (c *call) studentUsable() (bool, string) {
	switch {
	case c.sv == nil:
		return false, "no student"
	case isSet(c.req.Tools) && string(c.req.Tools) != "[]":
		return false, "tools"
	case c.req.N != nil && *c.req.N > 1:
		return false, "n>1"
	case isSet(c.req.ResponseFormat) && !strings.Contains(string(c.req.ResponseFormat), `"text"`):
		return false, "response_format"
	}
	for _, m := range c.req.Messages {
		for _, p := range m.Content.Parts {
			if p.Type != "text" {
				return false, "non-text content"
			}
		}
	}
	return true, ""
}

// chooseTier maps the complexity score to a tier: the student's band
// (routes.json complexity_band, else the config's), the mid band, else
// premium; a missing tier passes the request to the next one up, and a
// missing premium to the highest configured.
func (c *call) chooseTier(score int) string {
	g := c.g
	band := g.cfg.Routing.StudentBand
	if c.sv != nil && len(c.sv.band) > 0 {
		band = c.sv.band
	}
	ok, why := c.studentUsable()
	want := TierPremium
	switch {
	case inBand(band, score):
		want = TierStudent
		c.because("complexity %d in student band %s", score, bandString(band))
	case inBand(g.cfg.Routing.MidBand, score):
		want = TierMid
		c.because("complexity %d in mid band %s", score, bandString(g.cfg.Routing.MidBand))
	default:
		c.because("complexity %d above the mid band", score)
	}
	if want == TierStudent && !ok {
		c.because("student skipped (%s)", why)
		want = TierMid
	}
	order := []string{TierStudent, TierMid, TierPremium}
	avail := map[string]bool{TierStudent: ok, TierMid: g.mid != nil, TierPremium: g.premium != nil}
	i := indexOf(order, want)
	for j := i; j < len(order); j++ {
		if avail[order[j]] {
			if j != i {
				c.because("no %s tier: %s", want, order[j])
			}
			return order[j]
		}
	}
	for j := i - 1; j >= 0; j-- {
		if avail[order[j]] {
			c.because("no tier above: %s", order[j])
			return order[j]
		}
	}
	return TierStudent // nothing configured can take it; viaStudent reports it
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

func bandString(b []int) string {
	parts := make([]string, len(b))
	for i, v := range b {
		parts[i] = strconv.Itoa(v)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// admitPremium asks the cap for a premium request (from is the tier the
// request was at: premium for a first choice, else the escalating tier).
// Over the cap it returns the tier to downgrade to, or a 429 when refusing
// (or when nothing lower can answer).
func (c *call) admitPremium(from string) (string, *apiError) {
	g := c.g
	if g.cap.admit(c.capWeight) {
		c.premium = true
		return TierPremium, nil
	}
	p, t := g.cap.stats()
	capMsg := fmt.Sprintf("premium cap reached (%.1f%% of %s over %s, cap %.1f%%)", 100*p/max(t, 1), g.cap.basis(), g.cfg.Cap.Window, 100*g.cfg.Cap.Share)
	refuse := &apiError{status: http.StatusTooManyRequests, typ: "insufficient_quota", code: "premium_cap_reached",
		msg: "The premium tier's share cap is reached: " + capMsg + ". Retry later or lower the request's complexity."}
	if g.cfg.Cap.OverCap == "refuse" {
		g.met.capBlocked.WithLabelValues("refuse").Inc()
		c.because("%s: refused", capMsg)
		return "", refuse
	}
	g.met.capBlocked.WithLabelValues("downgrade").Inc()
	if from != TierPremium {
		c.because("%s: kept the %s answer", capMsg, from)
		return from, nil
	}
	usable, _ := c.studentUsable()
	switch {
	case g.mid != nil:
		c.because("%s: downgraded to mid", capMsg)
		return TierMid, nil
	case usable:
		c.because("%s: downgraded to student", capMsg)
		return TierStudent, nil
	}
	c.because("%s: no lower tier, refused", capMsg)
	return "", refuse
}

// nextTier is the tier a student answer escalates to.
func (c *call) nextTier() string {
	if c.g.mid != nil {
		return TierMid
	}
	if c.g.premium != nil {
		return TierPremium
	}
	return ""
}

// viaStudent lets the student answer; with the cascade on, an answer below
// the confidence threshold (or one that names no label) escalates.
func (c *call) viaStudent(ctx context.Context) int {
	g, sv := c.g, c.sv
	if sv == nil {
		return c.fail(&apiError{status: http.StatusServiceUnavailable, typ: openai.ServerError, code: "no_tier",
			msg: "No tier can answer this request: the model has no usable student and no upstream tier is configured."})
	}
	sreq := sv.studentRequest(c.req)
	cascade := *g.cfg.Cascade.Enabled
	if c.req.Stream && g.cfg.Cascade.Stream == "skip" {
		if cascade {
			c.because("stream: cascade skipped")
		}
		return c.streamStudent(ctx, sreq)
	}
	limit := 0
	if c.req.Stream {
		limit = g.cfg.Cascade.BufferMaxTokens
	}
	ans, err := c.m.student.answer(ctx, sv, sreq, limit)
	tooLong := errors.Is(err, ErrPromptTooLong) && cascade && c.nextTier() != ""
	if err != nil && !tooLong {
		return c.fail(c.errorFor(err, TierStudent))
	}
	if tooLong {
		ans = &studentAnswer{}
	} else {
		c.rec.Confidence = ans.confidence
		g.met.confidence.Observe(ans.confidence)
		c.w.Header().Set(HeaderConfidence, strconv.FormatFloat(ans.confidence, 'f', 4, 64))
	}
	in, out := g.price(TierStudent, sv)
	studentCost := float64(ans.usage.PromptTokens)*in + float64(ans.usage.CompletionTokens)*out
	escalate := ""
	switch {
	case tooLong:
		// The student cannot read it; a larger tier can.
		escalate = "the prompt is longer than the student's context"
	case !cascade:
	case sv.labelMode() && !ans.parsed:
		escalate = "the answer names no label"
	case ans.confidence < sv.threshold:
		escalate = fmt.Sprintf("confidence %.3f < threshold %.3f", ans.confidence, sv.threshold)
	case c.req.Stream && limit > 0 && ans.finish == "length" && ans.usage.CompletionTokens >= limit:
		escalate = fmt.Sprintf("stream: the answer is longer than buffer_max_tokens %d", limit)
	}
	if escalate != "" {
		next := c.nextTier()
		if next == TierPremium {
			var e *apiError
			if next, e = c.admitPremium(TierStudent); e != nil {
				return c.fail(e)
			}
		}
		if next != "" && next != TierStudent {
			c.because("%s: escalated student→%s", escalate, next)
			g.met.escalations.WithLabelValues(TierStudent, next).Inc()
			c.rec.Escalated, c.rec.EscalatedFrom = true, TierStudent
			c.rec.StudentTokens = int64(ans.usage.TotalTokens)
			c.rec.CostUSD += studentCost
			c.w.Header().Set(HeaderEscalated, "student→"+next)
			return c.viaUpstream(ctx, next, TierStudent)
		}
		if next == "" {
			c.because("%s: no tier to escalate to, kept the student answer", escalate)
		}
	} else if cascade {
		c.because("confidence %.3f ≥ threshold %.3f", ans.confidence, sv.threshold)
	}
	c.rec.CostUSD += studentCost
	c.answered(TierStudent, sv.id+"@"+sv.version, ans.usage)
	c.store(ans.body, ans.text, sv.id, TierStudent)
	c.capture(TierStudent, sv.id, ans.text, ans.tokens, ans.usage, ans.finish)
	if c.req.Stream {
		return c.replayStream(ans.body)
	}
	c.writeBody(ans.body)
	return http.StatusOK
}

// viaUpstream answers from the mid or premium tier.
func (c *call) viaUpstream(ctx context.Context, tier, from string) int {
	g := c.g
	u := g.upstreamFor(tier)
	if u == nil {
		return c.fail(&apiError{status: http.StatusServiceUnavailable, typ: openai.ServerError, code: "no_tier",
			msg: fmt.Sprintf("No %s tier is configured.", tier)})
	}
	ureq := c.req
	if c.sv != nil && c.sv.routes != nil {
		ureq.Messages = renderMessages(c.sv.routes, c.req.Messages)
	}
	in, out := g.price(tier, nil)
	reserve := float64(c.estimatePrompt())*in + float64(c.maxCompletion())*out
	if !c.key.reserve(reserve, g.now()) {
		return c.fail(&apiError{status: http.StatusTooManyRequests, typ: "insufficient_quota", code: "budget_exceeded",
			msg: fmt.Sprintf("The daily budget of key %q ($%.2f) does not cover this request.", c.key.name, c.key.budget)})
	}
	settled := false
	settle := func(us openai.Usage) float64 {
		cost := float64(us.PromptTokens)*in + float64(us.CompletionTokens)*out
		c.key.settle(reserve, cost, g.now())
		settled = true
		return cost
	}
	defer func() {
		if !settled {
			c.key.settle(reserve, 0, g.now())
		}
	}()
	capTier := c.m.capture != nil && containsStr(c.m.cfg.Capture.Tiers, tier)
	if c.req.Stream {
		sent := false
		var sse *openai.SSEWriter
		wantUsage := c.req.StreamOptions != nil && c.req.StreamOptions.IncludeUsage
		c.answered(tier, u.cfg.Model, openai.Usage{}) // headers before the first byte
		sum, err := u.chatStream(ctx, ureq, wantUsage, func(data []byte) error {
			if !sent {
				sse = openai.NewSSEWriter(c.w)
				c.w.WriteHeader(http.StatusOK)
				sent = true
			}
			return sse.WriteEvent("", data)
		})
		c.rec.CostUSD += settle(sum.usage)
		c.addUsage(tier, sum.usage)
		if err != nil {
			if !sent {
				return c.fail(c.errorFor(err, tier))
			}
			infoFrom(c.r).err = err
			st := &stream{w: c.w, sse: sse}
			st.fail(c.errorFor(err, tier))
			return http.StatusOK
		}
		sse.Done()
		if !sum.tools {
			c.store(synthBody(u.cfg.Model, sum.text, sum.finish, sum.usage), sum.text, u.cfg.Model, tier)
		}
		c.capture(tier, u.cfg.Model, sum.text, nil, sum.usage, sum.finish)
		return http.StatusOK
	}
	stripLP := false
	if capTier && !ureq.Logprobs && u.cfg.Kind == "openai" {
		// Soft labels for retraining: ask for the top alternatives and
		// hand the client the answer without them.
		ureq.Logprobs, ureq.TopLogprobs, stripLP = true, ptrTo(confidenceTop), true
	}
	rep, err := u.chat(ctx, ureq)
	if err != nil {
		return c.fail(c.errorFor(err, tier))
	}
	c.rec.CostUSD += settle(rep.usage)
	body := rep.body
	if stripLP {
		body = stripLogprobs(body)
	}
	c.answered(tier, u.cfg.Model, rep.usage)
	if !rep.tools {
		c.store(body, rep.text, u.cfg.Model, tier)
	}
	c.capture(tier, u.cfg.Model, rep.text, rep.tokens, rep.usage, rep.finish)
	c.writeBody(body)
	return http.StatusOK
}

func containsStr(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// answered sets the headers and the record for the answering tier.
func (c *call) answered(tier, model string, us openai.Usage) {
	h := c.w.Header()
	h.Set(HeaderTier, tier)
	h.Set(HeaderModel, model)
	h.Set(HeaderReason, strings.Join(c.reason, "; "))
	h.Set(HeaderCache, c.rec.Cache)
	c.rec.Tier, c.rec.AnsweredBy = tier, model
	infoFrom(c.r).tier = tier
	c.addUsage(tier, us)
}

func (c *call) addUsage(tier string, us openai.Usage) {
	c.rec.PromptTokens += int64(us.PromptTokens)
	c.rec.CompletionTokens += int64(us.CompletionTokens)
	info := infoFrom(c.r)
	info.promptTokens += us.PromptTokens
	info.completionTokens += us.CompletionTokens
}

func (c *call) writeBody(body []byte) {
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(body)
	if len(body) == 0 || body[len(body)-1] != '\n' {
		c.w.Write([]byte{'\n'})
	}
}

// fail writes an error reply (the headers explain the routing so far).
func (c *call) fail(e *apiError) int {
	if len(c.reason) > 0 {
		c.w.Header().Set(HeaderReason, strings.Join(c.reason, "; "))
	}
	infoFrom(c.r).err = e
	c.rec.Reason = e.msg
	e.write(c.w)
	return e.status
}

// errorFor turns a tier's error into a reply: upstream 4xx pass through
// (but 401/403: the gateway's own key is wrong, 502), 429 stays 429,
// other upstream failures are 502 and timeouts 504.
func (c *call) errorFor(err error, tier string) *apiError {
	var ae *apiError
	var ue *upstreamError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ue):
		st := ue.status
		switch {
		case st == http.StatusUnauthorized || st == http.StatusForbidden:
			return &apiError{status: http.StatusBadGateway, typ: openai.ServerError, code: "upstream_auth",
				msg: fmt.Sprintf("The %s tier rejected the gateway's credentials.", tier)}
		case st == http.StatusTooManyRequests:
			return &apiError{status: st, typ: "requests", code: "upstream_rate_limited", msg: fmt.Sprintf("The %s tier is rate limited: %s", tier, ue.err.Message)}
		case st >= 400 && st < 500:
			return &apiError{status: st, typ: orDefault(ue.err.Type, openai.InvalidRequestError), code: string(ue.err.Code), param: string(ue.err.Param), msg: ue.err.Message}
		}
		return &apiError{status: http.StatusBadGateway, typ: openai.ServerError, code: "upstream_error",
			msg: fmt.Sprintf("The %s tier failed: %s", tier, ue.err.Message)}
	case errors.Is(err, ErrPromptTooLong):
		return &apiError{status: http.StatusRequestEntityTooLarge, typ: openai.InvalidRequestError, code: "context_length_exceeded", param: "messages", msg: err.Error()}
	case c.r.Context().Err() != nil:
		infoFrom(c.r).canceled = true
		return &apiError{status: statusClientClosed, typ: openai.InvalidRequestError, msg: "client closed the request"}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusGatewayTimeout, typ: openai.ServerError, code: "timeout",
			msg: fmt.Sprintf("The %s tier did not answer in time.", tier)}
	}
	return &apiError{status: http.StatusBadGateway, typ: openai.ServerError, code: "upstream_unavailable",
		msg: fmt.Sprintf("The %s tier failed: %v", tier, err)}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// finish writes the record and the metrics.
func (c *call) finish(status int) {
	g := c.g
	c.rec.Status = int32(status)
	c.rec.LatencyMS = float64(g.now().Sub(c.start).Microseconds()) / 1000
	if c.rec.Reason == "" {
		c.rec.Reason = strings.Join(c.reason, "; ")
	}
	tier := c.rec.Tier
	g.met.requests.WithLabelValues(c.rec.Endpoint, tier, strconv.Itoa(status), c.rec.Cache).Inc()
	if tier != "" {
		g.met.latency.WithLabelValues(tier).Observe(c.rec.LatencyMS / 1000)
		g.met.tokens.WithLabelValues(tier, "prompt").Add(float64(c.rec.PromptTokens))
		g.met.tokens.WithLabelValues(tier, "completion").Add(float64(c.rec.CompletionTokens))
		g.met.cost.WithLabelValues(tier).Add(c.rec.CostUSD)
	}
	if g.cap.tokens && c.rec.Tier != "" {
		g.cap.settle(float64(c.rec.PromptTokens+c.rec.CompletionTokens)-c.capWeight, c.premium)
	}
	infoFrom(c.r).cache = c.rec.Cache
	if g.records != nil && c.rec.Tenant != "" {
		g.records.Write(c.rec)
	}
}

// capture writes an answer in the harvest schema when the model captures
// this tier.
func (c *call) capture(tier, model, text string, toks []Token, us openai.Usage, finish string) {
	m := c.m
	if (m.capture == nil && m.dataset == nil) || !containsStr(m.cfg.Capture.Tiers, tier) {
		return
	}
	msgs := c.req.Messages
	var prompt, input string
	if c.sv != nil && c.sv.routes != nil {
		input = lastUserText(msgs)
		msgs = renderMessages(c.sv.routes, msgs)
		prompt = msgs[len(msgs)-1].Content.String()
	} else {
		prompt = inputText(msgs)
		input = prompt
	}
	if m.dataset != nil {
		label, ok := strings.TrimSpace(text), true
		if c.sv != nil && c.sv.routes != nil {
			label, ok = c.sv.routes.ParseAnswer(text)
		}
		if ok && label != "" {
			m.dataset.Write(DatasetRow{ID: c.rec.RequestID, Text: m.redact(input), Label: m.redact(label), Answer: m.redact(text),
				Tier: tier, Model: model, Time: c.g.now().UTC()})
		}
	}
	if m.capture == nil {
		return
	}
	row := datasets.SoftLabel{
		ID: c.rec.RequestID, Prompt: m.redact(prompt), Completion: m.redact(text), TeacherModel: model,
		InputTokens: int64(us.PromptTokens), OutputTokens: int64(us.CompletionTokens),
		LatencyMS: float64(c.g.now().Sub(c.start).Microseconds()) / 1000, FinishReason: finish,
	}
	in, out := c.g.price(tier, c.sv)
	row.CostUSD = float64(us.PromptTokens)*in + float64(us.CompletionTokens)*out
	for _, t := range toks {
		row.CompletionLogprobs = append(row.CompletionLogprobs, float32(min(0, finite(t.Logprob))))
		tk := datasets.TopK{}
		for _, a := range t.Top {
			tk.Tokens = append(tk.Tokens, a.Text)
			tk.Logprobs = append(tk.Logprobs, float32(min(0, finite(a.Logprob))))
		}
		tk.TailMass = datasets.TailMassOf(tk.Logprobs)
		row.TopK = append(row.TopK, tk)
	}
	if len(row.TopK) > 0 && len(row.TopK) != len(row.CompletionLogprobs) {
		row.TopK = nil
	}
	if c.sv != nil && c.sv.labelMode() {
		r := c.sv.routes
		dist := labelDist(toks, text, r.Labels, func(t string) string { l, _ := r.ParseAnswer(t); return l })
		row.LabelDist = softLabelDist(dist, r.Labels)
		best, bp := "", -1.0
		for i, p := range dist[:len(dist)-1] {
			if p > bp {
				best, bp = r.Labels[i], p
			}
		}
		if bp > dist[len(dist)-1] {
			row.Label = best
		}
	}
	m.capture.Write(row)
}

// synthBody builds a chat.completion body for a streamed answer (to cache it).
func synthBody(model, text, finish string, us openai.Usage) []byte {
	u := us
	b, _ := json.Marshal(openai.ChatCompletionResponse{
		ID: newID("chatcmpl-"), Object: openai.ObjectChatCompletion, Created: time.Now().Unix(), Model: model,
		Choices: []openai.ChatChoice{{Message: openai.ChatMessage{Role: openai.RoleAssistant, Content: openai.TextContent(text)}, FinishReason: finish}},
		Usage:   &u,
	})
	return b
}

// replayStream sends a whole chat.completion body as a stream: the role,
// the content (with its log probabilities), the finish reason, usage when
// asked, and [DONE].
func (c *call) replayStream(body []byte) int {
	var resp openai.ChatCompletionResponse
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Choices) == 0 {
		return c.fail(&apiError{status: http.StatusInternalServerError, typ: openai.ServerError, msg: "cannot replay the answer as a stream"})
	}
	ch := resp.Choices[0]
	sse := openai.NewSSEWriter(c.w)
	c.w.WriteHeader(http.StatusOK)
	chunk := func(delta openai.ChatDelta, lp *openai.ChatLogprobs, finish string) openai.ChatCompletionChunk {
		return openai.ChatCompletionChunk{ID: resp.ID, Object: openai.ObjectChatCompletionChunk, Created: resp.Created, Model: resp.Model,
			Choices: []openai.ChatChunkChoice{{Delta: delta, Logprobs: lp, FinishReason: openai.NullString(finish)}}}
	}
	empty := ""
	text := ch.Message.Content.String()
	sse.WriteJSON(chunk(openai.ChatDelta{Role: openai.RoleAssistant, Content: &empty}, nil, ""))
	if text != "" {
		sse.WriteJSON(chunk(openai.ChatDelta{Content: &text}, ch.Logprobs, ""))
	}
	sse.WriteJSON(chunk(openai.ChatDelta{}, nil, ch.FinishReason))
	if c.req.StreamOptions != nil && c.req.StreamOptions.IncludeUsage && resp.Usage != nil {
		sse.WriteJSON(openai.ChatCompletionChunk{ID: resp.ID, Object: openai.ObjectChatCompletionChunk, Created: resp.Created, Model: resp.Model,
			Choices: []openai.ChatChunkChoice{}, Usage: resp.Usage})
	}
	sse.Done()
	return http.StatusOK
}

// streamStudent streams the student's answer as it is generated, without
// a confidence check (cascade.stream: skip).
func (c *call) streamStudent(ctx context.Context, sreq openai.ChatCompletionRequest) int {
	sv := c.sv
	wantUsage := c.req.StreamOptions != nil && c.req.StreamOptions.IncludeUsage
	in, out := c.g.price(TierStudent, sv)
	if sv.remote != nil {
		sent := false
		var sse *openai.SSEWriter
		c.answered(TierStudent, sv.id+"@"+sv.version, openai.Usage{})
		sum, err := sv.remote.chatStream(ctx, sreq, wantUsage, func(data []byte) error {
			if !sent {
				sse = openai.NewSSEWriter(c.w)
				c.w.WriteHeader(http.StatusOK)
				sent = true
			}
			return sse.WriteEvent("", data)
		})
		c.addUsage(TierStudent, sum.usage)
		c.rec.CostUSD += float64(sum.usage.PromptTokens)*in + float64(sum.usage.CompletionTokens)*out
		if err != nil {
			if !sent {
				return c.fail(c.errorFor(err, TierStudent))
			}
			(&stream{w: c.w, sse: sse}).fail(c.errorFor(err, TierStudent))
			return http.StatusOK
		}
		sse.Done()
		return http.StatusOK
	}
	release, err := c.m.student.acquire(ctx)
	if err != nil {
		return c.fail(c.errorFor(err, TierStudent))
	}
	defer release()
	p := Params{Temperature: 1, TopP: 1, Stop: sreq.Stop, Logprobs: sreq.Logprobs, Seed: sreq.Seed}
	if sreq.TopLogprobs != nil {
		p.TopLogprobs = *sreq.TopLogprobs
	}
	if sreq.Temperature != nil {
		p.Temperature = *sreq.Temperature
	}
	if sreq.TopP != nil {
		p.TopP = *sreq.TopP
	}
	if sreq.MaxCompletionTokens != nil {
		p.MaxTokens = *sreq.MaxCompletionTokens
	} else if sreq.MaxTokens != nil {
		p.MaxTokens = *sreq.MaxTokens
	}
	c.answered(TierStudent, sv.id+"@"+sv.version, openai.Usage{})
	st := &stream{w: c.w, id: newID("chatcmpl-"), created: time.Now().Unix()}
	chunk := func(delta openai.ChatDelta, lp *openai.ChatLogprobs, finish string) openai.ChatCompletionChunk {
		return openai.ChatCompletionChunk{ID: st.id, Object: openai.ObjectChatCompletionChunk, Created: st.created, Model: sv.id,
			Choices: []openai.ChatChunkChoice{{Delta: delta, Logprobs: lp, FinishReason: openai.NullString(finish)}}}
	}
	start := func() error {
		if st.sse != nil {
			return nil
		}
		st.open()
		empty := ""
		return st.send(chunk(openai.ChatDelta{Role: openai.RoleAssistant, Content: &empty}, nil, ""))
	}
	res, err := generate(ctx, p.Stop, func(ctx context.Context, emit func(Token) error) (Result, error) {
		return sv.local.Chat(ctx, sreq.Messages, p, emit)
	}, func(seg segment, _ *assembler) error {
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
	us := openai.Usage{PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, TotalTokens: res.PromptTokens + res.CompletionTokens}
	c.addUsage(TierStudent, us)
	c.rec.CostUSD += float64(us.PromptTokens)*in + float64(us.CompletionTokens)*out
	if err != nil {
		if st.sse == nil {
			return c.fail(c.errorFor(err, TierStudent))
		}
		infoFrom(c.r).err = err
		st.fail(c.errorFor(err, TierStudent))
		return http.StatusOK
	}
	if start() != nil {
		return http.StatusOK
	}
	if st.send(chunk(openai.ChatDelta{}, nil, res.FinishReason)) != nil {
		return http.StatusOK
	}
	if wantUsage {
		st.send(openai.ChatCompletionChunk{ID: st.id, Object: openai.ObjectChatCompletionChunk, Created: st.created, Model: sv.id,
			Choices: []openai.ChatChunkChoice{}, Usage: &us})
	}
	st.sse.Done()
	return http.StatusOK
}
